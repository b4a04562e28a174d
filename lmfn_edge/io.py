"""Image and file I/O: every input becomes HxWx3 uint8 RGB, every write is atomic.

Outputs are checked before any work starts (:func:`check_output`: not a folder, not one of the
inputs, in a folder that exists or can be created and is writable) and written through
:func:`staged`, so a failing run never leaves a half-written file nor replaces an existing one.

Loading goes through Pillow and normalises what users actually feed an upscaler: EXIF-rotated
phone photos, palette and transparent PNGs, 16-bit PNG/TIFF, CMYK JPEGs. Failures surface as
``ImageError`` with a one-line message naming the file, instead of a Pillow traceback or a
half-decoded array. Writes go to a temporary file next to the target and are renamed over it,
so an interrupted run never leaves a truncated image, checkpoint or sidecar behind.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from . import interrupts
from .errors import UsageError

__all__ = [
    "IMAGE_EXTENSIONS",
    "ImageError",
    "OutputError",
    "check_output",
    "image_size",
    "same_path",
    "staged",
    "atomic_write",
    "atomic_write_bytes",
    "atomic_write_text",
    "list_images",
    "pair_lr_images",
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


class OutputError(UsageError):
    """An output path that cannot be written as asked; the message is one line."""


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


@contextlib.contextmanager
def atomic_write(
    path: str | os.PathLike, mode: str = "wb", encoding: str | None = None
) -> Iterator[IO]:
    """Opens a temporary file next to ``path`` that replaces ``path`` when the block succeeds.

    The data is flushed and fsynced before the rename, so after a crash ``path`` holds either
    the old content or the complete new one. If the block raises, the temporary file is
    removed and ``path`` is untouched.

    Args:
        path: Target file; missing parent folders are created.
        mode: "wb" (or "w+b") for bytes, "w" (or "wt", "w+") for text.
        encoding: Text encoding; defaults to UTF-8 in text mode.

    Yields:
        The open temporary file.

    Raises:
        ValueError: If ``mode`` is not a write mode.
        OSError: If the temporary file cannot be created or renamed.
    """
    if mode not in ("w", "wt", "w+", "w+t", "wb", "w+b"):
        raise ValueError(f"atomic_write needs a 'w' mode, got {mode!r}")
    binary = "b" in mode
    if not binary and encoding is None:
        encoding = "utf-8"
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp, fd = _create_temp(path)
    with interrupts.temporary(tmp):  # removed by an exit on a second Ctrl-C too
        try:
            with os.fdopen(fd, mode, encoding=encoding) as f:
                yield f
                f.flush()
                os.fsync(f.fileno())
            interrupts.check()  # a Ctrl-C that third-party code swallowed still replaces nothing
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
    _fsync_dir(path.parent)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Writes ``data`` to ``path`` atomically (see ``atomic_write``)."""
    with atomic_write(path, "wb") as f:
        f.write(data)


def atomic_write_text(path: str | os.PathLike, text: str, encoding: str = "utf-8") -> None:
    """Writes ``text`` to ``path`` atomically (see ``atomic_write``)."""
    with atomic_write(path, "w", encoding=encoding) as f:
        f.write(text)


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


def _create_temp(path: Path) -> tuple[Path, int]:
    # os.open with 0o666 lets the umask set the permissions, so the final file gets the same
    # ones a plain open() would give (tempfile.mkstemp would leave it private, 0o600).
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    while True:
        tmp = path.with_name(f".{_short(path.name)}.{secrets.token_hex(4)}.tmp")
        try:
            return tmp, os.open(tmp, flags, 0o666)
        except FileExistsError:
            continue


def _short(name: str) -> str:
    """A temporary file's stem: a name of the longest legal length plus ``.XXXXXXXX.tmp`` would
    exceed the file system's limit, so the temporary name keeps only the start of it."""
    return os.fsencode(name)[:TEMP_STEM].decode(errors="ignore") if len(os.fsencode(name)) > TEMP_STEM else name


TEMP_STEM = 96  # bytes


