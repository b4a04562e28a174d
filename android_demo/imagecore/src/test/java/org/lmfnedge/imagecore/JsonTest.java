package org.lmfnedge.imagecore;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertNull;
import static org.junit.Assert.assertTrue;
import static org.junit.Assert.fail;

import java.util.Arrays;
import java.util.List;
import java.util.Map;
import org.junit.Test;

public class JsonTest {
    @Test
    public void valuesOfEveryKind() {
        Map<?, ?> m = (Map<?, ?>) Json.parse(
                " {\"a\": [1, -2, 0.5, -1.25e2, 1E3], \"b\": {\"c\": null, \"d\": true, \"e\": false}, \"s\": \"x\"}\n");
        List<?> a = (List<?>) m.get("a");
        assertEquals(Arrays.asList(1L, -2L, 0.5, -125.0, 1000.0), a);
        Map<?, ?> b = (Map<?, ?>) m.get("b");
        assertTrue(b.containsKey("c"));
        assertNull(b.get("c"));
        assertEquals(Boolean.TRUE, b.get("d"));
        assertEquals(Boolean.FALSE, b.get("e"));
        assertEquals("x", m.get("s"));
        assertEquals(Arrays.asList(), Json.parse("[]"));
        assertTrue(((Map<?, ?>) Json.parse("{}")).isEmpty());
    }

    @Test
    public void stringEscapes() {
        assertEquals("q\"b\\s/\b\f\n\r\t\u00e9\u20ac", Json.parse("\"q\\\"b\\\\s\\/\\b\\f\\n\\r\\t\\u00e9\\u20AC\""));
        assertEquals("\u00e9", Json.parse("\"\u00e9\""));
    }

    @Test
    public void doublesRoundTripFloat32Exactly() {
        // Python writes float32 values as the shortest double repr; casting back must be exact.
        float f = 0.3333333432674408f;
        assertEquals(Float.floatToIntBits(f),
                Float.floatToIntBits((float) ((Double) Json.parse("0.3333333432674408")).doubleValue()));
    }

    @Test
    public void malformedInputIsRejected() {
        String[] bad = {"", "[1,]", "{\"a\":1,}", "[01]", "\"abc", "{\"a\" 1}", "[1] x", "tru", "{\"a\":1,\"a\":2}",
            "[-]", "[1.]", "[1e]", "\"\\x\"", "\"\\u12\"", "{1: 2}", "\"a\nb\""};
        for (String json : bad) {
            try {
                Json.parse(json);
                fail("accepted " + json);
            } catch (IllegalArgumentException e) {
                assertTrue(e.getMessage(), e.getMessage().startsWith("malformed JSON"));
            }
        }
    }
}
