package org.lmfnedge.demo;

import android.content.pm.PackageManager;
import android.graphics.Bitmap;
import android.graphics.BitmapFactory;
import android.net.Uri;
import android.os.Build;
import android.os.Bundle;
import android.os.Handler;
import android.os.Looper;
import android.os.SystemClock;
import android.widget.Button;
import android.widget.ProgressBar;
import android.widget.SeekBar;
import android.widget.TextView;
import android.widget.Toast;
import androidx.activity.result.ActivityResultLauncher;
import androidx.activity.result.PickVisualMediaRequest;
import androidx.activity.result.contract.ActivityResultContracts;
import androidx.appcompat.app.AppCompatActivity;
import java.io.IOException;
import java.text.SimpleDateFormat;
import java.util.Date;
import java.util.Locale;
import java.util.concurrent.CancellationException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.atomic.AtomicBoolean;
import org.lmfnedge.imagecore.Manifest;
import org.lmfnedge.imagecore.TilePlan;
import org.lmfnedge.imagecore.TiledUpscaler;

/**
 * Pick a photo (or the bundled sample), upscale it tile by tile with the exported LMFN program,
 * compare before/after, save to the gallery.
 *
 * <p>All model work (loading, tiles, closing) runs on one worker thread, because an ExecuTorch
 * {@code Module} must not be used from two threads; the UI thread only posts jobs and shows
 * results.
 */
public class MainActivity extends AppCompatActivity {
    /** Output size cap: a bitmap this large is still drawable by a Canvas and fits a large heap. */
    private static final long MAX_OUTPUT_PIXELS = 16_000_000L;

    private final ExecutorService worker = Executors.newSingleThreadExecutor();
    private final Handler ui = new Handler(Looper.getMainLooper());
    private final AtomicBoolean cancelRequested = new AtomicBoolean();

    /** Touched only on the worker thread. */
    private ExecuTorchTileRunner runner;

    // UI-thread state.
    private Manifest manifest;
    private Bitmap input;
    private Bitmap output;
    private boolean busy;
    private boolean upscaling;

    private TextView modelStatus;
    private TextView imageInfo;
    private TextView latency;
    private Button pickButton;
    private Button sampleButton;
    private Button upscaleButton;
    private Button cancelButton;
    private Button saveButton;
    private ProgressBar progress;
    private CompareView compare;
    private SeekBar split;

    private final ActivityResultLauncher<PickVisualMediaRequest> pickMedia =
            registerForActivityResult(new ActivityResultContracts.PickVisualMedia(), this::onPicked);
    private final ActivityResultLauncher<String> storagePermission =
            registerForActivityResult(new ActivityResultContracts.RequestPermission(), granted -> {
                if (granted) {
                    save();
                } else {
                    toast(getString(R.string.save_needs_permission));
                }
            });

    @Override
    protected void onCreate(Bundle savedInstanceState) {
        super.onCreate(savedInstanceState);
        setContentView(R.layout.activity_main);
        modelStatus = findViewById(R.id.model_status);
        imageInfo = findViewById(R.id.image_info);
        latency = findViewById(R.id.latency);
        pickButton = findViewById(R.id.pick);
        sampleButton = findViewById(R.id.sample);
        upscaleButton = findViewById(R.id.upscale);
        cancelButton = findViewById(R.id.cancel);
        saveButton = findViewById(R.id.save);
        progress = findViewById(R.id.progress);
        compare = findViewById(R.id.compare);
        split = findViewById(R.id.split);

        pickButton.setOnClickListener(v -> pickMedia.launch(new PickVisualMediaRequest.Builder()
                .setMediaType(ActivityResultContracts.PickVisualMedia.ImageOnly.INSTANCE)
                .build()));
        sampleButton.setOnClickListener(v -> useSample());
        upscaleButton.setOnClickListener(v -> startUpscale());
        cancelButton.setOnClickListener(v -> cancelRequested.set(true));
        saveButton.setOnClickListener(v -> save());
        split.setOnSeekBarChangeListener(new SeekBar.OnSeekBarChangeListener() {
            @Override
            public void onProgressChanged(SeekBar bar, int value, boolean fromUser) {
                compare.setSplit(value / (float) bar.getMax());
            }

            @Override
            public void onStartTrackingTouch(SeekBar bar) {}

            @Override
            public void onStopTrackingTouch(SeekBar bar) {}
        });
        compare.setOnSplitChangedListener(f -> split.setProgress(Math.round(f * split.getMax())));

        updateButtons();
        worker.execute(this::loadModel);
    }

