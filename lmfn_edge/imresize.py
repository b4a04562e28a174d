"""MATLAB-compatible bicubic resizing, as used to make and score SR benchmarks.

Benchmark LR images are produced by MATLAB ``imresize(hr, 1/scale, 'bicubic')``, whose default
antialiasing widens the kernel when downscaling; PIL and OpenCV bicubic differ from it by a
few tenths of a dB, so training data and evaluation use this re-implementation of the documented
MATLAB algorithm (the same one BasicSR's ``matlab_functions.imresize`` reproduces):

* Keys cubic kernel with a = -0.5;
* when downscaling, the kernel is stretched by ``1/scale`` (``scale * cubic(scale * d)``);
* output pixel ``x`` (1-based) samples input coordinate ``u = x / scale + 0.5 * (1 - 1 / scale)``;
* ``ceil(kernel_width) + 2`` taps per output pixel, weights normalised to sum to one;
* out-of-range taps mirror back into the image (symmetric padding, edge pixel repeated);
* separable: rows first, then columns, in float64.
"""

from __future__ import annotations

import math

import numpy as np

from .checks import check_integer

__all__ = ["imresize", "imresize_uint8", "modcrop", "bicubic_downscale", "bicubic_upscale"]

# ceil(in * scale) exactly as written, except that a product a rounding error above an integer
# (e.g. 20 * 0.35 = 7.000000000000001) gives that integer rather than one pixel more.
_SIZE_TOLERANCE = 1e-9


def imresize(img: np.ndarray, scale: float) -> np.ndarray:
    """Resizes like MATLAB ``imresize(img, scale, 'bicubic')`` with its default antialiasing.

    Args:
        img: HxW or HxWxC array, uint8 or float, on any value scale (the result is on the same
            scale; nothing is normalised).
        scale: Resize factor (> 0); below 1 downscales. Output sides are ``ceil(side * scale)``.

    Returns:
        float64 array of the resized image, not rounded or clipped (bicubic overshoots).

    Raises:
        ValueError: On a non-positive or non-finite scale, or an empty or badly shaped image.
    """
    img = np.asarray(img)
    if img.ndim not in (2, 3) or img.shape[0] == 0 or img.shape[1] == 0:
        raise ValueError(f"imresize expects a non-empty HxW or HxWxC array, got shape {img.shape}")
    if not (math.isfinite(scale) and scale > 0):
        raise ValueError(f"scale must be a positive finite number, got {scale}")
    out_h, out_w = (max(1, math.ceil(side * scale - _SIZE_TOLERANCE)) for side in img.shape[:2])
    return _resize(img, scale, out_h, out_w)


def imresize_uint8(img_uint8: np.ndarray, scale: float) -> np.ndarray:
    """MATLAB's ``imresize(img, scale, 'bicubic')`` on a uint8 image: the result rounded back to
    uint8 as MATLAB rounds it (clipped, halves away from zero)."""
    _check_uint8(img_uint8, "img_uint8")
    return _to_uint8(imresize(img_uint8, scale))


def modcrop(img: np.ndarray, scale: int) -> np.ndarray:
    """Crops the bottom and right edges so height and width are multiples of ``scale``.

    Args:
        img: HxW or HxWxC array.
        scale: Integer SR scale.

    Returns:
        A view of ``img`` of size (H - H % scale) x (W - W % scale).

    Raises:
        ValueError: If ``scale`` is not a positive integer or the image is smaller than it.
    """
    scale = _check_int_scale(scale)
    img = np.asarray(img)
    if img.ndim not in (2, 3) or img.shape[0] < scale or img.shape[1] < scale:
        raise ValueError(f"cannot modcrop an image of shape {img.shape} to a multiple of {scale}")
    h, w = img.shape[0] - img.shape[0] % scale, img.shape[1] - img.shape[1] % scale
    return img[:h, :w]


