package org.lmfnedge.imagecore;

import java.io.IOException;
import java.io.InputStream;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.Arrays;
import java.util.List;
import java.util.Map;

/**
 * The JSON sidecar that {@code python -m lmfn_edge.export} writes next to a .pte.
 *
 * <p>The Java twin of {@code lmfn_edge/manifest.py}: {@link #parse} checks the same schema
 * (format, version, required fields, scale and model, target and precision, the shape and the
 * tile it implies, the overlap, the optional program SHA-256), and golden files written by
 * {@code python -m lmfn_edge.android_golden} pin both sides to the same accept/refuse decisions.
 * Unknown keys are allowed (newer writers add fields). {@link #checkRunnable} then refuses what
 * is a valid sidecar but not a program this app can run (a Core ML package, a dynamic shape). A
 * manifest this code does not understand is refused rather than guessed at: a wrong scale or
 * input range would give a plausible-looking but wrong image.
 */
public final class Manifest {
    public static final String FORMAT = "lmfn-edge-manifest";
    public static final int VERSION = 1;
    public static final String LAYOUT = "NCHW";
    public static final int DYNAMIC_MULTIPLE = 8;
    public static final int MIN_DYNAMIC = 16;

    private static final List<String> REQUIRED = Arrays.asList("model", "scale", "config", "target", "precision",
            "artifact", "shape", "overlap", "weights", "layout", "input", "output", "input_range");
    private static final Map<String, List<String>> PRECISIONS = Map.of(
            "xnnpack", List.of("fp32", "int8", "int8-dynamic"),
            "portable", List.of("fp32"),
            "coreml", List.of("fp16", "fp32", "int8"),
            "executorch-coreml", List.of("fp16"),
            "torchscript", List.of("fp32"));
    private static final List<String> RUNNABLE_TARGETS = List.of("xnnpack", "portable");

    public final String model;
    public final int scale;
    public final String target;
    public final String precision;
    /** Side of the square fixed input, or 0 when the program has no square fixed shape. */
    public final int tile;
    public final boolean dynamic;
    public final int overlap;
    /** SHA-256 of the program file (lower-case hex), or null in sidecars written before it. */
    public final String artifactSha256;
    private final Map<String, Object> fields;

    private Manifest(Map<String, Object> fields) {
        this.fields = fields;
        this.scale = requireInt(fields, "scale");
        if (scale < 2 || scale > 4) {
            throw new IllegalArgumentException("manifest scale must be 2, 3 or 4, got " + scale);
        }
        this.model = requireString(fields, "model");
        if (!model.equals("lmfn_x" + scale)) {
            throw new IllegalArgumentException(
                    "manifest model \"" + model + "\" does not match scale " + scale + " (expected lmfn_x" + scale + ")");
        }
        this.target = requireString(fields, "target");
        if (!PRECISIONS.containsKey(target)) {
            throw new IllegalArgumentException("manifest has an unknown target \"" + target + "\"");
        }
        this.precision = requireString(fields, "precision");
        if (!PRECISIONS.get(target).contains(precision)) {
            throw new IllegalArgumentException(
                    "manifest precision \"" + precision + "\" is not one of " + target + "'s " + PRECISIONS.get(target));
        }
        requireString(fields, "artifact");
        requireObject(fields, "config");
        requireObject(fields, "weights");
        Map<String, Object> shape = requireObject(fields, "shape");
        Object dyn = shape.get("dynamic");
        if (!(dyn instanceof Boolean)) {
            throw new IllegalArgumentException("manifest shape must have a boolean \"dynamic\", got " + dyn);
        }
        this.dynamic = (Boolean) dyn;
        int largest;
        int expectedTile;
        if (dynamic) {
            int lo = requireInt(shape, "min");
            int hi = requireInt(shape, "max");
            if (requireInt(shape, "multiple") != DYNAMIC_MULTIPLE || lo < MIN_DYNAMIC || hi < lo
                    || lo % DYNAMIC_MULTIPLE != 0 || hi % DYNAMIC_MULTIPLE != 0) {
                throw new IllegalArgumentException("manifest shape: a dynamic range needs multiples of "
                        + DYNAMIC_MULTIPLE + " from " + MIN_DYNAMIC + ", got " + lo + ":" + hi);
            }
            largest = hi;
            expectedTile = 0;
        } else {
            int h = requireInt(shape, "height");
            int w = requireInt(shape, "width");
            if (h < 1 || w < 1) {
                throw new IllegalArgumentException("manifest shape must be at least 1x1, got " + h + "x" + w);
            }
            largest = Math.min(h, w);
            expectedTile = h == w ? h : 0;
        }
        Object tileValue = fields.get("tile");
        int tileField = tileValue == null ? 0 : requireInt(fields, "tile");
        if (tileField != expectedTile || (tileValue != null && tileField == 0)) {
            throw new IllegalArgumentException("manifest tile " + tileValue + " disagrees with its shape "
                    + shape + " (expected " + (expectedTile == 0 ? "null" : expectedTile) + ")");
        }
        this.tile = expectedTile;
        this.overlap = requireInt(fields, "overlap");
        if (overlap < 0 || overlap >= largest) {
            throw new IllegalArgumentException(
                    "manifest overlap must be in [0, tile), got " + overlap + " with tile " + largest);
        }
        Object sha = fields.get("artifact_sha256");
        if (sha != null && !(sha instanceof String && ((String) sha).matches("[0-9a-f]{64}"))) {
            throw new IllegalArgumentException("manifest artifact_sha256 must be a hex SHA-256 or null, got " + sha);
        }
        this.artifactSha256 = (String) sha;
    }

