package org.lmfnedge.imagecore;

import static org.junit.Assert.assertArrayEquals;
import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertTrue;
import static org.junit.Assert.fail;

import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Random;
import java.util.Set;
import java.util.concurrent.CancellationException;
import org.junit.Test;

public class TiledUpscalerTest {
    /** Nearest-neighbour upsampling; records the tile shapes it was given. */
    static final class Nearest implements TileRunner {
        final int scale;
        final Set<String> shapes = new HashSet<>();
        int calls;

        Nearest(int scale) {
            this.scale = scale;
        }

        @Override
        public float[] run(float[] chw, int h, int w) {
            calls++;
            shapes.add(h + "x" + w);
            int s = scale, oh = s * h, ow = s * w;
            float[] out = new float[3 * oh * ow];
            for (int c = 0; c < 3; c++) {
                for (int y = 0; y < oh; y++) {
                    for (int x = 0; x < ow; x++) {
                        out[(c * oh + y) * ow + x] = chw[(c * h + y / s) * w + x / s];
                    }
                }
            }
            return out;
        }
    }

    @Test
    public void fixedShapeTilesShareOneInputBuffer() {
        final Set<Integer> buffers = new HashSet<>();
        Nearest nearest = new Nearest(2);
        TileRunner recording = (chw, h, w) -> {
            buffers.add(System.identityHashCode(chw));
            return nearest.run(chw, h, w);
        };
        int[] argb = randomArgb(23 * 17, 5);
        int[] out = new TiledUpscaler(recording, 2, 8, 2, true).upscale(argb, 23, 17);
        assertTrue(nearest.calls > 4);
        assertEquals("one buffer for every tile", 1, buffers.size());
        assertArrayEquals(nearestReference(argb, 23, 17, 2), out);
    }

    static int[] randomArgb(int n, long seed) {
        Random random = new Random(seed);
        int[] argb = new int[n];
        for (int i = 0; i < n; i++) {
            argb[i] = random.nextInt();
        }
        return argb;
    }

    static int[] nearestReference(int[] argb, int w, int h, int s) {
        int[] out = new int[s * h * s * w];
        for (int y = 0; y < s * h; y++) {
            for (int x = 0; x < s * w; x++) {
                out[y * s * w + x] = argb[(y / s) * w + x / s] | 0xFF000000;
            }
        }
        return out;
    }

    @Test
    public void nearestUpsamplingIsReproducedExactly() {
        int[][] cases = {{37, 53, 2, 16, 4}, {40, 40, 3, 12, 5}, {64, 48, 4, 16, 0}, {9, 70, 2, 16, 6}, {5, 3, 2, 8, 2}};
        for (int[] c : cases) {
            int h = c[0], w = c[1], s = c[2];
            int[] argb = randomArgb(h * w, h * 31L + w);
            for (boolean pad : new boolean[] {true, false}) {
                int[] out = new TiledUpscaler(new Nearest(s), s, c[3], c[4], pad).upscale(argb, w, h);
                assertArrayEquals(java.util.Arrays.toString(c), nearestReference(argb, w, h, s), out);
            }
        }
    }

    @Test
    public void smallImagesArePaddedToTheTileOnlyWhenAsked() {
        int[] argb = randomArgb(5 * 40, 1);
        Nearest padded = new Nearest(2);
        new TiledUpscaler(padded, 2, 16, 4, true).upscale(argb, 40, 5);
        assertEquals(java.util.Collections.singleton("16x16"), padded.shapes);
        Nearest unpadded = new Nearest(2);
        new TiledUpscaler(unpadded, 2, 16, 4, false).upscale(argb, 40, 5);
        assertEquals(java.util.Collections.singleton("5x16"), unpadded.shapes);
    }

    @Test
    public void rowsAreStreamedTopToBottomInSmallChunks() {
        int h = 100, w = 30, s = 2;
        int[] argb = randomArgb(h * w, 2);
        List<int[]> calls = new ArrayList<>();
        int[] out = new int[s * h * s * w];
        new TiledUpscaler(new Nearest(s), s, 24, 6, true).upscale(argb, w, h, (y, rows, pixels) -> {
            calls.add(new int[] {y, rows});
            System.arraycopy(pixels, 0, out, y * s * w, rows * s * w);
        }, null, null);
        int next = 0;
        for (int[] call : calls) {
            assertEquals(next, call[0]);
            assertTrue(call[1] >= 1 && call[1] <= TiledUpscaler.EMIT_ROWS);
            next += call[1];
        }
        assertEquals(s * h, next);
        assertArrayEquals(nearestReference(argb, w, h, s), out);
    }

    @Test
    public void progressReportsEveryTile() {
        TiledUpscaler upscaler = new TiledUpscaler(new Nearest(2), 2, 8, 2, true);
        int total = upscaler.tileCount(20, 20);
        assertEquals(9, total);
        List<Integer> done = new ArrayList<>();
        upscaler.upscale(randomArgb(400, 3), 20, 20, (y, rows, pixels) -> { }, (d, t, nanos) -> {
            assertEquals(total, t);
            assertTrue(nanos >= 0);
            done.add(d);
        }, null);
        assertEquals(total, done.size());
        for (int i = 0; i < total; i++) {
            assertEquals(i + 1, (int) done.get(i));
        }
    }

    @Test
    public void cancellationStopsBeforeTheNextTile() {
        Nearest runner = new Nearest(2);
        TiledUpscaler upscaler = new TiledUpscaler(runner, 2, 8, 2, true);
        try {
            upscaler.upscale(randomArgb(400, 4), 20, 20, (y, rows, pixels) -> { }, null,
                    () -> runner.calls >= 3);
            fail("not cancelled");
        } catch (CancellationException e) {
            assertEquals(3, runner.calls);
        }
    }

    @Test
    public void wrongRunnerOutputIsReported() {
        TileRunner broken = (chw, h, w) -> new float[3 * h * w];
        try {
            new TiledUpscaler(broken, 2, 8, 2, true).upscale(randomArgb(64, 5), 8, 8);
            fail("accepted a 1x output from a 2x runner");
        } catch (IllegalStateException e) {
            assertTrue(e.getMessage(), e.getMessage().contains("expected 3x16x16"));
        }
    }

    @Test
    public void badSettingsAreRejected() {
        int[][] bad = {{0, 8, 2}, {2, 0, 0}, {2, 8, 8}, {2, 8, -1}};
        for (int[] b : bad) {
            try {
                new TiledUpscaler(new Nearest(2), b[0], b[1], b[2], true);
                fail("accepted " + java.util.Arrays.toString(b));
            } catch (IllegalArgumentException expected) {
                // ok
            }
        }
    }
}
