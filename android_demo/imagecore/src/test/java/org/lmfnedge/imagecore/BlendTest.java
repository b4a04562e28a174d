package org.lmfnedge.imagecore;

import static org.junit.Assert.assertArrayEquals;
import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertTrue;

import org.junit.Test;

public class BlendTest {
    @Test
    public void rampsOnInteriorSidesOnly() {
        assertArrayEquals(new float[] {0.25f, 0.5f, 0.75f, 1f, 1f, 0.75f, 0.5f, 0.25f},
                Blend.weights(8, 3, false, false), 0f);
        assertArrayEquals(new float[] {1f, 1f, 1f, 1f, 1f, 0.75f, 0.5f, 0.25f},
                Blend.weights(8, 3, true, false), 0f);
        assertArrayEquals(new float[] {1f, 1f, 1f, 1f}, Blend.weights(4, 3, true, true), 0f);
        assertArrayEquals(new float[] {1f, 1f, 1f}, Blend.weights(3, 0, false, false), 0f);
    }

    @Test
    public void weightsArePositiveAndAtMostOne() {
        int[][] cases = {{1, 0}, {1, 5}, {3, 5}, {8, 3}, {16, 15}, {256, 32}};
        for (int[] c : cases) {
            for (int m = 0; m < 4; m++) {
                float[] w = Blend.weights(c[0], c[1], (m & 1) != 0, (m & 2) != 0);
                assertEquals(c[0], w.length);
                for (float v : w) {
                    assertTrue(v > 0f && v <= 1f);
                }
            }
        }
    }

    @Test
    public void neighboursSumToOneOverTheNominalOverlap() {
        float[] a = Blend.weights(32, 8, true, false);
        float[] b = Blend.weights(32, 8, false, true);
        for (int i = 0; i < 8; i++) {
            assertEquals(1f, a[24 + i] + b[i], 1e-6f);
        }
    }

    @Test
    public void bandShiftKeepsTheUnfinishedRows() {
        Blend.Band band = new Blend.Band(4, 2);
        float[] ones = {1f, 1f, 1f, 1f};
        float[] out = new float[3 * 4 * 2];
        for (int i = 0; i < out.length; i++) {
            out[i] = (i % 8) / 8f; // rows 0..3 of each channel get different values
        }
        band.add(out, 4, 2, 4, 2, 0, 0, ones, new float[] {1f, 1f});
        int[] first = new int[4];
        band.emit(2, 4, first);
        band.shift(2);
        int[] after = new int[4];
        band.emit(0, 2, after);
        assertArrayEquals(first, after);
    }

    @Test(expected = IllegalArgumentException.class)
    public void zeroLengthIsRejected() {
        Blend.weights(0, 1, false, false);
    }
}
