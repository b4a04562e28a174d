package org.lmfnedge.imagecore;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.util.List;
import java.util.Map;

/** Reads the golden vectors written by {@code python -m lmfn_edge.android_golden}. */
final class Golden {
    static final String FORMAT = "lmfn-edge-golden";

    private Golden() {}

    @SuppressWarnings("unchecked")
    static Map<String, Object> load(String name) throws IOException {
        String path = "/golden/" + name;
        try (InputStream in = Golden.class.getResourceAsStream(path)) {
            if (in == null) {
                throw new IOException("missing test resource " + path
                        + "; regenerate with python -m lmfn_edge.android_golden");
            }
            ByteArrayOutputStream bytes = new ByteArrayOutputStream();
            byte[] buf = new byte[8192];
            for (int n; (n = in.read(buf)) > 0; ) {
                bytes.write(buf, 0, n);
            }
            Map<String, Object> root = (Map<String, Object>) Json.parse(
                    new String(bytes.toByteArray(), StandardCharsets.UTF_8));
            if (!FORMAT.equals(root.get("format")) || !Long.valueOf(1).equals(root.get("version"))) {
                throw new IOException(path + " is not version 1 of " + FORMAT);
            }
            return root;
        }
    }

    @SuppressWarnings("unchecked")
    static List<Map<String, Object>> cases(Map<String, Object> root) {
        return (List<Map<String, Object>>) root.get("cases");
    }

    @SuppressWarnings("unchecked")
    static Map<String, Object> object(Map<String, Object> map, String key) {
        return (Map<String, Object>) map.get(key);
    }

    static int integer(Map<String, Object> map, String key) {
        return ((Long) map.get(key)).intValue();
    }

    static boolean bool(Map<String, Object> map, String key) {
        return (Boolean) map.get(key);
    }

    static float[] floats(Object list) {
        List<?> values = (List<?>) list;
        float[] out = new float[values.size()];
        for (int i = 0; i < out.length; i++) {
            out[i] = (float) ((Number) values.get(i)).doubleValue();
        }
        return out;
    }

    static int[] ints(Object list) {
        List<?> values = (List<?>) list;
        int[] out = new int[values.size()];
        for (int i = 0; i < out.length; i++) {
            out[i] = ((Long) values.get(i)).intValue();
        }
        return out;
    }

    /** Big-endian 32-bit words, 8 hex digits each. */
    static int[] hexWords(String hex) {
        int[] out = new int[hex.length() / 8];
        for (int i = 0; i < out.length; i++) {
            out[i] = (int) Long.parseLong(hex.substring(8 * i, 8 * i + 8), 16);
        }
        return out;
    }

    static int[] hexBytes(String hex) {
        int[] out = new int[hex.length() / 2];
        for (int i = 0; i < out.length; i++) {
            out[i] = Integer.parseInt(hex.substring(2 * i, 2 * i + 2), 16);
        }
        return out;
    }
}
