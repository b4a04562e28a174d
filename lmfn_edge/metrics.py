"""PSNR and SSIM under the super-resolution benchmark protocol.

Follows the conventions of BasicSR (``basicsr/metrics/psnr_ssim.py``) and, through it, the MATLAB
code of the original papers: metrics on the BT.601 luma (Y) channel computed like MATLAB
``rgb2ycbcr``, ``crop_border`` pixels removed on every side, PSNR in float64 with data range 255,
and SSIM as in Wang et al.'s ``ssim_index.m`` (11x11 Gaussian window, sigma 1.5, 'valid' region).
Model outputs are quantised to uint8 before scoring, as BasicSR's ``tensor2img`` does, so reported
numbers are those of the images a user would save. Model outputs become uint8 in one place,
``float_to_uint8``, used by training validation (through ``tensor_to_uint8``) and by the tiler
behind ``evaluate`` and ``upscale`` (``lmfn_edge.runtime.tiling``), and mirrored in Java by the
Android demo: MATLAB's ``uint8()`` rule, which the benchmark's original MATLAB evaluation
applies when it writes SR outputs.

Only numpy is imported: ``tensor_to_uint8`` takes a torch tensor without importing torch.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

__all__ = ["chw_float_to_hwc_uint8", "float_to_uint8", "hwc_uint8_to_chw_float", "psnr", "psnr_float", "rgb_to_y", "ssim",
           "tensor_to_uint8"]

# MATLAB rgb2ycbcr luma row for R, G, B in [0, 1]; the offset 16 puts Y on the 0..255 scale.
_Y_WEIGHTS = np.array([65.481, 128.553, 24.966], dtype=np.float64)
_Y_OFFSET = 16.0

_SSIM_WINDOW = 11
_SSIM_SIGMA = 1.5
_SSIM_C1 = (0.01 * 255) ** 2
_SSIM_C2 = (0.03 * 255) ** 2

_255 = np.float32(255.0)
_HALF = np.float32(0.5)


def rgb_to_y(img: np.ndarray) -> np.ndarray:
    """Converts RGB on the 0..255 scale to BT.601 luma, as MATLAB ``rgb2ycbcr`` does.

    Args:
        img: HxWx3 RGB array, uint8 or float with values in 0..255.

    Returns:
        HxW float64 Y on the 0..255 scale (16 for black, 235 for white), not rounded: rounding
        here would move benchmark PSNR by a few hundredths of a dB.

    Raises:
        ValueError: If ``img`` is not HxWx3.
    """
    img = np.asarray(img)
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"rgb_to_y expects an HxWx3 RGB array, got shape {img.shape}")
    return img.astype(np.float64) @ (_Y_WEIGHTS / 255.0) + _Y_OFFSET


def psnr(a: np.ndarray, b: np.ndarray, crop_border: int = 0, y_channel: bool = True) -> float:
    """Peak signal-to-noise ratio in dB with a data range of 255.

    Args:
        a: HxW, HxWx1 or HxWx3 image on the 0..255 scale (normally uint8 RGB).
        b: Image of the same shape as ``a``.
        crop_border: Pixels removed on every side before scoring.
        y_channel: Score the Y channel of 3-channel inputs; ignored for single-channel inputs.

    Returns:
        PSNR in dB; ``inf`` when the images are identical.

    Raises:
        ValueError: On a shape mismatch, a bad layout, or a crop that leaves no pixels.
    """
    a, b = _prepare(a, b, crop_border, y_channel, min_size=1)
    mse = float(np.mean((a - b) ** 2))
    if mse == 0.0:
        return math.inf
    return 10.0 * math.log10(255.0**2 / mse)


def psnr_float(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB of two float arrays of any shape on the [0, 1] scale (peak 1, every value;
    a parity measure between runtimes, not the benchmark protocol's Y-channel PSNR)."""
    mse = float(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))
    return math.inf if mse == 0.0 else 10.0 * math.log10(1.0 / mse)


def ssim(a: np.ndarray, b: np.ndarray, crop_border: int = 0, y_channel: bool = True) -> float:
    """Structural similarity as in Wang et al.'s MATLAB ``ssim_index``.

    The SSIM map is computed only where the 11x11 window fits inside the (cropped) image and
    averaged; for multi-channel input the per-channel values are averaged.

    Args:
        a: HxW, HxWx1 or HxWx3 image on the 0..255 scale (normally uint8 RGB).
        b: Image of the same shape as ``a``.
        crop_border: Pixels removed on every side before scoring.
        y_channel: Score the Y channel of 3-channel inputs; ignored for single-channel inputs.

    Returns:
        Mean SSIM; 1.0 for identical images.

    Raises:
        ValueError: On a shape mismatch, a bad layout, or a cropped image smaller than 11x11.
    """
    a, b = _prepare(a, b, crop_border, y_channel, min_size=_SSIM_WINDOW)
    return float(np.mean([_ssim_2d(a[..., c], b[..., c]) for c in range(a.shape[2])]))


