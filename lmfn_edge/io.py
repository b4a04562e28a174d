"""Image I/O: every input becomes HxWx3 uint8 RGB, every image is written atomically
(:mod:`lmfn_edge.files`).

Loading goes through Pillow and normalises what users actually feed an upscaler: EXIF-rotated
phone photos, palette and transparent PNGs, 16-bit PNG/TIFF, CMYK JPEGs. Failures surface as
``ImageError`` with a one-line message naming the file, instead of a Pillow traceback or a
half-decoded array. Writes go to a temporary file next to the target and are renamed over it,
so an interrupted run never leaves a truncated image, checkpoint or sidecar behind.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import UsageError
from .files import atomic_write

__all__ = [
    "IMAGE_EXTENSIONS",
    "ImageError",
    "image_size",
    "list_images",
    "load_image",
    "load_image_with_info",
    "save_image",
]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".bmp")

DEFAULT_MAX_PIXELS = 100_000_000

# Pillow format and save options per extension. Lossy formats use quality 95 so that saved SR
# output is not visibly degraded by the container.
_SAVE_FORMATS: dict[str, tuple[str, dict[str, Any]]] = {
    ".png": ("PNG", {}),
    ".jpg": ("JPEG", {"quality": 95}),
    ".jpeg": ("JPEG", {"quality": 95}),
    ".webp": ("WEBP", {"quality": 95}),
    ".tif": ("TIFF", {}),
    ".tiff": ("TIFF", {}),
    ".bmp": ("BMP", {}),
}
_ICC_FORMATS = {"PNG", "JPEG", "WEBP", "TIFF"}  # BMP has no ICC support in Pillow

# Pillow reports corrupt data through many exception types depending on the codec.
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError, KeyError)


class ImageError(UsageError, ValueError):
    """An image could not be read or written; the message is one line naming the file."""


def load_image(path: str | os.PathLike, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Loads an image as HxWx3 uint8 RGB.

    See ``load_image_with_info`` for the conversions applied.

    Args:
        path: Image file; any format Pillow reads.
        max_pixels: Largest accepted width * height, checked before decoding.

    Returns:
        HxWx3 uint8 RGB array.

    Raises:
        ImageError: If the file is missing, not an image, corrupt or truncated, or too large.
    """
    return load_image_with_info(path, max_pixels)[0]


def load_image_with_info(
    path: str | os.PathLike, max_pixels: int = DEFAULT_MAX_PIXELS
) -> tuple[np.ndarray, dict[str, Any]]:
    """Loads an image as HxWx3 uint8 RGB, with what is needed to save the result faithfully.

    The EXIF orientation is applied, so the array is upright as a viewer shows it. Modes are
    converted as follows:

    * 1, L, P, CMYK, YCbCr, ...: Pillow's conversion to RGB.
    * RGBA, LA, PA and palette images with a transparent colour: composited onto white, the
      background viewers and web pages show, so hidden colour under fully transparent pixels
      (often garbage) does not reach the model.
    * I;16 variants and I (assumed to hold 16-bit data, as 16-bit PNG and TIFF do): scaled
      0..65535 -> 0..255 and rounded.
    * F: taken as 0..255, clipped and rounded (Pillow's own F -> L convention).

    Multi-frame files (GIF, APNG, multi-page TIFF) give their first frame.

    Args:
        path: Image file; any format Pillow reads.
        max_pixels: Largest accepted width * height, checked before decoding. Pillow's own
            decompression-bomb check is superseded by this limit, except that Pillow refuses
            anything over twice ``PIL.Image.MAX_IMAGE_PIXELS`` whatever this says.

    Returns:
        The array and a dict with ``format`` (Pillow's name, e.g. "PNG"), ``mode`` (the mode
        before conversion) and ``icc_profile`` (bytes, or None when absent or not an RGB profile,
        since a CMYK or gray profile does not describe the converted RGB pixels).

    Raises:
        ImageError: If the file is missing, not an image, corrupt or truncated, or too large.
    """
    with _opened(path) as img:
        width, height = img.size
        if width * height > max_pixels:
            raise ImageError(f"{path}: {width}x{height} image exceeds the limit of {max_pixels} pixels")
        img.load()  # decode everything now so truncation is caught here
        info = {
            "format": img.format,
            "mode": img.mode,
            "icc_profile": _rgb_icc_profile(img.info.get("icc_profile")),
        }
        array = _to_rgb_uint8(ImageOps.exif_transpose(img), path)
    return array, info


