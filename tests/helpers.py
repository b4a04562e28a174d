"""Helpers the test files share (imported by name: pytest puts tests/ on the path)."""

from __future__ import annotations

import math

import numpy as np
import torch

from lmfn_edge import create_model, model_name
from lmfn_edge.model.dsconv import DSConv

# Every cell type in one building module: IFM runs LKA and MSM in each IFF branch.
TINY = dict(channels=16, num_blocks=1, pattern="I", kernel_size=3)
# The scale only changes the upsampler; the LKA cell is the cheapest to lower.
TINY_L = dict(channels=8, num_blocks=1, pattern="L", kernel_size=3)
TILE, OVERLAP = 24, 8


def tiny_model(scale: int = 2, seed: int = 0, **config) -> torch.nn.Module:
    """:func:`bent_model` of ``config``, by default :data:`TINY`."""
    return bent_model(scale, seed, **(config or TINY))


def bent_model(scale: int, seed: int = 0, offset_bias_std: float = 0.0, line_std: float | None = None,
               jitter: float = 0.0, **config) -> torch.nn.Module:
    """A seeded LMFN (``config`` over the paper's) whose DSConv offsets are away from zero (an
    untrained DSConv is a straight line, which would hide sampling errors), in eval mode.

    ``offset_bias_std`` bends the offsets' biases too, ``line_std`` redraws the DSConv line
    kernels at a trained-like scale (at default init a wrong MSM pooling window moves the output
    by only ~1e-4), ``jitter`` adds that much noise to every parameter."""
    torch.manual_seed(seed)
    model = create_model(model_name(scale), **config).eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, DSConv):
                torch.nn.init.normal_(m.offset_conv.weight, std=0.3)
                if offset_bias_std:
                    torch.nn.init.normal_(m.offset_conv.bias, std=offset_bias_std)
                if line_std is not None:
                    torch.nn.init.normal_(m.line_conv.weight, std=line_std)
        for p in model.parameters() if jitter else ():
            p.add_(jitter * torch.randn_like(p))
    return model


def run_pte(path, x: torch.Tensor) -> torch.Tensor:
    from executorch.runtime import Runtime

    return Runtime.get().load_program(str(path)).load_method("forward").execute([x])[0]


# --- independent references of the benchmark protocol ----------------------------------------
# Written from MATLAB's documentation and imresize.m (contributions()), not from lmfn_edge: a
# dense matrix per axis built tap by tap, so that tests of lmfn_edge.imresize, lmfn_edge.metrics
# and the evaluator do not compute their expectations with the code under test.


def _keys_cubic(x: float) -> float:
    ax = abs(x)
    if ax <= 1:
        return 1.5 * ax**3 - 2.5 * ax**2 + 1
    if ax <= 2:
        return -0.5 * ax**3 + 2.5 * ax**2 - 4 * ax + 2
    return 0.0


def _reflect(j: int, n: int) -> int:
    """Folds a 1-based tap index into 1..n as MATLAB's 'symmetric' padding does (edge repeated)."""
    while not 1 <= j <= n:
        j = 1 - j if j < 1 else 2 * n + 1 - j
    return j


def matlab_resize_matrix(in_len: int, out_len: int, scale: float) -> np.ndarray:
    """The ``out_len x in_len`` matrix of MATLAB ``imresize(..., scale, 'bicubic')`` along one axis."""
    antialias = scale < 1  # MATLAB widens the kernel when shrinking
    width = 4.0 / scale if antialias else 4.0
    m = np.zeros((out_len, in_len))
    for x in range(1, out_len + 1):
        u = x / scale + 0.5 * (1 - 1 / scale)
        taps = [math.floor(u - width / 2) + k for k in range(math.ceil(width) + 2)]
        w = [scale * _keys_cubic(scale * (u - j)) if antialias else _keys_cubic(u - j) for j in taps]
        for j, wj in zip(taps, w):
            m[x - 1, _reflect(j, in_len) - 1] += wj / sum(w)
    return m


def matlab_imresize(img: np.ndarray, scale: float, out_h: int, out_w: int) -> np.ndarray:
    """MATLAB bicubic imresize of an HxW or HxWxC image to ``out_h x out_w``, float64, unrounded."""
    rows = matlab_resize_matrix(img.shape[0], out_h, scale)
    cols = matlab_resize_matrix(img.shape[1], out_w, scale)
    return np.einsum("yi,ij...,xj->yx...", rows, np.asarray(img, dtype=np.float64), cols)


def matlab_uint8(x: np.ndarray) -> np.ndarray:
    """MATLAB's double -> uint8: ``round`` (halves away from zero, ``sign(x) * floor(|x| + 0.5)``), saturated."""
    return np.clip(np.sign(x) * np.floor(np.abs(x) + 0.5), 0, 255).astype(np.uint8)


def matlab_bicubic_down(hr: np.ndarray, scale: int) -> np.ndarray:
    """A benchmark LR image: modcrop, ``imresize(hr, 1/scale, 'bicubic')``, uint8."""
    h, w = hr.shape[0] // scale, hr.shape[1] // scale
    return matlab_uint8(matlab_imresize(hr[: h * scale, : w * scale], 1 / scale, h, w))


def matlab_bicubic_up(lr: np.ndarray, scale: int) -> np.ndarray:
    """The bicubic baseline: ``imresize(lr, scale, 'bicubic')``, uint8."""
    return matlab_uint8(matlab_imresize(lr, scale, lr.shape[0] * scale, lr.shape[1] * scale))


def psnr_y(a: np.ndarray, b: np.ndarray, crop: int) -> float:
    """PSNR of two HxWx3 uint8 images on BT.601 Y (MATLAB rgb2ycbcr, unrounded), ``crop`` pixels off
    every border, float64, peak 255."""

    def y(img: np.ndarray) -> np.ndarray:
        r, g, b_ = (img[crop : img.shape[0] - crop, crop : img.shape[1] - crop, c].astype(np.float64) for c in range(3))
        return 16 + (65.481 * r + 128.553 * g + 24.966 * b_) / 255

    return 10 * math.log10(255**2 / float(np.mean((y(a) - y(b)) ** 2)))
