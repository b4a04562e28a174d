package org.lmfnedge.imagecore;

import static org.junit.Assert.assertArrayEquals;
import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertTrue;
import static org.junit.Assert.fail;

import java.util.Arrays;
import java.util.HashSet;
import java.util.List;
import org.junit.Test;

public class TilePlanTest {
    private static final int[][] CASES = {
        {1, 1, 64, 8}, {5, 7, 4, 1}, {10, 10, 4, 0}, {17, 9, 8, 3}, {64, 64, 64, 8},
        {65, 64, 64, 8}, {100, 37, 32, 31}, {3, 50, 16, 4}, {480, 640, 128, 16},
    };

    @Test
    public void everyPixelIsCoveredByFullSizeTiles() {
        for (int[] c : CASES) {
            int h = c[0], w = c[1], tile = c[2], overlap = c[3];
            List<TilePlan.Tile> tiles = TilePlan.plan(h, w, tile, overlap);
            int[] cover = new int[h * w];
            int maxY1 = 0, maxX1 = 0;
            for (TilePlan.Tile t : tiles) {
                assertEquals(Math.min(tile, h), t.height());
                assertEquals(Math.min(tile, w), t.width());
                assertTrue(t.y0 >= 0 && t.x0 >= 0 && t.y1 <= h && t.x1 <= w);
                for (int y = t.y0; y < t.y1; y++) {
                    for (int x = t.x0; x < t.x1; x++) {
                        cover[y * w + x]++;
                    }
                }
                maxY1 = Math.max(maxY1, t.y1);
                maxX1 = Math.max(maxX1, t.x1);
            }
            for (int v : cover) {
                assertTrue(Arrays.toString(c), v >= 1);
            }
            assertEquals(h, maxY1);
            assertEquals(w, maxX1);
            assertEquals("duplicates in " + Arrays.toString(c), tiles.size(), new HashSet<>(tiles).size());
            for (int i = 1; i < tiles.size(); i++) {
                TilePlan.Tile a = tiles.get(i - 1), b = tiles.get(i);
                assertTrue("row-major", a.y0 < b.y0 || (a.y0 == b.y0 && a.x0 < b.x0));
            }
        }
    }

    @Test
    public void exactSmallCase() {
        assertEquals(Arrays.asList(
                new TilePlan.Tile(0, 0, 4, 4), new TilePlan.Tile(0, 3, 4, 7),
                new TilePlan.Tile(3, 0, 7, 4), new TilePlan.Tile(3, 3, 7, 7),
                new TilePlan.Tile(6, 0, 10, 4), new TilePlan.Tile(6, 3, 10, 7)),
                TilePlan.plan(10, 7, 4, 1));
    }

    @Test
    public void smallImageIsOneTileOfItsOwnSize() {
        assertEquals(Arrays.asList(new TilePlan.Tile(0, 0, 1, 1)), TilePlan.plan(1, 1, 64, 8));
        assertEquals(Arrays.asList(new TilePlan.Tile(0, 0, 20, 30)), TilePlan.plan(20, 30, 64, 8));
    }

    @Test
    public void lastStartIsClampedWithoutDuplicates() {
        assertArrayEquals(new int[] {0, 4, 5}, TilePlan.axisStarts(11, 6, 4));
        assertArrayEquals(new int[] {0, 4}, TilePlan.axisStarts(10, 6, 4));
        assertArrayEquals(new int[] {0}, TilePlan.axisStarts(6, 6, 4));
    }

    @Test
    public void badArgumentsAreRejected() {
        int[][] bad = {{10, 10, 0, 0}, {10, 10, 4, -1}, {10, 10, 4, 4}, {0, 10, 4, 1}, {10, 0, 4, 1}};
        String[] words = {"tile", "overlap", "overlap must be < tile", "height", "width"};
        for (int i = 0; i < bad.length; i++) {
            try {
                TilePlan.plan(bad[i][0], bad[i][1], bad[i][2], bad[i][3]);
                fail("accepted " + Arrays.toString(bad[i]));
            } catch (IllegalArgumentException e) {
                assertTrue(e.getMessage(), e.getMessage().contains(words[i]));
            }
        }
    }
}
