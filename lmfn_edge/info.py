"""python -m lmfn_edge.info: parameters and MACs of each variant and ablation pattern.

MACs at a 1280x720 output, the convention of the lightweight-SR literature; see
:mod:`lmfn_edge.model.complexity`.
"""

from __future__ import annotations

import argparse

from . import cli

__all__ = ["build_parser", "main"]


def _kernel_sizes(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(k) for k in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated odd integers, got {text!r}") from None
    if not sizes or any(k < 1 or k % 2 == 0 or k > 31 for k in sizes):
        raise argparse.ArgumentTypeError(f"kernel sizes must be odd integers in [1, 31], got {text!r}")
    return sizes


def build_parser() -> argparse.ArgumentParser:
    p = cli.parser("lmfn_edge.info", "Parameters and MACs (at a 1280x720 output) of LMFN's variants and ablations.")
    p.add_argument("--kernel-sizes", type=_kernel_sizes, default=(9,),
                   help="comma-separated DSConv kernel sizes (default 9)")
    return p


def _run(args: argparse.Namespace) -> int:
    from .model.complexity import complexity_table

    print(complexity_table(args.kernel_sizes))
    return 0


def main(argv: list[str] | None = None) -> int:
    return cli.run(build_parser(), _run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
