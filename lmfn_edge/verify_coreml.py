"""python -m lmfn_edge.verify_coreml M.mlpackage: check a Core ML program numerically, on Linux too.

The package is evaluated op by op with numpy and compared with the eager model on real photos
(docs/coreml-verification.md); the library is :func:`lmfn_edge.deployment.coreml_verify.verify_package`.
Exit 0 when every image is within tolerance, 1 when one is not.
"""

from __future__ import annotations

import argparse
import json

from . import cli

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    from .manifest import DYNAMIC_MULTIPLE, MAX_SIDE, MIN_DYNAMIC

    p = cli.parser("lmfn_edge.verify_coreml", "Evaluate a Core ML .mlpackage with numpy and compare it with the "
                                              "eager model.")
    p.add_argument("model", help="the .mlpackage to check")
    cli.add_weights(p, "safetensors weights the package was exported from (default: the weights its sidecar "
                       "records, when they are the embedded ones or still on disk)")
    cli.add_random_init(p, "compare with the model export --random-init built (seed 0, the sidecar's architecture)")
    cli.add_scale(p, help="upscaling factor (default: from the sidecar or the weights)")
    cli.add_architecture(p)
    p.add_argument("--images", nargs="+", help="images to check on (default: scikit-image's held-out photos)")
    p.add_argument("--size", type=cli.int_at_least(MIN_DYNAMIC, MAX_SIDE),
                   help=f"LR side for flexible-shape programs, a multiple of {DYNAMIC_MULTIPLE} (default 64)")
    cli.add_json(p, "the report")
    return p


def _run(args: argparse.Namespace) -> int:
    from .deployment.coreml_verify import verify_package
    from .files import atomic_write_text, check_output

    if args.json:
        check_output(args.json, inputs=(args.model, args.weights, *(args.images or ())), flag="--json")
    report = verify_package(args.model, args.weights, args.random_init, args.scale, args.images, args.size,
                            kernel_size=args.kernel_size, pattern=args.pattern)
    print(report.summary())
    if args.json:
        atomic_write_text(args.json, json.dumps(report.to_dict(), indent=2) + "\n")
    return 0 if report.passed else 1


def main(argv: list[str] | None = None) -> int:
    return cli.run(build_parser(), _run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
