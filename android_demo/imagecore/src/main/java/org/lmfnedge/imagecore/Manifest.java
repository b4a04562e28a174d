package org.lmfnedge.imagecore;

import java.util.List;
import java.util.Map;

/**
 * The JSON sidecar that {@code python -m lmfn_edge.export} writes next to a .pte.
 *
 * <p>Only what the app needs to run the program is read; other keys (precision, hashes,
 * package versions, delegation summary) are allowed and ignored. A manifest this code does not
 * understand is refused rather than guessed at: a wrong scale or input range would give a
 * plausible-looking but wrong image.
 */
public final class Manifest {
    public static final String FORMAT = "lmfn-edge-manifest";
    public static final int VERSION = 1;
    public static final String LAYOUT = "NCHW";

    public final String model;
    public final int scale;
    public final int tile;
    public final int overlap;
    private final Map<String, Object> fields;

    private Manifest(Map<String, Object> fields) {
        this.fields = fields;
        this.model = requireString(fields, "model");
        this.scale = requireInt(fields, "scale");
        this.tile = requireInt(fields, "tile");
        this.overlap = requireInt(fields, "overlap");
        if (model.isEmpty()) {
            throw new IllegalArgumentException("manifest field \"model\" is empty");
        }
        if (scale < 1) {
            throw new IllegalArgumentException("manifest scale must be >= 1, got " + scale);
        }
        if (tile < 1) {
            throw new IllegalArgumentException("manifest tile must be >= 1, got " + tile);
        }
        if (overlap < 0 || overlap >= tile) {
            throw new IllegalArgumentException(
                    "manifest overlap must be in [0, tile), got " + overlap + " with tile " + tile);
        }
    }

    /**
     * Parses and validates a manifest.
     *
     * @throws IllegalArgumentException for malformed JSON, another format or version, a missing
     *     or mistyped field, or an input range or layout other than [0, 1] and NCHW
     */
    public static Manifest parse(String json) {
        Object root = Json.parse(json);
        if (!(root instanceof Map)) {
            throw new IllegalArgumentException("manifest must be a JSON object");
        }
        @SuppressWarnings("unchecked")
        Map<String, Object> fields = (Map<String, Object>) root;
        String format = requireString(fields, "format");
        if (!FORMAT.equals(format)) {
            throw new IllegalArgumentException(
                    "not an LMFN Edge manifest: format is \"" + format + "\", expected \"" + FORMAT + "\"");
        }
        int version = requireInt(fields, "version");
        if (version != VERSION) {
            throw new IllegalArgumentException("unsupported manifest version " + version
                    + "; this app reads version " + VERSION + " (re-export the model or update the app)");
        }
        String layout = requireString(fields, "layout");
        if (!LAYOUT.equals(layout)) {
            throw new IllegalArgumentException(
                    "unsupported layout \"" + layout + "\"; this app feeds " + LAYOUT + " tensors");
        }
        Object range = require(fields, "input_range");
        if (!isUnitRange(range)) {
            throw new IllegalArgumentException(
                    "unsupported input_range " + range + "; this app feeds pixels in [0, 1]");
        }
        return new Manifest(fields);
    }

    /** A string field outside the required set, or null when absent or not a string. */
    public String optionalString(String name) {
        Object v = fields.get(name);
        return v instanceof String ? (String) v : null;
    }

    @Override
    public String toString() {
        return model + " x" + scale + " tile " + tile + " overlap " + overlap;
    }

    private static boolean isUnitRange(Object range) {
        if (!(range instanceof List) || ((List<?>) range).size() != 2) {
            return false;
        }
        Object lo = ((List<?>) range).get(0);
        Object hi = ((List<?>) range).get(1);
        return lo instanceof Number && hi instanceof Number
                && ((Number) lo).doubleValue() == 0.0 && ((Number) hi).doubleValue() == 1.0;
    }

    private static Object require(Map<String, Object> fields, String name) {
        if (!fields.containsKey(name) || fields.get(name) == null) {
            throw new IllegalArgumentException("manifest is missing required field \"" + name + "\"");
        }
        return fields.get(name);
    }

    private static String requireString(Map<String, Object> fields, String name) {
        Object v = require(fields, name);
        if (!(v instanceof String)) {
            throw new IllegalArgumentException("manifest field \"" + name + "\" must be a string, got " + v);
        }
        return (String) v;
    }

    private static int requireInt(Map<String, Object> fields, String name) {
        Object v = require(fields, name);
        if (!(v instanceof Long) || (Long) v != ((Long) v).intValue()) {
            throw new IllegalArgumentException("manifest field \"" + name + "\" must be an integer, got " + v);
        }
        return ((Long) v).intValue();
    }
}
