"""python -m lmfn_edge.upscale INPUT OUTPUT: upscale an image or a folder of images.

The model is the embedded default weights (--scale), a weights file, an ExecuTorch .pte or (on
macOS) a Core ML package, run in overlapping tiles exactly as the Android app does (a program's
tile and overlap come from its sidecar). Outputs are written atomically and keep the input's ICC
profile. In a folder, files without an image extension are skipped (and listed); images that
fail are reported one line each, the rest are still processed, and the exit status is 1.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import cli
from .manifest import MAX_SIDE

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    p = cli.parser("lmfn_edge.upscale", "Upscale an image or a folder of images with LMFN.")
    p.add_argument("input", type=Path, help="image file or folder")
    p.add_argument("output", type=Path, help="output file, or folder for a folder input")
    p.add_argument("--model", help=".pte, .mlpackage or .safetensors (default: the embedded weights for --scale)")
    cli.add_scale(p, help="upscaling factor (default 4, or the model's)")
    p.add_argument("--tile", type=cli.int_at_least(0, MAX_SIDE),
                   help=f"LR tile side, at most {MAX_SIDE} (default: a fixed-shape program's own, else 128; 0: whole "
                        "image, eager only)")
    p.add_argument("--overlap", type=cli.int_at_least(0),
                   help="LR overlap between tiles (default: the program's sidecar value, else 16)")
    cli.add_progress(p)
    return p


def _run(args: argparse.Namespace) -> int:
    from .runtime.files import upscale_path

    summary = upscale_path(args.input, args.output, args.model, args.scale, args.tile, args.overlap,
                           progress=not args.no_progress, log=lambda line: print(line, file=sys.stderr))
    if summary.failed:
        total = len(summary.failed) + len(summary.written)
        print(f"error: {len(summary.failed)} of {total} image(s) failed", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    return cli.run(build_parser(), _run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