    @Override
    protected void onDestroy() {
        cancelRequested.set(true);
        // Queued behind any running upscale, which the flag stops at its next tile.
        worker.execute(() -> {
            if (runner != null) {
                runner.close();
                runner = null;
            }
        });
        worker.shutdown();
        super.onDestroy();
    }

    // --- model ------------------------------------------------------------------------------

    private void loadModel() {
        try {
            ModelFiles files = ModelFiles.install(this);
            // Loads the method and runs one warm-up tile here, on the worker, before the first
            // image: the first tile of an upscale then costs what every other tile costs.
            ExecuTorchTileRunner loaded = new ExecuTorchTileRunner(files.pte.getAbsolutePath(),
                    files.manifest.scale, files.manifest.tile);
            runner = loaded;
            ui.post(() -> onModelReady(files.manifest, loaded.loadMillis + loaded.warmupMillis));
        } catch (IOException | RuntimeException e) {
            // IllegalArgumentException: a manifest this app does not understand; others: I/O or
            // the runtime refusing the program.
            String message = e.getMessage() != null ? e.getMessage() : e.toString();
            ui.post(() -> modelStatus.setText(getString(R.string.model_failed, message)));
        }
    }

    private void onModelReady(Manifest m, long readyMillis) {
        manifest = m;
        modelStatus.setText(getString(R.string.model_ready, m.model, m.precision, m.scale, m.tile, m.overlap,
                readyMillis));
        if (input != null) {
            showImageInfo(false);
        }
        updateButtons();
    }

    // --- input ------------------------------------------------------------------------------

    private long maxInputPixels() {
        int s = manifest != null ? manifest.scale : 4; // before the model is read, assume the largest
        return MAX_OUTPUT_PIXELS / ((long) s * s);
    }

    private void onPicked(Uri uri) {
        if (uri == null) {
            return;
        }
        long maxPixels = maxInputPixels();
        worker.execute(() -> {
            try {
                BitmapIo.Decoded decoded = BitmapIo.decode(getContentResolver(), uri, maxPixels);
                ui.post(() -> setInput(decoded.bitmap, decoded.reduced));
            } catch (IOException | RuntimeException e) {
                ui.post(() -> toast(getString(R.string.failed, e.getMessage())));
            }
        });
    }

    private void useSample() {
        BitmapFactory.Options options = new BitmapFactory.Options();
        options.inPreferredConfig = Bitmap.Config.ARGB_8888;
        setInput(BitmapIo.toArgb8888(BitmapFactory.decodeResource(getResources(), R.drawable.sample, options)),
                false);
    }

    private void setInput(Bitmap bitmap, boolean reduced) {
        input = bitmap;
        output = null;
        compare.setImages(bitmap, null);
        progress.setProgress(0);
        latency.setText("");
        showImageInfo(reduced);
        updateButtons();
    }

    private void showImageInfo(boolean reduced) {
        int w = input.getWidth();
        int h = input.getHeight();
        String text = manifest == null
                ? getString(R.string.image_info_plain, w, h)
                : getString(R.string.image_info, w, h, manifest.scale * w, manifest.scale * h,
                        TilePlan.plan(h, w, manifest.tile, manifest.overlap).size());
        if (reduced) {
            text += "\n" + getString(R.string.image_downscaled, w, h, MAX_OUTPUT_PIXELS / 1_000_000);
        }
        imageInfo.setText(text);
    }

    // --- upscale ----------------------------------------------------------------------------

    private void startUpscale() {
        if (busy || manifest == null || input == null) {
            return;
        }
        final Bitmap lr = input;
        final Manifest m = manifest;
        busy = true;
        upscaling = true;
        cancelRequested.set(false);
        progress.setMax(TilePlan.plan(lr.getHeight(), lr.getWidth(), m.tile, m.overlap).size());
        progress.setProgress(0);
        latency.setText("");
        updateButtons();
        worker.execute(() -> runUpscale(lr, m));
    }