    /**
     * Parses and validates a manifest.
     *
     * @throws IllegalArgumentException for malformed JSON, another format or version, a missing
     *     or mistyped field, or a value outside the schema
     */
    public static Manifest parse(String json) {
        Object root = Json.parse(json);
        if (!(root instanceof Map)) {
            throw new IllegalArgumentException("manifest must be a JSON object");
        }
        @SuppressWarnings("unchecked")
        Map<String, Object> fields = (Map<String, Object>) root;
        Object format = fields.get("format");
        if (!FORMAT.equals(format)) {
            throw new IllegalArgumentException(
                    "not an LMFN Edge manifest: format is " + format + ", expected \"" + FORMAT + "\"");
        }
        Object version = fields.get("version");
        if (!Long.valueOf(VERSION).equals(version)) {
            throw new IllegalArgumentException("unsupported manifest version " + version
                    + "; this app reads version " + VERSION + " (re-export the model or update the app)");
        }
        for (String name : REQUIRED) {
            require(fields, name);
        }
        String layout = requireString(fields, "layout");
        if (!LAYOUT.equals(layout)) {
            throw new IllegalArgumentException(
                    "unsupported layout \"" + layout + "\"; this app feeds " + LAYOUT + " tensors");
        }
        Object range = fields.get("input_range");
        if (!isUnitRange(range)) {
            throw new IllegalArgumentException(
                    "unsupported input_range " + range + "; this app feeds pixels in [0, 1]");
        }
        checkName(fields, "input", "lr");
        checkName(fields, "output", "sr");
        return new Manifest(fields);
    }

    /**
     * Refuses a valid sidecar of a program this app cannot run: only XNNPACK or portable .pte
     * programs with a square fixed tile (what {@link TiledUpscaler} feeds).
     *
     * @return this manifest
     */
    public Manifest checkRunnable() {
        if (!RUNNABLE_TARGETS.contains(target)) {
            throw new IllegalArgumentException("this app runs xnnpack or portable .pte programs, not target \""
                    + target + "\"; export with --target xnnpack");
        }
        if (tile == 0) {
            throw new IllegalArgumentException("this app needs a square fixed tile, but the program's shape is "
                    + fields.get("shape") + "; export with --shape 128x128");
        }
        return this;
    }

    /**
     * Refuses a program whose SHA-256 differs from the one the sidecar records: a .pte changed
     * or cut short after export, or paired with another program's sidecar. Sidecars written
     * before the field existed record none, and any program passes.
     *
     * @param program the .pte's bytes; read to the end, not closed
     * @throws IllegalArgumentException when the hashes differ
     */
    public void checkProgram(InputStream program) throws IOException {
        if (artifactSha256 == null) {
            return;
        }
        MessageDigest digest;
        try {
            digest = MessageDigest.getInstance("SHA-256");
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException("SHA-256 is not available", e);
        }
        byte[] buf = new byte[1 << 16];
        for (int n; (n = program.read(buf)) > 0; ) {
            digest.update(buf, 0, n);
        }
        StringBuilder hex = new StringBuilder();
        for (byte b : digest.digest()) {
            hex.append(String.format("%02x", b));
        }
        if (!hex.toString().equals(artifactSha256)) {
            throw new IllegalArgumentException("the program does not match its manifest (SHA-256 " + hex
                    + ", the manifest records " + artifactSha256 + "); export both again");
        }
    }

    /** A string field outside the required set, or null when absent or not a string. */
    public String optionalString(String name) {
        Object v = fields.get(name);
        return v instanceof String ? (String) v : null;
    }

    @Override
    public String toString() {
        return model + " x" + scale + " " + target + " " + precision + " tile " + tile + " overlap " + overlap;
    }

    private static void checkName(Map<String, Object> fields, String key, String name) {
        Object v = fields.get(key);
        if (!(v instanceof Map) || !name.equals(((Map<?, ?>) v).get("name"))) {
            throw new IllegalArgumentException("manifest " + key + " must be an object named \"" + name + "\", got " + v);
        }
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
        if (!(v instanceof String) || ((String) v).isEmpty()) {
            throw new IllegalArgumentException("manifest field \"" + name + "\" must be a non-empty string, got " + v);
        }
        return (String) v;
    }

    @SuppressWarnings("unchecked")
    private static Map<String, Object> requireObject(Map<String, Object> fields, String name) {
        Object v = require(fields, name);
        if (!(v instanceof Map)) {
            throw new IllegalArgumentException("manifest field \"" + name + "\" must be an object, got " + v);
        }
        return (Map<String, Object>) v;
    }

    private static int requireInt(Map<String, Object> fields, String name) {
        Object v = require(fields, name);
        if (!(v instanceof Long) || (Long) v != ((Long) v).intValue()) {
            throw new IllegalArgumentException("manifest field \"" + name + "\" must be an integer, got " + v);
        }
        return ((Long) v).intValue();
    }
}
