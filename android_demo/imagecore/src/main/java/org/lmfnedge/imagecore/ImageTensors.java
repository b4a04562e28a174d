package org.lmfnedge.imagecore;

/**
 * ARGB pixels (Android {@code Bitmap.getPixels}) to and from planar float CHW; mirrors
 * {@code lmfn_edge.runtime.tiling} exactly.
 *
 * <p>uint8 to float: {@code v / 255f}. float to uint8: {@code floor(clamp(x, 0, 1) * 255f + 0.5f)}
 * in float32, NaN to 0. Alpha is ignored on input and written as 255 on output.
 */
public final class ImageTensors {
    private ImageTensors() {}

    /** The shared float to uint8 rule. */
    public static int toUint8(float x) {
        if (!(x >= 0f)) { // also NaN
            return 0;
        }
        if (x > 1f) {
            x = 1f;
        }
        // Non-negative, so the int cast is the floor; float32 arithmetic on purpose (see Python).
        return (int) (x * 255f + 0.5f);
    }

    /** Planar RGB floats {@code [3][height][width]} from ARGB pixels. */
    public static float[] argbToChw(int[] argb, int width, int height) {
        checkSize(argb.length, width, height);
        return argbWindowToChw(argb, width, 0, 0, height, width, height, width);
    }

    /**
     * Planar RGB floats {@code [3][outH][outW]} of the window at ({@code y0}, {@code x0}) of size
     * {@code h x w} in an image {@code imageWidth} pixels wide; when {@code outH > h} or
     * {@code outW > w} the window's last row and column are repeated (edge padding).
     */
    public static float[] argbWindowToChw(int[] argb, int imageWidth, int y0, int x0, int h, int w,
                                          int outH, int outW) {
        return argbWindowToChw(argb, imageWidth, y0, x0, h, w, outH, outW, null);
    }

    /**
     * As {@link #argbWindowToChw(int[], int, int, int, int, int, int, int)}, written into
     * {@code into} when it has exactly {@code 3 * outH * outW} values (so a tiler reuses one
     * buffer for every tile), else into a new array.
     */
    public static float[] argbWindowToChw(int[] argb, int imageWidth, int y0, int x0, int h, int w,
                                          int outH, int outW, float[] into) {
        if (h < 1 || w < 1 || outH < h || outW < w) {
            throw new IllegalArgumentException(
                    "bad window " + h + "x" + w + " padded to " + outH + "x" + outW);
        }
        int plane = outH * outW;
        float[] chw = into != null && into.length == 3 * plane ? into : new float[3 * plane];
        for (int y = 0; y < outH; y++) {
            int row = (y0 + Math.min(y, h - 1)) * imageWidth + x0;
            for (int x = 0; x < outW; x++) {
                int p = argb[row + Math.min(x, w - 1)];
                int i = y * outW + x;
                chw[i] = (float) ((p >> 16) & 0xFF) / 255f;
                chw[plane + i] = (float) ((p >> 8) & 0xFF) / 255f;
                chw[2 * plane + i] = (float) (p & 0xFF) / 255f;
            }
        }
        return chw;
    }

    /** Opaque ARGB pixels from planar RGB floats {@code [3][height][width]}. */
    public static int[] chwToArgb(float[] chw, int width, int height) {
        int plane = width * height;
        if (chw.length != 3 * plane) {
            throw new IllegalArgumentException(
                    "expected 3x" + height + "x" + width + " floats, got " + chw.length);
        }
        int[] argb = new int[plane];
        for (int i = 0; i < plane; i++) {
            argb[i] = 0xFF000000 | (toUint8(chw[i]) << 16) | (toUint8(chw[plane + i]) << 8)
                    | toUint8(chw[2 * plane + i]);
        }
        return argb;
    }

    static void checkSize(int length, int width, int height) {
        if (width < 1 || height < 1 || (long) width * height != length) {
            throw new IllegalArgumentException(
                    "expected " + width + "x" + height + " pixels, got " + length);
        }
    }
}
