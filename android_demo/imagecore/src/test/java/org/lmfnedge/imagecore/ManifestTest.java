package org.lmfnedge.imagecore;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertNull;
import static org.junit.Assert.assertTrue;
import static org.junit.Assert.fail;

import java.io.ByteArrayInputStream;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.util.Map;
import org.junit.Test;

/**
 * The app reads sidecars exactly as Python's {@code lmfn_edge.manifest} does: every case of
 * {@code golden/manifests.json} (written by {@code python -m lmfn_edge.android_golden}, which
 * checks Python's verdicts while writing it) gets the same verdict here.
 */
public class ManifestTest {
    @Test
    public void everyGoldenSidecarGetsPythonsVerdict() throws IOException {
        int accepted = 0;
        int refused = 0;
        for (Map<String, Object> c : Golden.cases(Golden.load("manifests.json"))) {
            String name = (String) c.get("name");
            String text = (String) c.get("text");
            String python = (String) c.get("python");
            String app = (String) c.get("app");
            String keyword = (String) c.get("keyword");
            Manifest m = null;
            try {
                m = Manifest.parse(text);
                assertEquals(name + ": Python refuses it, so must the app", "accept", python);
            } catch (IllegalArgumentException e) {
                assertEquals(name + ": Python accepts it, the app refused: " + e.getMessage(), "refuse", python);
                assertTrue(name + ": \"" + e.getMessage() + "\" lacks \"" + keyword + "\"",
                        e.getMessage().contains(keyword));
                refused++;
                continue;
            }
            try {
                m.checkRunnable();
                assertEquals(name + ": the app should not run this program", "accept", app);
            } catch (IllegalArgumentException e) {
                assertEquals(name + ": the app refused a program it can run: " + e.getMessage(), "refuse", app);
                assertTrue(name + ": \"" + e.getMessage() + "\" lacks \"" + keyword + "\"",
                        e.getMessage().contains(keyword));
                continue;
            }
            Map<String, Object> expect = Golden.object(c, "expect");
            assertEquals(name, expect.get("model"), m.model);
            assertEquals(name, Golden.integer(expect, "scale"), m.scale);
            assertEquals(name, expect.get("target"), m.target);
            assertEquals(name, expect.get("precision"), m.precision);
            assertEquals(name, Golden.integer(expect, "tile"), m.tile);
            assertEquals(name, Golden.integer(expect, "overlap"), m.overlap);
            accepted++;
        }
        assertTrue("the golden file must hold both kinds of case", accepted >= 3 && refused >= 10);
    }

    @Test
    public void fieldsOutsideTheSchemaAreReadable() throws IOException {
        Map<String, Object> first = Golden.cases(Golden.load("manifests.json")).get(0);
        Manifest m = Manifest.parse((String) first.get("text"));
        assertEquals("lmfn_x4_xnnpack_fp32.pte", m.optionalString("artifact"));
        assertNull(m.optionalString("missing"));
        assertNull(m.optionalString("delegation"));
        assertEquals(64, m.artifactSha256.length());
    }

    @Test
    public void programMustMatchTheRecordedSha256() throws IOException {
        // FIPS 180-2's test vector: SHA-256("abc").
        String abc = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        String text = (String) Golden.cases(Golden.load("manifests.json")).get(0).get("text");
        Manifest m = Manifest.parse(text.replace("\"" + "ab".repeat(32) + "\"", "\"" + abc + "\""));
        m.checkProgram(new ByteArrayInputStream("abc".getBytes(StandardCharsets.US_ASCII)));
        try {
            m.checkProgram(new ByteArrayInputStream("abd".getBytes(StandardCharsets.US_ASCII)));
            fail("accepted a program with another SHA-256");
        } catch (IllegalArgumentException e) {
            assertTrue(e.getMessage(), e.getMessage().contains("does not match its manifest"));
        }
        String unhashed = Golden.cases(Golden.load("manifests.json")).stream()
                .filter(c -> "no_program_sha256".equals(c.get("name"))).findFirst().get().get("text").toString();
        Manifest.parse(unhashed).checkProgram(new ByteArrayInputStream(new byte[] {1, 2, 3}));
    }

    @Test
    public void malformedJsonNamesTheProblem() {
        try {
            Manifest.parse("{\"format\": ");
            fail("accepted malformed JSON");
        } catch (IllegalArgumentException e) {
            assertTrue(e.getMessage(), e.getMessage().contains("JSON"));
        }
    }
}
