package org.lmfnedge.imagecore;

import static org.junit.Assert.assertArrayEquals;
import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertTrue;

import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import org.junit.Test;

/** The Java image core reproduces the Python golden vectors: integers exactly, floats to 1e-6. */
public class GoldenTest {
    private static final float EPS = 1e-6f;

    @Test
    public void tilePlansMatchPython() throws Exception {
        List<Map<String, Object>> cases = Golden.cases(Golden.load("plans.json"));
        assertTrue(cases.size() >= 5);
        for (Map<String, Object> c : cases) {
            int h = Golden.integer(c, "height");
            int w = Golden.integer(c, "width");
            int tile = Golden.integer(c, "tile");
            int overlap = Golden.integer(c, "overlap");
            List<TilePlan.Tile> expected = new ArrayList<>();
            for (Object t : (List<?>) c.get("tiles")) {
                int[] v = Golden.ints(t);
                expected.add(new TilePlan.Tile(v[0], v[1], v[2], v[3]));
            }
            assertEquals("plan " + h + "x" + w + " tile " + tile + " overlap " + overlap,
                    expected, TilePlan.plan(h, w, tile, overlap));
        }
    }

    @Test
    public void blendWeightsMatchPython() throws Exception {
        for (Map<String, Object> c : Golden.cases(Golden.load("blend_weights.json"))) {
            float[] expected = Golden.floats(c.get("weights"));
            float[] actual = Blend.weights(Golden.integer(c, "tile_len_out"),
                    Golden.integer(c, "overlap_out"), Golden.bool(c, "at_start"), Golden.bool(c, "at_end"));
            assertArrayEquals(c.toString(), expected, actual, EPS);
        }
    }

    @Test
    public void argbConversionsMatchPython() throws Exception {
        Map<String, Object> argbCase = Golden.object(Golden.load("image_core.json"), "argb");
        int h = Golden.integer(argbCase, "height");
        int w = Golden.integer(argbCase, "width");
        int[] argb = Golden.hexWords((String) argbCase.get("argb_hex"));
        float[] expectedChw = Golden.floats(argbCase.get("chw"));
        int[] expectedBack = Golden.hexWords((String) argbCase.get("argb_out_hex"));

        float[] chw = ImageTensors.argbToChw(argb, w, h);
        assertArrayEquals(expectedChw, chw, EPS);
        assertArrayEquals(expectedBack, ImageTensors.chwToArgb(expectedChw, w, h));
        assertArrayEquals(expectedBack, ImageTensors.chwToArgb(chw, w, h));
    }

    @Test
    public void roundingRuleMatchesPython() throws Exception {
        Map<String, Object> q = Golden.object(Golden.load("image_core.json"), "quantize");
        float[] inputs = Golden.floats(q.get("inputs"));
        int[] outputs = Golden.ints(q.get("outputs"));
        assertEquals(inputs.length, outputs.length);
        for (int i = 0; i < inputs.length; i++) {
            assertEquals("toUint8(" + inputs[i] + ")", outputs[i], ImageTensors.toUint8(inputs[i]));
        }
    }

    @Test
    public void tiledUpscalesMatchPythonExactly() throws Exception {
        Map<String, Object> root = Golden.load("upscale.json");
        Map<String, Object> model = Golden.object(root, "model");
        assertEquals("box3_affine_nearest", model.get("kind"));
        float[] gain = Golden.floats(model.get("gain"));
        float[] bias = Golden.floats(model.get("bias"));
        List<Map<String, Object>> cases = Golden.cases(root);
        assertTrue(cases.size() >= 3);
        for (Map<String, Object> c : cases) {
            String name = (String) c.get("name");
            int h = Golden.integer(c, "height");
            int w = Golden.integer(c, "width");
            int s = Golden.integer(c, "scale");
            TiledUpscaler upscaler = new TiledUpscaler(new GoldenModel(s, gain, bias), s,
                    Golden.integer(c, "tile"), Golden.integer(c, "overlap"), Golden.bool(c, "pad_to_tile"));
            int[] out = upscaler.upscale(Golden.hexWords((String) c.get("input_argb_hex")), w, h);
            int[] expected = Golden.hexBytes((String) c.get("output_rgb_hex"));
            assertEquals(name, expected.length, 3 * out.length);
            for (int i = 0; i < out.length; i++) {
                int p = out[i];
                String where = name + " pixel (" + i / (s * w) + ", " + i % (s * w) + ")";
                assertEquals(where + " alpha", 0xFF, p >>> 24);
                assertArrayEquals(where, new int[] {expected[3 * i], expected[3 * i + 1], expected[3 * i + 2]},
                        new int[] {(p >> 16) & 0xFF, (p >> 8) & 0xFF, p & 0xFF});
            }
        }
    }
}
