package org.lmfnedge.imagecore;

import java.util.ArrayList;
import java.util.Collections;
import java.util.List;

/**
 * Overlapping tile plan; mirrors {@code lmfn_edge.runtime.tiling.plan_tiles} exactly.
 *
 * <p>Per axis the starts are {@code 0, stride, 2*stride, ...} with {@code stride = tile - overlap};
 * the last start is clamped to {@code size - tile} so the last tile ends at the image edge, and
 * no start repeats. Every tile is {@code tile} long unless the axis is shorter than {@code tile},
 * in which case the axis is one tile of its own length. Tiles are in row-major order.
 */
public final class TilePlan {
    private TilePlan() {}

    /** One LR input window, half-open: rows {@code y0..y1-1}, columns {@code x0..x1-1}. */
    public static final class Tile {
        public final int y0;
        public final int x0;
        public final int y1;
        public final int x1;

        public Tile(int y0, int x0, int y1, int x1) {
            this.y0 = y0;
            this.x0 = x0;
            this.y1 = y1;
            this.x1 = x1;
        }

        public int height() {
            return y1 - y0;
        }

        public int width() {
            return x1 - x0;
        }

        @Override
        public boolean equals(Object o) {
            if (!(o instanceof Tile)) {
                return false;
            }
            Tile t = (Tile) o;
            return y0 == t.y0 && x0 == t.x0 && y1 == t.y1 && x1 == t.x1;
        }

        @Override
        public int hashCode() {
            return ((y0 * 31 + x0) * 31 + y1) * 31 + x1;
        }

        @Override
        public String toString() {
            return "Tile(" + y0 + ", " + x0 + ", " + y1 + ", " + x1 + ")";
        }
    }

    /**
     * Cuts a {@code height x width} LR image into tiles.
     *
     * @throws IllegalArgumentException unless {@code height, width >= 1}, {@code tile >= 1} and
     *     {@code 0 <= overlap < tile}
     */
    public static List<Tile> plan(int height, int width, int tile, int overlap) {
        if (height < 1) {
            throw new IllegalArgumentException("height must be >= 1, got " + height);
        }
        if (width < 1) {
            throw new IllegalArgumentException("width must be >= 1, got " + width);
        }
        if (tile < 1) {
            throw new IllegalArgumentException("tile must be >= 1, got " + tile);
        }
        if (overlap < 0) {
            throw new IllegalArgumentException("overlap must be >= 0, got " + overlap);
        }
        if (overlap >= tile) {
            throw new IllegalArgumentException(
                    "overlap must be < tile, got overlap=" + overlap + ", tile=" + tile);
        }
        int stride = tile - overlap;
        int[] ys = axisStarts(height, tile, stride);
        int[] xs = axisStarts(width, tile, stride);
        List<Tile> tiles = new ArrayList<>(ys.length * xs.length);
        for (int y0 : ys) {
            for (int x0 : xs) {
                tiles.add(new Tile(y0, x0, Math.min(y0 + tile, height), Math.min(x0 + tile, width)));
            }
        }
        return Collections.unmodifiableList(tiles);
    }

    static int[] axisStarts(int size, int tile, int stride) {
        if (size <= tile) {
            return new int[] {0};
        }
        int last = size - tile;
        // Starts strictly below `last`, then `last` itself: never a duplicate.
        int n = (last + stride - 1) / stride;
        int[] starts = new int[n + 1];
        for (int i = 0; i < n; i++) {
            starts[i] = i * stride;
        }
        starts[n] = last;
        return starts;
    }
}
