package org.lmfnedge.demo;

import android.content.ContentResolver;
import android.content.ContentValues;
import android.graphics.Bitmap;
import android.graphics.BitmapFactory;
import android.graphics.ImageDecoder;
import android.net.Uri;
import android.os.Build;
import android.os.Environment;
import android.provider.MediaStore;
import android.util.Size;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;

/** Decoding picked photos to software ARGB bitmaps, and saving results to the gallery. */
final class BitmapIo {
    static final String ALBUM = "LMFN Edge";

    private BitmapIo() {}

    /** A decoded photo and whether it was scaled down to fit the pixel limit. */
    static final class Decoded {
        final Bitmap bitmap;
        final boolean reduced;

        Decoded(Bitmap bitmap, boolean reduced) {
            this.bitmap = bitmap;
            this.reduced = reduced;
        }
    }

    /**
     * Decodes {@code uri} to a software ARGB_8888 bitmap of at most {@code maxPixels} pixels
     * (larger photos are scaled down, keeping the aspect ratio).
     */
    static Decoded decode(ContentResolver resolver, Uri uri, long maxPixels) throws IOException {
        Bitmap bitmap;
        boolean[] reduced = {false};
        if (Build.VERSION.SDK_INT >= Build.VERSION_CODES.P) {
            ImageDecoder.Source source = ImageDecoder.createSource(resolver, uri);
            bitmap = ImageDecoder.decodeBitmap(source, (decoder, info, src) -> {
                // getPixels needs a software bitmap. ImageDecoder applies the EXIF rotation; the
                // BitmapFactory path below (Android 7-8) does not.
                decoder.setAllocator(ImageDecoder.ALLOCATOR_SOFTWARE);
                Size size = info.getSize();
                double f = shrinkFactor(size.getWidth(), size.getHeight(), maxPixels);
                if (f < 1.0) {
                    reduced[0] = true;
                    decoder.setTargetSize(Math.max(1, (int) (size.getWidth() * f)),
                            Math.max(1, (int) (size.getHeight() * f)));
                }
            });
        } else {
            BitmapFactory.Options bounds = new BitmapFactory.Options();
            bounds.inJustDecodeBounds = true;
            try (InputStream in = open(resolver, uri)) {
                BitmapFactory.decodeStream(in, null, bounds);
            }
            if (bounds.outWidth <= 0 || bounds.outHeight <= 0) {
                throw new IOException("not an image: " + uri);
            }
            BitmapFactory.Options options = new BitmapFactory.Options();
            options.inPreferredConfig = Bitmap.Config.ARGB_8888;
            options.inSampleSize = 1;
            reduced[0] = (long) bounds.outWidth * bounds.outHeight > maxPixels;
            // Halve while the result stays at or above the limit; the exact fit is a rescale below.
            long pixels = (long) bounds.outWidth * bounds.outHeight;
            while (pixels / (4L * options.inSampleSize * options.inSampleSize) >= maxPixels) {
                options.inSampleSize *= 2;
            }
            try (InputStream in = open(resolver, uri)) {
                bitmap = BitmapFactory.decodeStream(in, null, options);
            }
            if (bitmap == null) {
                throw new IOException("cannot decode " + uri);
            }
            double f = shrinkFactor(bitmap.getWidth(), bitmap.getHeight(), maxPixels);
            if (f < 1.0) {
                bitmap = Bitmap.createScaledBitmap(bitmap, Math.max(1, (int) (bitmap.getWidth() * f)),
                        Math.max(1, (int) (bitmap.getHeight() * f)), true);
            }
        }
        return new Decoded(toArgb8888(bitmap), reduced[0]);
    }

    static Bitmap toArgb8888(Bitmap bitmap) {
        if (bitmap.getConfig() == Bitmap.Config.ARGB_8888) {
            return bitmap;
        }
        Bitmap copy = bitmap.copy(Bitmap.Config.ARGB_8888, false);
        if (copy == null) {
            throw new IllegalStateException("cannot convert the image to ARGB_8888");
        }
        return copy;
    }

    private static double shrinkFactor(int width, int height, long maxPixels) {
        long pixels = (long) width * height;
        return pixels <= maxPixels ? 1.0 : Math.sqrt((double) maxPixels / pixels);
    }

    private static InputStream open(ContentResolver resolver, Uri uri) throws IOException {
        InputStream in = resolver.openInputStream(uri);
        if (in == null) {
            throw new IOException("cannot open " + uri);
        }
        return in;
    }

    /**
     * Saves {@code bitmap} as a PNG in Pictures/LMFN Edge through MediaStore. Before Android 10
     * the caller must hold WRITE_EXTERNAL_STORAGE.
     */
    static Uri saveToGallery(ContentResolver resolver, Bitmap bitmap, String displayName) throws IOException {
        ContentValues values = new ContentValues();
        values.put(MediaStore.Images.Media.DISPLAY_NAME, displayName);
        values.put(MediaStore.Images.Media.MIME_TYPE, "image/png");
        Uri collection;
        if (Build.VERSION.SDK_INT >= Build.VERSION_CODES.Q) {
            values.put(MediaStore.Images.Media.RELATIVE_PATH, Environment.DIRECTORY_PICTURES + "/" + ALBUM);
            // Hidden from other apps until the PNG is complete.
            values.put(MediaStore.Images.Media.IS_PENDING, 1);
            collection = MediaStore.Images.Media.getContentUri(MediaStore.VOLUME_EXTERNAL_PRIMARY);
        } else {
            collection = MediaStore.Images.Media.EXTERNAL_CONTENT_URI;
        }
        Uri uri = resolver.insert(collection, values);
        if (uri == null) {
            throw new IOException("MediaStore refused the new image");
        }
        try (OutputStream out = resolver.openOutputStream(uri)) {
            if (out == null || !bitmap.compress(Bitmap.CompressFormat.PNG, 100, out)) {
                throw new IOException("cannot write the PNG");
            }
        } catch (IOException | RuntimeException e) {
            resolver.delete(uri, null, null);
            throw e;
        }
        if (Build.VERSION.SDK_INT >= Build.VERSION_CODES.Q) {
            values.clear();
            values.put(MediaStore.Images.Media.IS_PENDING, 0);
            resolver.update(uri, values, null, null);
        }
        return uri;
    }
}
