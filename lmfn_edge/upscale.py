"""``python -m lmfn_edge.upscale INPUT OUTPUT``: upscale an image or a folder of images.

The model is the embedded default weights (``--scale``), a weights file, an ExecuTorch .pte or
(on macOS) a Core ML package, run in overlapping tiles exactly as the Android app does. Outputs
are written atomically and keep the input's ICC profile. In a folder, files without an image
extension are skipped (and listed); images that fail to load are reported one line each, the
rest are still processed, and the exit status is non-zero.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .io import IMAGE_EXTENSIONS, ImageError, list_images, load_image_with_info, save_image
from .runtime import BackendError, Upscaler, load_backend
from .weights import WeightsError


def upscale_file(upscaler: Upscaler, src: Path, dst: Path, progress: bool = True) -> tuple[int, int]:
    """Upscale one file; returns the output size (width, height)."""
    image, info = load_image_with_info(src)
    out = upscaler.upscale(image, progress=progress)
    save_image(dst, out, icc_profile=info.get("icc_profile"))
    return out.shape[1], out.shape[0]


def _jobs(src: Path, dst: Path) -> tuple[list[tuple[Path, Path]], list[Path]]:
    """(input, output) pairs and the skipped non-image files."""
    if src.is_dir():
        if dst.exists() and not dst.is_dir():
            raise ValueError(f"{src} is a folder, so OUTPUT must be a folder too ({dst} is a file)")
        images = list_images(src)
        skipped = sorted(p for p in src.iterdir() if p.is_file() and p not in images and not p.name.startswith("."))
        if not images:
            raise ValueError(f"no images in {src} (extensions: {', '.join(IMAGE_EXTENSIONS)})")
        return [(p, dst / p.name) for p in images], skipped
    if not src.exists():
        raise ValueError(f"input not found: {src}")
    if dst.is_dir():
        dst = dst / src.name
    return [(src, dst)], []


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m lmfn_edge.upscale", description=__doc__.splitlines()[0])
    p.add_argument("input", type=Path, help="image file or folder")
    p.add_argument("output", type=Path, help="output file or folder")
    p.add_argument("--model", help=".pte, .mlpackage or .safetensors (default: embedded weights for --scale)")
    p.add_argument("--scale", type=int, choices=(2, 3, 4), help="upscaling factor (default 4, or the model's)")
    p.add_argument("--tile", type=int, help="LR tile side (default: a fixed-shape program's own, else 128; 0: whole image, eager only)")
    p.add_argument("--overlap", type=int, default=16, help="LR overlap between tiles (default 16)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = p.parse_args(argv)
    try:
        jobs, skipped = _jobs(args.input, args.output)
        backend = load_backend(args.model, args.scale if args.scale or args.model else 4)
        upscaler = Upscaler(backend, tile=args.tile, overlap=args.overlap)
    except (ValueError, BackendError, WeightsError, ImageError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for path in skipped:
        print(f"skipped {path.name}: not an image file", file=sys.stderr)
    if len(jobs) > 1:
        args.output.mkdir(parents=True, exist_ok=True)
    failed = 0
    for src, dst in jobs:
        try:
            w, h = upscale_file(upscaler, src, dst, progress=not args.no_progress)
            print(f"{src} -> {dst} ({w}x{h}, x{upscaler.scale}, {backend.name})")
        except (ImageError, ValueError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            failed += 1
    if failed:
        print(f"error: {failed} of {len(jobs)} image(s) failed", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
