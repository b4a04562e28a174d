"""Upscaling image files and folders: what ``python -m lmfn_edge.upscale`` does, as a function.

Inputs are checked before any image is upscaled: the output is not one of the inputs, a folder
input gets a folder output, a file input gets a file path (an image extension Pillow writes),
and every image's header is read so an unreadable file or one whose output would exceed
:data:`MAX_OUTPUT_PIXELS` is reported at once. Outputs are written atomically and keep the
input's ICC profile; an image that fails is reported and the others are still processed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import UsageError
from ..files import OutputError, check_output, same_path
from ..io import IMAGE_EXTENSIONS, ImageError, image_size, list_images, load_image_with_info, save_image
from .backends import load_backend
from .upscaler import Upscaler

__all__ = ["MAX_OUTPUT_PIXELS", "UpscaleSummary", "upscale_path"]

# 400 MP: a 5000x5000 photo at x4 (1.2 GB as uint8, about 3 GB while encoding a PNG).
MAX_OUTPUT_PIXELS = 400_000_000


@dataclass
class UpscaleSummary:
    written: list[tuple[Path, Path, tuple[int, int]]] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)


def _jobs(src: Path, dst: Path) -> tuple[list[tuple[Path, Path]], list[Path]]:
    """(input, output) pairs and the skipped non-image files; refuses unusable paths."""
    if not src.exists():
        raise UsageError(f"input not found: {src}")
    if src.is_dir():
        check_output(dst, inputs=(src,), folder=True, flag="OUTPUT")
        images = list_images(src)
        skipped = sorted(p for p in src.iterdir() if p.is_file() and p not in images and not p.name.startswith("."))
        if not images:
            raise UsageError(f"no images in {src} (extensions: {', '.join(IMAGE_EXTENSIONS)})")
        return [(p, dst / p.name) for p in images], skipped
    check_output(dst, inputs=(src,), flag="OUTPUT")
    if dst.suffix.lower() not in IMAGE_EXTENSIONS:
        raise OutputError(f"OUTPUT {dst} needs an image extension ({', '.join(IMAGE_EXTENSIONS)})")
    return [(src, dst)], []


def upscale_path(
    src: str | Path,
    dst: str | Path,
    model: str | Path | None = None,
    scale: int | None = None,
    tile: int | None = None,
    overlap: int | None = None,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> UpscaleSummary:
    """Upscale an image file to ``dst``, or every image of a folder into the folder ``dst``.

    Args:
        src: Image file or folder (not recursive).
        dst: Output file, or folder for a folder input.
        model: .pte, .mlpackage or .safetensors; default the embedded weights.
        scale: Upscaling factor (default 4, or the model's); must match the model's.
        tile: LR tile side (see :class:`~lmfn_edge.runtime.Upscaler`).
        overlap: LR tile overlap (default: the program's sidecar value, else 16).
        progress: Show a progress bar per image.
        log: Receives one line per written, failed or skipped file.

    Returns:
        What was written, what failed (with the reason) and what was skipped.
    """
    src, dst = Path(src), Path(dst)
    say = log or (lambda line: None)
    jobs, skipped = _jobs(src, dst)
    if model is not None and any(same_path(model, d) for _, d in jobs):
        raise OutputError(f"an output would replace the model {model}")
    backend = load_backend(model, scale if scale or model else 4)
    upscaler = Upscaler(backend, tile=tile, overlap=overlap)
    summary = UpscaleSummary(skipped=skipped)
    for path in skipped:
        say(f"skipped {path.name}: not an image file")
    ready = []
    for s, d in jobs:  # headers first: report what cannot work before upscaling anything
        try:
            w, h = image_size(s)
            if w * h * upscaler.scale**2 > MAX_OUTPUT_PIXELS:
                raise ImageError(f"{s}: {w}x{h} at x{upscaler.scale} gives {w * h * upscaler.scale**2 / 1e6:.0f} MP, "
                                 f"more than the {MAX_OUTPUT_PIXELS / 1e6:.0f} MP limit")
            ready.append((s, d))
        except ImageError as exc:
            summary.failed.append((s, str(exc)))
            say(f"error: {exc}")
    if len(jobs) > 1 or src.is_dir():
        dst.mkdir(parents=True, exist_ok=True)
    for s, d in ready:
        try:
            image, info = load_image_with_info(s)
            out = upscaler.upscale(image, progress=progress)
            save_image(d, out, icc_profile=info.get("icc_profile"))
        except ImageError as exc:
            summary.failed.append((s, str(exc)))
            say(f"error: {exc}")
            continue
        summary.written.append((s, d, (out.shape[1], out.shape[0])))
        say(f"{s} -> {d} ({out.shape[1]}x{out.shape[0]}, x{upscaler.scale}, {backend.name})")
    return summary
