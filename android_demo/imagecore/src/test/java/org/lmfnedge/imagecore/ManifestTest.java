package org.lmfnedge.imagecore;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertNull;
import static org.junit.Assert.assertTrue;
import static org.junit.Assert.fail;

import org.junit.Test;

public class ManifestTest {
    private static final String VALID = "{\"format\": \"lmfn-edge-manifest\", \"version\": 1,"
            + " \"model\": \"lmfn_x2\", \"scale\": 2, \"tile\": 128, \"overlap\": 16,"
            + " \"input_range\": [0, 1], \"layout\": \"NCHW\", \"precision\": \"fp32\","
            + " \"delegation\": {\"delegated\": 41, \"backends\": [\"XnnpackBackend\"]}}";

    @Test
    public void validManifestIsRead() {
        Manifest m = Manifest.parse(VALID);
        assertEquals("lmfn_x2", m.model);
        assertEquals(2, m.scale);
        assertEquals(128, m.tile);
        assertEquals(16, m.overlap);
        assertEquals("fp32", m.optionalString("precision"));
        assertNull(m.optionalString("missing"));
        assertNull(m.optionalString("delegation"));
    }

    @Test
    public void floatRangeIsAccepted() {
        Manifest.parse(VALID.replace("[0, 1]", "[0.0, 1.0]"));
    }

    @Test
    public void unknownFormatOrVersionIsRefused() {
        expectRefusal(VALID.replace("lmfn-edge-manifest", "something-else"), "not an LMFN Edge manifest");
        expectRefusal(VALID.replace("\"version\": 1", "\"version\": 2"), "unsupported manifest version 2");
    }

    @Test
    public void everyRequiredFieldIsChecked() {
        String[] fields = {"\"format\": \"lmfn-edge-manifest\", ", "\"version\": 1,", " \"model\": \"lmfn_x2\",",
            " \"scale\": 2,", " \"tile\": 128,", " \"overlap\": 16,", " \"input_range\": [0, 1],",
            " \"layout\": \"NCHW\","};
        String[] names = {"format", "version", "model", "scale", "tile", "overlap", "input_range", "layout"};
        for (int i = 0; i < fields.length; i++) {
            String json = VALID.replace(fields[i], "");
            assertTrue(fields[i], json.length() < VALID.length());
            expectRefusal(json, "missing required field \"" + names[i] + "\"");
        }
    }

    @Test
    public void valuesItCannotUseAreRefused() {
        expectRefusal(VALID.replace("[0, 1]", "[0, 255]"), "input_range");
        expectRefusal(VALID.replace("NCHW", "NHWC"), "layout");
        expectRefusal(VALID.replace("\"tile\": 128", "\"tile\": 128.5"), "\"tile\" must be an integer");
        expectRefusal(VALID.replace("\"scale\": 2", "\"scale\": \"2\""), "\"scale\" must be an integer");
        expectRefusal(VALID.replace("\"overlap\": 16", "\"overlap\": 128"), "overlap must be in [0, tile)");
        expectRefusal(VALID.replace("\"scale\": 2", "\"scale\": 0"), "scale must be >= 1");
        expectRefusal(VALID.replace("\"lmfn_x2\"", "\"\""), "\"model\" is empty");
        expectRefusal("[1, 2]", "must be a JSON object");
        expectRefusal(VALID.substring(0, 40), "malformed JSON");
    }

    private static void expectRefusal(String json, String message) {
        try {
            Manifest.parse(json);
            fail("accepted: " + json);
        } catch (IllegalArgumentException e) {
            assertTrue("message \"" + e.getMessage() + "\" lacks \"" + message + "\"",
                    e.getMessage().contains(message));
        }
    }
}
