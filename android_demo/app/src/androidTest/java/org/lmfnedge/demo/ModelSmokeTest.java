package org.lmfnedge.demo;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertTrue;

import android.content.Context;
import androidx.test.ext.junit.runners.AndroidJUnit4;
import androidx.test.platform.app.InstrumentationRegistry;
import org.junit.BeforeClass;
import org.junit.Test;
import org.junit.runner.RunWith;
import org.lmfnedge.imagecore.Manifest;
import org.lmfnedge.imagecore.TiledUpscaler;

/**
 * On a device or emulator: the .pte and manifest bundled in assets load through ExecuTorch and
 * give outputs of the manifest's shape and a sane range. Needs the export step of README.md.
 */
@RunWith(AndroidJUnit4.class)
public class ModelSmokeTest {
    private static ModelFiles files;

    @BeforeClass
    public static void install() throws Exception {
        Context context = InstrumentationRegistry.getInstrumentation().getTargetContext();
        files = ModelFiles.install(context);
    }

    /** Smooth colour ramps in [0, 1], planar 3 x h x w. */
    private static float[] ramps(int h, int w) {
        float[] chw = new float[3 * h * w];
        for (int y = 0; y < h; y++) {
            for (int x = 0; x < w; x++) {
                int i = y * w + x;
                chw[i] = 0.2f + 0.6f * x / w;
                chw[h * w + i] = 0.2f + 0.6f * y / h;
                chw[2 * h * w + i] = 0.5f;
            }
        }
        return chw;
    }

    @Test
    public void oneTileHasTheManifestShapeAndASaneRange() {
        Manifest m = files.manifest;
        int t = m.tile;
        int s = m.scale;
        float[] in = ramps(t, t);
        try (ExecuTorchTileRunner runner = new ExecuTorchTileRunner(files.pte.getAbsolutePath(), s, t)) {
            float[] out = runner.run(in, t, t); // the runner checks the 1x3x(s*t)x(s*t) shape
            assertEquals(3 * s * t * s * t, out.length);
            double inMean = 0;
            for (float v : in) {
                inMean += v;
            }
            inMean /= in.length;
            double outMean = 0;
            for (float v : out) {
                assertTrue("non-finite output " + v, !Float.isNaN(v) && !Float.isInfinite(v));
                assertTrue("output " + v + " far outside [0, 1]", v > -0.25f && v < 1.25f);
                outMean += v;
            }
            outMean /= out.length;
            // Super-resolution keeps the low frequencies of its input: the mean barely moves.
            assertEquals("mean brightness", inMean, outMean, 0.05);
        }
    }

    @Test
    public void tiledUpscaleOfAnImageLargerThanOneTile() {
        Manifest m = files.manifest;
        int w = m.tile + m.tile / 2;
        int h = m.tile / 2 + 3; // shorter than a tile: exercises the edge padding
        int[] argb = new int[w * h];
        for (int i = 0; i < argb.length; i++) {
            argb[i] = 0xFF000000 | ((i * 7) & 0xFF) << 16 | ((i / w) & 0xFF) << 8 | 0x80;
        }
        try (ExecuTorchTileRunner runner = new ExecuTorchTileRunner(files.pte.getAbsolutePath(), m.scale, m.tile)) {
            int[] out = TiledUpscaler.forManifest(runner, m).upscale(argb, w, h);
            assertEquals(m.scale * w * m.scale * h, out.length);
            for (int p : out) {
                assertEquals(0xFF, p >>> 24);
            }
        }
    }
}