def float_to_uint8(x: np.ndarray, overwrite: bool = False) -> np.ndarray:
    """Quantises floats in [0, 1] to uint8 with the SDK's one rounding rule.

    ``v = floor(clamp(x, 0, 1) * 255 + 0.5)``, each step rounded to float32, NaN -> 0: MATLAB's
    ``uint8()`` / ``im2uint8`` (halves away from zero), which the benchmark protocol's MATLAB code
    applies to SR outputs. Round-half-to-even (``torch.round``, numpy's ``round``, which BasicSR
    uses) differs only where ``x * 255`` is exactly a half, e.g. 0.5/255 -> 1 here, 0 there. The
    Java of the Android demo (``ImageTensors.toUint8``) does the same float32 steps, and the
    golden vectors of :mod:`lmfn_edge.android_golden` pin both sides.

    Args:
        x: Float array of any shape.
        overwrite: Work in ``x`` itself, which must then be a float32 array the caller no longer
            needs; saves the float32 copy when quantising large buffers.

    Returns:
        uint8 array of the shape of ``x``.
    """
    x = np.asarray(x, dtype=np.float32) if overwrite else np.array(x, dtype=np.float32, copy=True)
    np.nan_to_num(x, copy=False, nan=0.0)
    np.clip(x, np.float32(0.0), np.float32(1.0), out=x)
    x *= _255
    x += _HALF
    return np.floor(x, out=x).astype(np.uint8)


def hwc_uint8_to_chw_float(img: np.ndarray) -> np.ndarray:
    """HxWx3 uint8 RGB to a 3xHxW float32 array in [0, 1]."""
    img = np.asarray(img)
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"expected an HxWx3 uint8 image, got {img.dtype} {img.shape}")
    return np.ascontiguousarray(img.transpose(2, 0, 1)).astype(np.float32) / _255


def chw_float_to_hwc_uint8(arr: np.ndarray) -> np.ndarray:
    """3xHxW float in [0, 1] to HxWx3 uint8, with the shared clamp-and-round rule."""
    arr = np.asarray(arr)
    if arr.ndim != 3 or arr.shape[0] != 3:
        raise ValueError(f"expected a 3xHxW array, got shape {arr.shape}")
    return np.ascontiguousarray(float_to_uint8(arr).transpose(1, 2, 0))


def tensor_to_uint8(t: torch.Tensor) -> np.ndarray:
    """Quantises a model output to the uint8 image that gets saved and scored.

    Uses the rule of ``float_to_uint8`` (halves away from zero, NaN -> 0), the one the tiler and
    therefore ``evaluate`` and ``upscale`` apply, so training validation scores the same images.

    Args:
        t: 1x3xHxW or 3xHxW float tensor with values nominally in [0, 1].

    Returns:
        HxWx3 uint8 RGB array.

    Raises:
        ValueError: If the tensor is not 1x3xHxW or 3xHxW.
    """
    if t.dim() == 4 and t.shape[0] == 1:
        t = t[0]
    if t.dim() != 3 or t.shape[0] != 3:
        raise ValueError(f"tensor_to_uint8 expects a 1x3xHxW or 3xHxW tensor, got {tuple(t.shape)}")
    return chw_float_to_hwc_uint8(t.detach().cpu().float().numpy())  # float(): bfloat16 has no numpy dtype


def _prepare(
    a: np.ndarray, b: np.ndarray, crop_border: int, y_channel: bool, min_size: int
) -> tuple[np.ndarray, np.ndarray]:
    """Validates, crops and converts a pair of images to float64 HxWxC."""
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        raise ValueError(f"image shapes differ: {a.shape} vs {b.shape}")
    if a.ndim == 2:
        a, b = a[..., None], b[..., None]
    if a.ndim != 3 or a.shape[2] not in (1, 3):
        raise ValueError(f"expected an HxW, HxWx1 or HxWx3 image, got shape {a.shape}")
    if crop_border < 0:
        raise ValueError(f"crop_border must be >= 0, got {crop_border}")
    height, width = a.shape[0] - 2 * crop_border, a.shape[1] - 2 * crop_border
    if height < min_size or width < min_size:
        raise ValueError(
            f"image of {a.shape[0]}x{a.shape[1]} with crop_border={crop_border} leaves "
            f"{max(height, 0)}x{max(width, 0)} pixels; at least {min_size}x{min_size} are needed"
        )
    if crop_border:
        a = a[crop_border:-crop_border, crop_border:-crop_border]
        b = b[crop_border:-crop_border, crop_border:-crop_border]
    if y_channel and a.shape[2] == 3:
        return rgb_to_y(a)[..., None], rgb_to_y(b)[..., None]
    return a.astype(np.float64), b.astype(np.float64)


def _gaussian_kernel() -> np.ndarray:
    """The 1-D factor of the 11x11 SSIM window (what OpenCV's getGaussianKernel(11, 1.5) gives)."""
    x = np.arange(_SSIM_WINDOW, dtype=np.float64) - (_SSIM_WINDOW - 1) / 2
    k = np.exp(-(x**2) / (2 * _SSIM_SIGMA**2))
    return k / k.sum()


def _filter_valid(img: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Separable 2-D filtering keeping only outputs whose window lies fully inside ``img``.

    The kernel is symmetric, so correlation and convolution coincide.
    """
    n = kernel.size
    rows = sum(kernel[i] * img[i : img.shape[0] - n + 1 + i] for i in range(n))
    return sum(kernel[j] * rows[:, j : rows.shape[1] - n + 1 + j] for j in range(n))


def _ssim_2d(a: np.ndarray, b: np.ndarray) -> float:
    kernel = _gaussian_kernel()
    mu_a, mu_b = _filter_valid(a, kernel), _filter_valid(b, kernel)
    var_a = _filter_valid(a * a, kernel) - mu_a**2
    var_b = _filter_valid(b * b, kernel) - mu_b**2
    cov = _filter_valid(a * b, kernel) - mu_a * mu_b
    num = (2 * mu_a * mu_b + _SSIM_C1) * (2 * cov + _SSIM_C2)
    den = (mu_a**2 + mu_b**2 + _SSIM_C1) * (var_a + var_b + _SSIM_C2)
    return float(np.mean(num / den))