    /** Worker thread. */
    private void runUpscale(Bitmap lr, Manifest m) {
        int w = lr.getWidth();
        int h = lr.getHeight();
        int s = m.scale;
        Bitmap hr = null;
        try {
            int[] argb = new int[w * h];
            lr.getPixels(argb, 0, w, 0, 0, w, h);
            hr = Bitmap.createBitmap(s * w, s * h, Bitmap.Config.ARGB_8888);
            final Bitmap out = hr;
            TiledUpscaler upscaler = TiledUpscaler.forManifest(runner, m);
            long[] runNanos = {0};
            long start = SystemClock.elapsedRealtimeNanos();
            upscaler.upscale(argb, w, h,
                    (y, rows, pixels) -> out.setPixels(pixels, 0, s * w, 0, y, s * w, rows),
                    (done, total, nanos) -> {
                        runNanos[0] += nanos;
                        double lastMs = nanos / 1e6;
                        double meanMs = runNanos[0] / 1e6 / done;
                        ui.post(() -> onTileDone(done, total, lastMs, meanMs));
                    },
                    cancelRequested::get);
            double seconds = (SystemClock.elapsedRealtimeNanos() - start) / 1e9;
            int tiles = upscaler.tileCount(w, h);
            double meanMs = runNanos[0] / 1e6 / tiles;
            ui.post(() -> onUpscaled(out, seconds, meanMs, tiles));
        } catch (CancellationException e) {
            recycle(hr);
            ui.post(() -> onStopped(getString(R.string.cancelled)));
        } catch (RuntimeException | OutOfMemoryError e) {
            recycle(hr);
            ui.post(() -> onStopped(getString(R.string.failed, String.valueOf(e.getMessage()))));
        }
    }

    private static void recycle(Bitmap bitmap) {
        if (bitmap != null) {
            bitmap.recycle();
        }
    }

    private void onTileDone(int done, int total, double lastMs, double meanMs) {
        progress.setProgress(done);
        latency.setText(getString(R.string.tile_progress, done, total, lastMs, meanMs));
    }

    private void onUpscaled(Bitmap result, double seconds, double meanTileMs, int tiles) {
        busy = false;
        upscaling = false;
        output = result;
        compare.setImages(input, result);
        latency.setText(getString(R.string.done, seconds, meanTileMs, tiles));
        updateButtons();
    }

    private void onStopped(String message) {
        busy = false;
        upscaling = false;
        latency.setText(message);
        updateButtons();
    }

    // --- save -------------------------------------------------------------------------------

    private void save() {
        if (busy || output == null) {
            return;
        }
        if (Build.VERSION.SDK_INT < Build.VERSION_CODES.Q
                && checkSelfPermission(android.Manifest.permission.WRITE_EXTERNAL_STORAGE)
                        != PackageManager.PERMISSION_GRANTED) {
            storagePermission.launch(android.Manifest.permission.WRITE_EXTERNAL_STORAGE);
            return;
        }
        final Bitmap result = output;
        String name = "lmfn_" + new SimpleDateFormat("yyyyMMdd_HHmmss", Locale.US).format(new Date()) + ".png";
        busy = true;
        updateButtons();
        worker.execute(() -> {
            String message;
            try {
                BitmapIo.saveToGallery(getContentResolver(), result, name);
                message = getString(R.string.saved);
            } catch (IOException | RuntimeException e) {
                message = getString(R.string.save_failed, String.valueOf(e.getMessage()));
            }
            String shown = message;
            ui.post(() -> {
                busy = false;
                updateButtons();
                toast(shown);
            });
        });
    }

    private void updateButtons() {
        pickButton.setEnabled(!busy);
        sampleButton.setEnabled(!busy);
        upscaleButton.setEnabled(!busy && manifest != null && input != null);
        cancelButton.setEnabled(upscaling);
        saveButton.setEnabled(!busy && output != null);
    }

    private void toast(String message) {
        Toast.makeText(this, message, Toast.LENGTH_LONG).show();
    }
}
