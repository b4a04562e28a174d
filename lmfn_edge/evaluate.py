"""python -m lmfn_edge.evaluate: PSNR/SSIM of every LMFN runtime on benchmark folders.

The protocol and the methods are in docs/evaluation.md; the library is
:func:`lmfn_edge.evaluation.evaluate`.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from . import cli

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    p = cli.parser("lmfn_edge.evaluate", "PSNR/SSIM (Y channel, BasicSR protocol) of every LMFN runtime on "
                                         "benchmark folders.")
    cli.add_scale(p, required=True)
    p.add_argument("--data", nargs="+", required=True, help="benchmark folders (HR/ + LR_bicubic/X{s}/, or HR only)")
    p.add_argument("--methods", default="bicubic,eager",
                   help="comma-separated: bicubic, eager, deploy, eager:W.safetensors (other weights in the same "
                        "table), pte:PATH, coreml:PATH (default bicubic,eager)")
    cli.add_weights(p, "float weights for eager/deploy (default: the embedded weights)")
    p.add_argument("--crop", type=cli.int_at_least(0), help="border pixels excluded from the metrics (default: the scale)")
    cli.add_json(p, "every score")
    p.add_argument("--crops-dir", type=Path, help="save side-by-side crops (bicubic | methods | HR) here")
    cli.add_progress(p)
    return p


def _run(args: argparse.Namespace) -> int:
    from .evaluation.quality import evaluate, parse_methods
    from .files import atomic_write_text, check_output

    methods = parse_methods(args.methods)
    inputs = tuple(args.data) + tuple(str(m.path) for m in methods if m.path) + (args.weights,)
    if args.json:
        check_output(args.json, inputs=inputs, flag="--json")
    if args.crops_dir:
        check_output(args.crops_dir, inputs=inputs, folder=True, flag="--crops-dir")
    report = evaluate(args.data, args.scale, methods, crop=args.crop, crops_dir=args.crops_dir,
                      progress=not args.no_progress, weights=args.weights)
    if args.json:
        atomic_write_text(args.json, json.dumps(report.to_dict(), indent=2) + "\n")
    print(report.markdown())
    return 0


def main(argv: list[str] | None = None) -> int:
    return cli.run(build_parser(), _run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
