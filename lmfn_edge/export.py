"""python -m lmfn_edge.export: LMFN to ExecuTorch (.pte), Core ML (.mlpackage) or TorchScript, with a JSON sidecar.

The library behind it is :class:`lmfn_edge.deployment.ExportRequest` (and :func:`~lmfn_edge.
deployment.export` / :func:`~lmfn_edge.deployment.export_quantized` for Python callers);
docs/deployment.md lists targets, shapes and the sidecar.
"""

from __future__ import annotations

import argparse
import sys

from . import cli
from .manifest import DEFAULT_OVERLAP, DEFAULT_TILE, PRECISIONS, TARGETS

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    p = cli.parser("lmfn_edge.export", "Export LMFN to ExecuTorch (.pte), Core ML (.mlpackage) or TorchScript "
                                       "(.ptl), with a JSON sidecar.")
    p.add_argument("--target", default="xnnpack", choices=TARGETS, help="what to export to (default xnnpack)")
    cli.add_scale(p, help="upscaling factor (default 4, or the weights' or program's)")
    cli.add_weights(p)
    cli.add_random_init(p)
    p.add_argument("--precision", choices=sorted({p for ps in PRECISIONS.values() for p in ps}),
                   help="default: fp16 for coreml; int8 with --quantized; fp32 otherwise")
    p.add_argument("--quantized", metavar="PATH",
                   help="int8 parameters (.safetensors) or an int8 program (.pt2) from quantization/; "
                        "--precision int8 without it uses the int8 parameters the package embeds")
    p.add_argument("--shape", help=f"HxW fixed (any size) or MIN:MAX dynamic (multiples of 8) (default "
                                   f"{DEFAULT_TILE}x{DEFAULT_TILE})")
    p.add_argument("--overlap", type=cli.int_at_least(0),
                   help=f"LR tile overlap the sidecar records for runtimes (default {DEFAULT_OVERLAP})")
    p.add_argument("--output", help="artifact path (default artifacts/{model}_{target}_{precision}.pte|.mlpackage|.ptl)")
    p.add_argument("--android", metavar="APP_DIR", help="also install the .pte and its sidecar into this Android "
                                                        "demo's assets")
    p.add_argument("--verify", action="store_true",
                   help="coreml: check the package with numpy against the eager model on held-out photos before "
                        "writing it (docs/coreml-verification.md); exit 1 if it fails")
    cli.add_architecture(p)
    return p


def _run(args: argparse.Namespace) -> int:
    from .deployment import ExportRequest

    request = ExportRequest(
        target=args.target, scale=args.scale, weights=args.weights, random_init=args.random_init,
        precision=args.precision, quantized=args.quantized, shape=args.shape, overlap=args.overlap,
        output=args.output, android=args.android, verify=args.verify,
        overrides={k: v for k, v in (("kernel_size", args.kernel_size), ("pattern", args.pattern)) if v is not None},
    )
    result = request.run(log=lambda line: print(line, file=sys.stderr))
    print(result.summary())
    return 0


def main(argv: list[str] | None = None) -> int:
    return cli.run(build_parser(), _run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
