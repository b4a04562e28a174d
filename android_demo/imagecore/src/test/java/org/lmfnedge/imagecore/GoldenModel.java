package org.lmfnedge.imagecore;

/**
 * Java twin of {@code lmfn_edge.android_golden.golden_model}: 3x3 mean with zero padding, then
 * {@code v * gain + bias} per channel, then nearest upsampling. Same float32 operations in the
 * same order as the numpy version, so outputs are bit-identical.
 */
final class GoldenModel implements TileRunner {
    private final int scale;
    private final float[] gain;
    private final float[] bias;
    int calls;

    GoldenModel(int scale, float[] gain, float[] bias) {
        this.scale = scale;
        this.gain = gain;
        this.bias = bias;
    }

    @Override
    public float[] run(float[] chw, int h, int w) {
        calls++;
        int s = scale;
        int oh = s * h;
        int ow = s * w;
        int plane = h * w;
        float[] out = new float[3 * oh * ow];
        for (int c = 0; c < 3; c++) {
            for (int y = 0; y < h; y++) {
                for (int x = 0; x < w; x++) {
                    float acc = 0f;
                    for (int dy = -1; dy <= 1; dy++) {
                        for (int dx = -1; dx <= 1; dx++) {
                            int yy = y + dy;
                            int xx = x + dx;
                            boolean inside = yy >= 0 && yy < h && xx >= 0 && xx < w;
                            acc = acc + (inside ? chw[c * plane + yy * w + xx] : 0f);
                        }
                    }
                    float v = acc / 9f * gain[c] + bias[c];
                    for (int sy = 0; sy < s; sy++) {
                        for (int sx = 0; sx < s; sx++) {
                            out[c * oh * ow + (y * s + sy) * ow + x * s + sx] = v;
                        }
                    }
                }
            }
        }
        return out;
    }
}