def _fsync_dir(folder: Path) -> None:
    # Makes the rename itself durable on POSIX; Windows cannot open folders, hence best effort.
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def same_path(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Whether two paths name the same file or folder (links and spellings resolved)."""
    a, b = Path(a), Path(b)
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
    except OSError:
        pass
    return a.resolve() == b.resolve()


def check_output(
    path: str | os.PathLike,
    inputs: tuple[str | os.PathLike | None, ...] = (),
    folder: bool = False,
    flag: str = "output",
    inside_inputs: bool = True,
) -> Path:
    """Refuses, before any work, an output that cannot be written as asked.

    Args:
        path: Where the command will write.
        inputs: Files or folders the command reads; the output may not be one of them.
        folder: The output is a folder (of images); else a file or a package folder
            (.mlpackage) that replaces what is there.
        flag: How the command line calls the output, for the message.
        inside_inputs: Whether the output may lie inside an input folder (an upscaled copy of
            a photo folder in a subfolder of it may; a training run's folder inside its data
            may not).

    Returns:
        ``path`` as a ``Path``. Missing parent folders are created when the output is written.

    Raises:
        OutputError: If ``path`` is an existing folder where a file is expected (or a file
            where a folder is), equals an input or an existing file of an input folder (or lies
            inside an input folder, unless ``inside_inputs``), has a name the file system cannot
            hold, or lies in a folder that is a file or is not writable.
    """
    path = Path(path)
    _check_name_lengths(path, flag)
    if folder:
        if path.exists() and not path.is_dir():
            raise OutputError(f"{flag} {path} is a file, but a folder is needed")
    elif path.is_dir() and path.suffix.lower() != ".mlpackage":
        raise OutputError(f"{flag} {path} is a folder; give a file path")
    for source in inputs:
        if source is None:
            continue
        if same_path(path, source):
            raise OutputError(f"{flag} {path} is also an input; choose another path")
        if Path(source).is_dir() and path.resolve().is_relative_to(Path(source).resolve()):
            if not inside_inputs:
                raise OutputError(f"{flag} {path} is inside the input folder {source}; choose a folder outside it")
            if path.exists():
                raise OutputError(f"{flag} {path} would replace a file of the input folder {source}; choose another "
                                  "path")
    parent = path if folder else path.parent
    existing = parent
    while not existing.exists():
        if existing.parent == existing:
            break
        existing = existing.parent
    if not existing.is_dir():
        raise OutputError(f"cannot create {parent}: {existing} is a file")
    if not os.access(existing, os.W_OK | os.X_OK) or not _can_create_in(existing):
        raise OutputError(f"cannot write to {existing}: permission denied")
    return path


def _check_name_lengths(path: Path, flag: str) -> None:
    """A name too long for the file system would fail only when the finished output is renamed."""
    existing = path.absolute()
    while not os.path.exists(existing) and existing.parent != existing:  # os.path: no error on long names
        existing = existing.parent
    try:
        name_max = os.pathconf(existing, "PC_NAME_MAX")
        path_max = os.pathconf(existing, "PC_PATH_MAX")
    except (OSError, ValueError, AttributeError):  # no pathconf (Windows): the common limits
        name_max, path_max = 255, 4096
    for part in path.absolute().parts:
        if len(os.fsencode(part)) > name_max:
            raise OutputError(f"{flag}: the name {part[:32]}... is {len(os.fsencode(part))} bytes long, more than "
                              f"the {name_max} the file system allows")
    if len(os.fsencode(str(path.absolute()))) >= path_max:
        raise OutputError(f"{flag} {path}: the path is longer than the {path_max} bytes the file system allows")


def _can_create_in(folder: Path) -> bool:
    """Whether a file can be created in ``folder`` (read-only mounts and immutable folders pass
    ``os.access`` for root)."""
    try:
        tmp, fd = _create_temp(folder / "lmfn-edge-write-check")
    except OSError:
        return False
    os.close(fd)
    with contextlib.suppress(OSError):
        os.unlink(tmp)
    return True


@contextlib.contextmanager
def staged(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary path next to ``path`` that replaces ``path`` when the block succeeds.

    For outputs written by other libraries (an .mlpackage folder, a file saved by name). The
    parent folder is created if missing. If the block raises, the temporary file or folder is
    removed and ``path`` is untouched; a folder at ``path`` is replaced only after the new one
    is complete.
    """
    import shutil
    import tempfile

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{_short(path.name)}.", suffix=".tmp", dir=path.parent))
    try:
        with interrupts.temporary(tmp):  # removed by an exit on a second Ctrl-C too
            staging = tmp / path.name
            yield staging
            interrupts.check()  # a Ctrl-C that third-party code swallowed still replaces nothing
            with interrupts.committing():  # the old folder moves aside only for the new one
                if path.is_dir() and not path.is_symlink():
                    os.replace(path, tmp / ".previous")
                os.replace(staging, path)
            _fsync_dir(path.parent)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


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


def pair_lr_images(hr_paths: list[Path], lr_paths: list[Path], scale: int) -> tuple[list[tuple[Path, Path]], list[Path],
                                                                                    list[Path]]:
    """Match LR files to HR files by name, as DIV2K (``0001x4.png``) and benchmark copies
    (``baby.png`` or ``babyx4.png``) name them.

    Returns:
        ``(pairs, hr_without_lr, lr_without_hr)``; pairs follow ``hr_paths``' order.
    """
    by_stem = {p.stem: p for p in lr_paths}
    pairs, missing, used = [], [], set()
    for hr in hr_paths:
        stem = next((s for s in (f"{hr.stem}x{scale}", hr.stem) if s in by_stem), None)
        if stem is None:
            missing.append(hr)
            continue
        used.add(stem)
        pairs.append((hr, by_stem[stem]))
    return pairs, missing, [by_stem[s] for s in sorted(set(by_stem) - used)]
