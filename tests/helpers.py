"""Helpers the test files share (imported by name: pytest puts tests/ on the path)."""

from __future__ import annotations

import torch

from lmfn_edge import create_model
from lmfn_edge.model.dsconv import DSConv

# Every cell type in one building module: IFM runs LKA and MSM in each IFF branch.
TINY = dict(channels=16, num_blocks=1, pattern="I", kernel_size=3)
# The scale only changes the upsampler; the LKA cell is the cheapest to lower.
TINY_L = dict(channels=8, num_blocks=1, pattern="L", kernel_size=3)
TILE, OVERLAP = 24, 8


def tiny_model(scale: int = 2, seed: int = 0, **config) -> torch.nn.Module:
    """A seeded tiny LMFN whose DSConv offsets are away from zero (an untrained DSConv is a
    straight line, which would hide sampling errors), in eval mode."""
    torch.manual_seed(seed)
    model = create_model(f"lmfn_x{scale}", **(config or TINY)).eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, DSConv):
                torch.nn.init.normal_(m.offset_conv.weight, std=0.3)
    return model


def run_pte(path, x: torch.Tensor) -> torch.Tensor:
    from executorch.runtime import Runtime

    return Runtime.get().load_program(str(path)).load_method("forward").execute([x])[0]