def bicubic_downscale(hr_uint8: np.ndarray, scale: int) -> np.ndarray:
    """Makes a benchmark LR image: modcrop, MATLAB bicubic ``1/scale``, round to uint8.

    Args:
        hr_uint8: HxW or HxWxC uint8 HR image.
        scale: Integer SR scale.

    Returns:
        uint8 LR image of size (H // scale) x (W // scale).

    Raises:
        ValueError: If the image is not uint8, or on a bad scale or shape.
    """
    _check_uint8(hr_uint8, "bicubic_downscale")
    scale = _check_int_scale(scale)
    hr = modcrop(hr_uint8, scale)
    lr = _resize(hr, 1.0 / scale, hr.shape[0] // scale, hr.shape[1] // scale)
    return _to_uint8(lr)


def bicubic_upscale(lr_uint8: np.ndarray, scale: int) -> np.ndarray:
    """The bicubic baseline of the evaluation tables: MATLAB bicubic x``scale``, rounded to uint8.

    Args:
        lr_uint8: HxW or HxWxC uint8 LR image.
        scale: Integer SR scale.

    Returns:
        uint8 image of size (H * scale) x (W * scale).

    Raises:
        ValueError: If the image is not uint8, or on a bad scale or shape.
    """
    _check_uint8(lr_uint8, "bicubic_upscale")
    scale = _check_int_scale(scale)
    lr = np.asarray(lr_uint8)
    if lr.ndim not in (2, 3) or lr.shape[0] == 0 or lr.shape[1] == 0:
        raise ValueError(f"bicubic_upscale expects an HxW or HxWxC image, got shape {lr.shape}")
    return _to_uint8(_resize(lr, float(scale), lr.shape[0] * scale, lr.shape[1] * scale))


def _check_int_scale(scale: int) -> int:
    return check_integer(scale, "scale", 1)


def _check_uint8(img: np.ndarray, name: str) -> None:
    if np.asarray(img).dtype != np.uint8:
        raise ValueError(f"{name} expects a uint8 image, got dtype {np.asarray(img).dtype}")


def _to_uint8(img: np.ndarray) -> np.ndarray:
    # MATLAB's double -> uint8 conversion rounds halves away from zero; np.round would round
    # them to even. After clipping every value is >= 0, so floor(x + 0.5) is MATLAB's rule.
    return np.floor(np.clip(img, 0.0, 255.0) + 0.5).astype(np.uint8)


def _cubic(x: np.ndarray) -> np.ndarray:
    """Keys cubic convolution kernel with a = -0.5."""
    ax = np.abs(x)
    # Products, not ax**3: numpy's float64 power is a SIMD approximation on AVX-512 CPUs and
    # libm's elsewhere, which differ in the last bit and so round some pixels differently.
    ax2 = ax * ax
    ax3 = ax2 * ax
    near = (1.5 * ax3 - 2.5 * ax2 + 1.0) * (ax <= 1)
    far = (-0.5 * ax3 + 2.5 * ax2 - 4.0 * ax + 2.0) * ((ax > 1) & (ax <= 2))
    return near + far


def _contributions(in_len: int, out_len: int, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """Tap indices (0-based, already mirrored) and weights, both out_len x taps."""
    kernel_width = 4.0
    antialias = scale < 1
    if antialias:
        kernel_width /= scale
    x = np.arange(1, out_len + 1, dtype=np.float64)
    u = x / scale + 0.5 * (1.0 - 1.0 / scale)
    left = np.floor(u - kernel_width / 2)
    taps = math.ceil(kernel_width) + 2
    indices = left[:, None] + np.arange(taps)[None, :]  # 1-based, may fall outside the image
    distance = u[:, None] - indices
    weights = scale * _cubic(scale * distance) if antialias else _cubic(distance)
    weights /= weights.sum(axis=1, keepdims=True)
    # Symmetric padding as a periodic lookup: 1..n, n..1, 1..n, ... covers any tap index.
    mirror = np.concatenate([np.arange(in_len), np.arange(in_len - 1, -1, -1)])
    indices = mirror[np.mod(indices.astype(np.int64) - 1, 2 * in_len)]
    return indices, weights


def _resize_axis(img: np.ndarray, axis: int, out_len: int, scale: float) -> np.ndarray:
    indices, weights = _contributions(img.shape[axis], out_len, scale)
    moved = np.moveaxis(img, axis, 0)
    expand = (slice(None),) + (None,) * (moved.ndim - 1)
    # One gather per tap keeps memory at one output-sized buffer, even for 2000x2000 inputs
    # downscaled x4 (18 taps), where gathering all taps at once would need ~18x that.
    out = np.zeros((out_len,) + moved.shape[1:], dtype=np.float64)
    for k in range(indices.shape[1]):
        out += weights[:, k][expand] * moved[indices[:, k]]
    return np.moveaxis(out, 0, axis)


def _resize(img: np.ndarray, scale: float, out_h: int, out_w: int) -> np.ndarray:
    # MATLAB resizes the dimension with the smaller scale first; with one scale for both that
    # is rows, then columns.
    out = _resize_axis(np.asarray(img, dtype=np.float64), 0, out_h, scale)
    return _resize_axis(out, 1, out_w, scale)
