"""``python -m lmfn_edge.info``: parameters and MACs of each variant and ablation pattern.

MACs are counted with ``torch.utils.flop_counter`` (FLOPs / 2) on the training form at a
1280x720 output, the convention of the lightweight-SR literature (LKDN, SAFMN): the LR input is
(720 / s) x (1280 / s). DSConv's bilinear sampling is not a matmul and is not counted by the
FLOP counter (as in the papers' counters); its line conv and offset conv are.
"""

from __future__ import annotations

import argparse
import math

import torch
from torch.utils.flop_counter import FlopCounterMode

from . import create_model

PATTERNS = {
    "LMILMILM": "LMFN (default)",
    "LLLLLLLL": "LKDN (LKA only)",
    "MMMMMMMM": "MSM only",
    "LMLMLMLM": "LKA/MSM alternating",
    "IIIIIIII": "IFM only",
}


def count(name: str, **overrides) -> tuple[int, float]:
    """(parameters, GMACs at a 1280x720 output) of a model."""
    model = create_model(name, **overrides).eval()
    scale = model.config.scale
    x = torch.zeros(1, 3, math.ceil(720 / scale), math.ceil(1280 / scale))
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x)
    return sum(p.numel() for p in model.parameters()), counter.get_total_flops() / 2e9


def table(kernel_sizes: tuple[int, ...] = (9,)) -> str:
    rows = ["| model | pattern | DSConv K | params | GMACs @1280x720 |", "|---|---|---|---:|---:|"]
    for pattern, label in PATTERNS.items():
        for k in kernel_sizes if "M" in pattern or "I" in pattern else (9,):
            for scale in (2, 3, 4):
                params, gmacs = count(f"lmfn_x{scale}", pattern=pattern, kernel_size=k)
                ks = str(k) if set(pattern) - {"L"} else "-"
                rows.append(f"| lmfn_x{scale} | {pattern} ({label}) | {ks} | {params:,} | {gmacs:.1f} |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m lmfn_edge.info", description=__doc__.splitlines()[0])
    p.add_argument("--kernel-sizes", default="9", help="comma-separated DSConv kernel sizes (default 9)")
    args = p.parse_args(argv)
    print(table(tuple(int(k) for k in args.kernel_sizes.split(","))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
