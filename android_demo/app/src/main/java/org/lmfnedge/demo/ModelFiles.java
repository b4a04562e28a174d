package org.lmfnedge.demo;

import android.content.Context;
import android.content.pm.PackageManager;
import java.io.ByteArrayOutputStream;
import java.io.File;
import java.io.FileInputStream;
import java.io.FileNotFoundException;
import java.io.FileOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.nio.charset.StandardCharsets;
import org.lmfnedge.imagecore.Manifest;

/**
 * The exported program and its manifest, copied from the APK's assets to {@code filesDir} (the
 * ExecuTorch runtime loads from a file path). Copied on first run and again after an app update.
 */
final class ModelFiles {
    static final String PTE_ASSET = "lmfn.pte";
    static final String MANIFEST_ASSET = "lmfn.json";

    final File pte;
    final Manifest manifest;

    private ModelFiles(File pte, Manifest manifest) {
        this.pte = pte;
        this.manifest = manifest;
    }

    /**
     * @throws IOException when the assets are missing or cannot be copied
     * @throws IllegalArgumentException when the manifest is one this app does not understand
     */
    static ModelFiles install(Context context) throws IOException {
        File dir = new File(context.getFilesDir(), "model");
        if (!dir.isDirectory() && !dir.mkdirs()) {
            throw new IOException("cannot create " + dir);
        }
        long installedAt = appUpdateTime(context);
        File pte = copyIfStale(context, PTE_ASSET, dir, installedAt);
        File json = copyIfStale(context, MANIFEST_ASSET, dir, installedAt);
        Manifest manifest = Manifest.parse(readUtf8(json)).checkRunnable();
        try (InputStream program = new FileInputStream(pte)) {
            manifest.checkProgram(program);
        }
        return new ModelFiles(pte, manifest);
    }

    private static long appUpdateTime(Context context) {
        try {
            return context.getPackageManager().getPackageInfo(context.getPackageName(), 0).lastUpdateTime;
        } catch (PackageManager.NameNotFoundException e) {
            return Long.MAX_VALUE; // cannot tell: always copy
        }
    }

    private static File copyIfStale(Context context, String asset, File dir, long installedAt)
            throws IOException {
        File target = new File(dir, asset);
        if (target.isFile() && target.lastModified() >= installedAt) {
            return target;
        }
        File tmp = new File(dir, asset + ".part");
        try (InputStream in = openAsset(context, asset); OutputStream out = new FileOutputStream(tmp)) {
            byte[] buf = new byte[1 << 16];
            for (int n; (n = in.read(buf)) > 0; ) {
                out.write(buf, 0, n);
            }
        }
        // Rename last, so an interrupted copy is never mistaken for a complete one.
        if (!tmp.renameTo(target)) {
            throw new IOException("cannot move " + tmp + " to " + target);
        }
        return target;
    }

    private static InputStream openAsset(Context context, String asset) throws IOException {
        try {
            return context.getAssets().open(asset);
        } catch (FileNotFoundException e) {
            throw new IOException(asset + " is not in the app's assets: run `python -m lmfn_edge.export "
                    + "--target xnnpack --android android_demo` and rebuild the app", e);
        }
    }

    private static String readUtf8(File file) throws IOException {
        try (InputStream in = new FileInputStream(file)) {
            ByteArrayOutputStream bytes = new ByteArrayOutputStream();
            byte[] buf = new byte[8192];
            for (int n; (n = in.read(buf)) > 0; ) {
                bytes.write(buf, 0, n);
            }
            return new String(bytes.toByteArray(), StandardCharsets.UTF_8);
        }
    }
}
