package org.lmfnedge.imagecore;

import java.util.List;
import java.util.concurrent.CancellationException;
import java.util.function.BooleanSupplier;

/**
 * Whole-image upscaling with a fixed-tile program; mirrors {@code lmfn_edge.runtime.tiling.upscale_tiled}.
 *
 * <p>Tiles run one row of tiles at a time. Float accumulators exist only for a band of
 * {@code scale * tile} output rows; rows no later tile row touches are converted to ARGB and
 * handed to a {@link RowSink} as soon as their row of tiles is done, so a large output never
 * exists as floats.
 */
public final class TiledUpscaler {
    /** Output rows converted and handed to the sink per call. */
    static final int EMIT_ROWS = 32;

    /** Receives finished output rows, top to bottom. */
    public interface RowSink {
        /**
         * @param y first output row
         * @param rows number of rows
         * @param argb {@code rows x outputWidth} opaque ARGB pixels; reused after the call returns
         */
        void accept(int y, int rows, int[] argb);
    }

    /** Called after every tile. */
    public interface ProgressListener {
        /**
         * @param done tiles finished so far
         * @param total tiles in the plan
         * @param runNanos time spent in {@link TileRunner#run} for this tile
         */
        void onTile(int done, int total, long runNanos);
    }

    private final TileRunner runner;
    private final int scale;
    private final int tile;
    private final int overlap;
    private final boolean padToTile;

    /**
     * @param padToTile when the image is smaller than {@code tile} in a dimension, edge-pad that
     *     tile to {@code tile x tile} and crop the output back (fixed-shape programs need this)
     */
    public TiledUpscaler(TileRunner runner, int scale, int tile, int overlap, boolean padToTile) {
        if (runner == null) {
            throw new IllegalArgumentException("runner is null");
        }
        if (scale < 1) {
            throw new IllegalArgumentException("scale must be >= 1, got " + scale);
        }
        TilePlan.plan(1, 1, tile, overlap); // validates tile and overlap
        this.runner = runner;
        this.scale = scale;
        this.tile = tile;
        this.overlap = overlap;
        this.padToTile = padToTile;
    }

    /** The settings a manifest asks for, with padding on (the exported program's shape is fixed). */
    public static TiledUpscaler forManifest(TileRunner runner, Manifest manifest) {
        return new TiledUpscaler(runner, manifest.scale, manifest.tile, manifest.overlap, true);
    }

    public int scale() {
        return scale;
    }

    /** Number of tiles {@link #upscale} will run for an image of this size. */
    public int tileCount(int width, int height) {
        return TilePlan.plan(height, width, tile, overlap).size();
    }

    /** Upscales and returns the whole {@code (scale*height) x (scale*width)} ARGB image. */
    public int[] upscale(int[] argb, int width, int height) {
        final int outW = scale * width;
        final int[] out = new int[Math.multiplyExact(scale * height, outW)];
        upscale(argb, width, height,
                (y, rows, pixels) -> System.arraycopy(pixels, 0, out, y * outW, rows * outW),
                null, null);
        return out;
    }

    /**
     * Upscales {@code argb} ({@code height x width}, row-major) and streams the output rows.
     *
     * @param progress may be null
     * @param isCancelled checked before every tile; may be null
     * @throws CancellationException when {@code isCancelled} returns true
     * @throws IllegalStateException when the runner returns the wrong number of values
     */
    public void upscale(int[] argb, int width, int height, RowSink sink, ProgressListener progress,
                        BooleanSupplier isCancelled) {
        ImageTensors.checkSize(argb.length, width, height);
        final int s = scale;
        final int outW = s * width;
        List<TilePlan.Tile> tiles = TilePlan.plan(height, width, tile, overlap);
        Blend.Band band = new Blend.Band(s * Math.min(tile, height), outW);
        int[] rowBuffer = new int[EMIT_ROWS * outW];
        // Tiles padded to the program's fixed shape all have one size: one input buffer serves
        // them all (the runner must not keep it between calls).
        float[] input = padToTile ? new float[3 * tile * tile] : null;
        int done = 0;
        int i = 0;
        while (i < tiles.size()) {
            TilePlan.Tile first = tiles.get(i);
            int y0 = first.y0;
            float[] wy = Blend.weights(s * first.height(), s * overlap, y0 == 0, first.y1 == height);
            for (; i < tiles.size() && tiles.get(i).y0 == y0; i++) {
                if (isCancelled != null && isCancelled.getAsBoolean()) {
                    throw new CancellationException("upscale cancelled after " + done + " tiles");
                }
                TilePlan.Tile t = tiles.get(i);
                int ph = padToTile ? Math.max(t.height(), tile) : t.height();
                int pw = padToTile ? Math.max(t.width(), tile) : t.width();
                float[] in = ImageTensors.argbWindowToChw(argb, width, t.y0, t.x0, t.height(), t.width(), ph, pw,
                        input);
                long start = System.nanoTime();
                float[] out = runner.run(in, ph, pw);
                long runNanos = System.nanoTime() - start;
                if (out == null || out.length != 3 * (s * ph) * (s * pw)) {
                    throw new IllegalStateException("runner returned " + (out == null ? "null" : out.length + " values")
                            + ", expected 3x" + s * ph + "x" + s * pw);
                }
                float[] wx = Blend.weights(s * t.width(), s * overlap, t.x0 == 0, t.x1 == width);
                band.add(out, s * ph, s * pw, s * t.height(), s * t.width(), 0, s * t.x0, wy, wx);
                done++;
                if (progress != null) {
                    progress.onTile(done, tiles.size(), runNanos);
                }
            }
            // Rows above the next tile row's start are final; the rest stay in the band.
            int nextY0 = i < tiles.size() ? tiles.get(i).y0 : height;
            int finished = s * (nextY0 - y0);
            for (int r0 = 0; r0 < finished; r0 += EMIT_ROWS) {
                int r1 = Math.min(r0 + EMIT_ROWS, finished);
                band.emit(r0, r1, rowBuffer);
                sink.accept(s * y0 + r0, r1 - r0, rowBuffer);
            }
            band.shift(finished);
        }
    }
}
