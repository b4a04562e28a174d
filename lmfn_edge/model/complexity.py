"""Parameters and multiply-accumulates, as the lightweight-SR literature counts them.

MACs are ``torch.utils.flop_counter``'s FLOPs / 2 on the training form. DSConv's bilinear
sampling is not a matmul and is not counted (as in the papers' counters); its line conv and
offset conv are. The literature's convention is a 1280x720 output, i.e. an LR input of
(720 / s) x (1280 / s).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..registry import SCALES

__all__ = ["PATTERNS", "complexity_table", "count_macs", "count_parameters", "hd_input"]


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@torch.no_grad()
def count_macs(model: nn.Module, height: int, width: int) -> float:
    """MACs of one forward pass on a ``1x3xheightxwidth`` input."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, 3, height, width))
    return counter.get_total_flops() / 2


def hd_input(scale: int) -> tuple[int, int]:
    """The LR (H, W) whose x``scale`` output is 1280x720."""
    return math.ceil(720 / scale), math.ceil(1280 / scale)


PATTERNS = {
    "LMILMILM": "LMFN (default)",
    "LLLLLLLL": "LKDN (LKA only)",
    "MMMMMMMM": "MSM only",
    "LMLMLMLM": "LKA/MSM alternating",
    "IIIIIIII": "IFM only",
}


def complexity_table(kernel_sizes: tuple[int, ...] = (9,)) -> str:
    """Markdown table: parameters and GMACs at a 1280x720 output per pattern, DSConv K and scale."""
    from .lmfn import LMFN, config_for, model_name

    rows = ["| model | pattern | DSConv K | params | GMACs @1280x720 |", "|---|---|---|---:|---:|"]
    for pattern, label in PATTERNS.items():
        for k in kernel_sizes if set(pattern) - {"L"} else (9,):
            for scale in SCALES:
                model = LMFN(config_for(model_name(scale), pattern=pattern, kernel_size=k)).eval()
                gmacs = count_macs(model, *hd_input(scale)) / 1e9
                ks = str(k) if set(pattern) - {"L"} else "-"
                rows.append(f"| {model_name(scale)} | {pattern} ({label}) | {ks} | {count_parameters(model):,} | {gmacs:.1f} |")
    return "\n".join(rows)
