package org.lmfnedge.imagecore;

import java.util.Arrays;

/**
 * Tile blending; mirrors {@code lmfn_edge.runtime.tiling} exactly, in float32 and in the same order.
 *
 * <p>Along one axis a tile of output length {@code L} with output overlap {@code V} gets
 * {@code w[i] = min(rampStart[i], rampEnd[i])}, with {@code rampStart[i] = (i+1)/(V+1)} for
 * {@code i < V} unless the tile starts at the image border, {@code rampEnd[i] = (L-i)/(V+1)} for
 * {@code i >= L-V} unless it ends at the border, and 1 elsewhere. The 2-D weight is
 * {@code wy[y] * wx[x]}. Tiles are accumulated in plan order as {@code acc += w * out},
 * {@code wsum += w}, and each output pixel is {@code acc / wsum}.
 */
public final class Blend {
    private Blend() {}

    /**
     * 1-D weights, every value in (0, 1].
     *
     * @param tileLenOut output length of the tile (>= 1)
     * @param overlapOut output overlap, {@code scale * overlap} (>= 0)
     * @param atStart the tile starts at the image border (no ramp there)
     * @param atEnd the tile ends at the image border (no ramp there)
     */
    public static float[] weights(int tileLenOut, int overlapOut, boolean atStart, boolean atEnd) {
        if (tileLenOut < 1) {
            throw new IllegalArgumentException("tileLenOut must be >= 1, got " + tileLenOut);
        }
        if (overlapOut < 0) {
            throw new IllegalArgumentException("overlapOut must be >= 0, got " + overlapOut);
        }
        float[] w = new float[tileLenOut];
        Arrays.fill(w, 1f);
        int n = Math.min(overlapOut, tileLenOut);
        float denom = (float) (overlapOut + 1);
        if (!atStart) {
            for (int i = 0; i < n; i++) {
                w[i] = Math.min(w[i], (float) (i + 1) / denom);
            }
        }
        if (!atEnd) {
            for (int i = tileLenOut - n; i < tileLenOut; i++) {
                w[i] = Math.min(w[i], (float) (tileLenOut - i) / denom);
            }
        }
        return w;
    }

    /**
     * Float accumulators for a band of output rows, {@code width} pixels wide. Row 0 of the band
     * is the first output row not yet emitted.
     */
    public static final class Band {
        private final int rows;
        private final int width;
        private final float[] acc; // [3][rows][width]
        private final float[] wsum; // [rows][width]

        public Band(int rows, int width) {
            if (rows < 1 || width < 1) {
                throw new IllegalArgumentException("band must be at least 1x1, got " + rows + "x" + width);
            }
            long planeSize = (long) rows * width;
            if (3 * planeSize > Integer.MAX_VALUE) {
                throw new IllegalArgumentException(
                        "band of " + rows + " x " + width + " output pixels is too large; use a smaller tile");
            }
            this.rows = rows;
            this.width = width;
            this.acc = new float[(int) (3 * planeSize)];
            this.wsum = new float[(int) planeSize];
        }

        public int rows() {
            return rows;
        }

        /**
         * Adds the top-left {@code cropH x cropW} pixels of a planar tile output whose planes are
         * {@code outH x outW}, at band row {@code row} and output column {@code col}.
         */
        public void add(float[] out, int outH, int outW, int cropH, int cropW, int row, int col,
                        float[] wy, float[] wx) {
            if (row < 0 || row + cropH > rows || col < 0 || col + cropW > width
                    || cropH > outH || cropW > outW || wy.length < cropH || wx.length < cropW) {
                throw new IllegalArgumentException("tile does not fit the band");
            }
            int plane = rows * width;
            int outPlane = outH * outW;
            for (int y = 0; y < cropH; y++) {
                int dst = (row + y) * width + col;
                int src = y * outW;
                float wyv = wy[y];
                for (int x = 0; x < cropW; x++) {
                    float w = wyv * wx[x];
                    acc[dst + x] += w * out[src + x];
                    acc[plane + dst + x] += w * out[outPlane + src + x];
                    acc[2 * plane + dst + x] += w * out[2 * outPlane + src + x];
                    wsum[dst + x] += w;
                }
            }
        }

        /** Writes band rows {@code from..to-1} as opaque ARGB into {@code argb} (row-major). */
        public void emit(int from, int to, int[] argb) {
            int plane = rows * width;
            int k = 0;
            for (int i = from * width; i < to * width; i++) {
                float s = wsum[i];
                int r = ImageTensors.toUint8(acc[i] / s);
                int g = ImageTensors.toUint8(acc[plane + i] / s);
                int b = ImageTensors.toUint8(acc[2 * plane + i] / s);
                argb[k++] = 0xFF000000 | (r << 16) | (g << 8) | b;
            }
        }

        /** Drops the first {@code n} rows (already emitted) and zeroes the freed rows at the end. */
        public void shift(int n) {
            int keep = rows - n;
            int plane = rows * width;
            for (int c = 0; c < 3; c++) {
                System.arraycopy(acc, c * plane + n * width, acc, c * plane, keep * width);
                Arrays.fill(acc, c * plane + keep * width, (c + 1) * plane, 0f);
            }
            System.arraycopy(wsum, n * width, wsum, 0, keep * width);
            Arrays.fill(wsum, keep * width, plane, 0f);
        }
    }
}