@contextlib.contextmanager
def _opened(path: str | os.PathLike) -> Iterator[Image.Image]:
    """``Image.open`` whose failures (and those of the block) become one-line ``ImageError``s.

    Our own pixel limits replace Pillow's decompression-bomb warning threshold.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                yield img
    except ImageError:
        raise
    except FileNotFoundError:
        raise ImageError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ImageError(f"{path}: is a directory, not an image file") from None
    except PermissionError:
        raise ImageError(f"{path}: permission denied") from None
    except UnidentifiedImageError:
        raise ImageError(f"{path}: not an image file (Pillow cannot identify it)") from None
    except Image.DecompressionBombError as e:
        raise ImageError(f"{path}: image too large ({e})") from None
    except _DECODE_ERRORS as e:
        raise ImageError(f"{path}: corrupt or truncated image ({e})") from e


def save_image(
    path: str | os.PathLike,
    array_uint8_hxwx3: np.ndarray,
    icc_profile: bytes | None = None,
    lossless: bool = False,
) -> None:
    """Saves an HxWx3 uint8 RGB array atomically; the format follows the extension.

    JPEG and WebP are written at quality 95, WebP losslessly with ``lossless`` (JPEG cannot
    be). The ICC profile is embedded for PNG, JPEG, WebP and TIFF, and dropped for BMP, which
    cannot carry one.

    Args:
        path: Target file, ending in one of ``IMAGE_EXTENSIONS`` (any case).
        array_uint8_hxwx3: The image.
        icc_profile: Profile to embed, e.g. ``load_image_with_info(...)[1]["icc_profile"]``.
        lossless: Keep every pixel (PNG, TIFF and BMP always do).

    Raises:
        ImageError: On an unknown extension or a bad array (before anything is written), or if
            writing fails; an existing file at ``path`` is then left as it was.
    """
    suffix = Path(path).suffix.lower()
    if suffix not in _SAVE_FORMATS:
        raise ImageError(
            f"{path}: unsupported extension {suffix!r}; use one of {', '.join(IMAGE_EXTENSIONS)}"
        )
    array = np.asarray(array_uint8_hxwx3)
    if array.dtype != np.uint8 or array.ndim != 3 or array.shape[2] != 3:
        raise ImageError(
            f"{path}: expected an HxWx3 uint8 array, got shape {array.shape} dtype {array.dtype}"
        )
    fmt, options = _SAVE_FORMATS[suffix]
    if lossless and fmt == "JPEG":
        raise ImageError(f"{path}: JPEG cannot store pixels losslessly; use .png or .webp")
    if lossless and fmt == "WEBP":
        options = {"lossless": True, "quality": 100, "method": 4}
    if icc_profile is not None and fmt in _ICC_FORMATS:
        options = {**options, "icc_profile": icc_profile}
    try:
        with atomic_write(path, "wb") as f:
            Image.fromarray(array).save(f, format=fmt, **options)
    except (OSError, ValueError) as e:
        raise ImageError(f"{path}: cannot write image ({e})") from e


def list_images(folder: str | os.PathLike) -> list[Path]:
    """Lists the image files directly inside ``folder``, sorted by name.

    Extensions are matched case-insensitively against ``IMAGE_EXTENSIONS``. Hidden files
    (leading dot) are skipped: they are editor or OS debris such as macOS "._name.png" stubs,
    which carry an image extension but no image.

    Args:
        folder: Folder to scan (not recursively).

    Returns:
        Sorted paths of the image files.

    Raises:
        ImageError: If ``folder`` is not an existing folder.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ImageError(f"{folder}: not a folder")
    return sorted(
        p
        for p in folder.iterdir()
        if p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".") and p.is_file()
    )


def _rgb_icc_profile(profile: bytes | None) -> bytes | None:
    # Bytes 16..20 of an ICC header name the colour space the profile describes.
    if profile and len(profile) >= 20 and profile[16:20] == b"RGB ":
        return profile
    return None


def _to_rgb_uint8(img: Image.Image, path: str | os.PathLike) -> np.ndarray:
    mode = img.mode
    if mode.startswith("I"):  # I, I;16, I;16B, I;16L, I;16N
        gray = np.clip(np.asarray(img).astype(np.float64), 0, 65535) * (255 / 65535)
        return _gray_to_rgb(np.rint(gray).astype(np.uint8))
    if mode == "F":
        gray = np.nan_to_num(np.asarray(img, dtype=np.float64), nan=0.0)
        return _gray_to_rgb(np.rint(np.clip(gray, 0, 255)).astype(np.uint8))
    if mode in ("LA", "La", "PA") or (mode == "P" and "transparency" in img.info):
        gray_alpha = mode in ("LA", "La")
        rgba = np.asarray(img.convert("LA" if gray_alpha else "RGBA"))
        color = _gray_to_rgb(rgba[..., 0]) if gray_alpha else rgba[..., :3]
        return _over_white(color, rgba[..., -1])
    if mode in ("RGBA", "RGBa"):
        rgba = np.asarray(img.convert("RGBA"))
        return _over_white(rgba[..., :3], rgba[..., 3])
    try:
        return np.asarray(img.convert("RGB"), dtype=np.uint8)
    except ValueError:  # Pillow has no conversion from this mode
        raise ImageError(f"{path}: unsupported image mode {mode}") from None


def _gray_to_rgb(gray: np.ndarray) -> np.ndarray:
    return np.repeat(gray[..., None], 3, axis=2)


def _over_white(rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    a = alpha.astype(np.float64)[..., None] / 255.0
    return np.rint(rgb * a + 255.0 * (1.0 - a)).astype(np.uint8)


def image_size(path: str | os.PathLike, max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[int, int]:
    """(width, height) of an image as its header says (EXIF rotation applied), without decoding.

    Raises:
        ImageError: If the file is missing or not an image, or larger than ``max_pixels``
            (the limit :func:`load_image` applies, so a header-only check refuses what loading
            would).
    """
    with _opened(path) as img:
        width, height = img.size
        orientation = img.getexif().get(0x0112, 1)
    if width * height > max_pixels:
        raise ImageError(f"{path}: {width}x{height} image exceeds the limit of {max_pixels} pixels")
    return (height, width) if orientation in (5, 6, 7, 8) else (width, height)
