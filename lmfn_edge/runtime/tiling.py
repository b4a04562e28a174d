"""Overlapping-tile inference for super-resolution programs with a fixed input shape.

An exported program (ExecuTorch .pte, Core ML) usually takes one fixed ``tile x tile`` LR
window, so a large image is cut into overlapping tiles, each tile is upscaled, and the tile
outputs are blended. The same algorithm is mirrored line for line in Java by
``android_demo/imagecore`` (``TilePlan``, ``Blend``, ``ImageTensors``, ``TiledUpscaler``); the
golden vectors written by :mod:`lmfn_edge.android_golden` keep the two sides identical. Any
change here must be made there too.

Tile plan (per axis, LR pixels): starts are ``0, stride, 2*stride, ...`` with
``stride = tile - overlap``; the last start is clamped to ``size - tile`` so the last tile ends
exactly at the image edge, and starts are never repeated. Every tile is ``tile`` long, except
when ``size < tile``: then the whole axis is one tile of length ``size`` (the caller may pad it).
Tiles are listed row-major.

Blending (output pixels, all arithmetic in float32). Along one axis, a tile of output length
``L`` with output overlap ``V = scale * overlap`` gets the weight

    w[i] = min(ramp_start[i], ramp_end[i])
    ramp_start[i] = (i + 1) / (V + 1)   if the tile does not start at the image border and i < V
    ramp_end[i]   = (L - i) / (V + 1)   if the tile does not end at the image border and i >= L - V
    (1 otherwise)

so weights are strictly positive and two neighbours at the nominal overlap sum to exactly one.
The 2-D weight is the outer product ``w2[y, x] = wy[y] * wx[x]``. Tiles are accumulated in
plan order, ``acc += w2 * out`` (product rounded, then sum rounded) and ``wsum += w2``, and the
output pixel is ``acc / wsum``. Normalising by ``wsum`` keeps the result correct where the
clamped last tile overlaps its neighbour by more than ``overlap``.

Pixel conversions (the "image core" contract shared with Java):
    uint8 -> float:  x = float32(v) / float32(255)
    float -> uint8:  v = floor(clamp(x, 0, 1) * 255 + 0.5), in float32; NaN maps to 0
                     (``lmfn_edge.metrics.float_to_uint8``, re-exported here; training
                     validation scores with the same rule).
ARGB ints are Android's ``Bitmap`` pixels, ``(a << 24) | (r << 16) | (g << 8) | b`` as int32;
alpha is ignored on input and written as 255 on output.

Memory: tiles are run one row of tiles at a time. Float accumulators are kept only for a band
of ``scale * tile`` output rows (the rows the current tile row touches); rows that no later
tile row touches are converted to uint8 as soon as the row of tiles is done, so no full-size
float32 output is ever allocated.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..checks import check_integer
from ..metrics import float_to_uint8, hwc_uint8_to_chw_float

__all__ = [
    "Tile",
    "argb_to_chw_float",
    "blend_weights",
    "chw_float_to_argb",
    "float_to_uint8",
    "plan_tiles",
    "upscale_tiled",
]

_255 = np.float32(255.0)
_EMIT_ROWS = 32  # output rows converted to uint8 at a time


@dataclass(frozen=True)
class Tile:
    """One LR input window, half-open: rows ``y0:y1``, columns ``x0:x1``."""

    y0: int
    x0: int
    y1: int
    x1: int

    @property
    def height(self) -> int:
        return self.y1 - self.y0

    @property
    def width(self) -> int:
        return self.x1 - self.x0


def _check_int(name: str, value: Any, minimum: int) -> int:
    return check_integer(value, name, minimum)


def _axis_starts(size: int, tile: int, stride: int) -> list[int]:
    if size <= tile:
        return [0]
    # range() stops before size - tile, so appending the clamped start never duplicates one.
    return [*range(0, size - tile, stride), size - tile]


def plan_tiles(height: int, width: int, tile: int, overlap: int) -> list[Tile]:
    """Cuts an LR image into overlapping ``tile x tile`` windows.

    Args:
        height: Image height in LR pixels (>= 1).
        width: Image width in LR pixels (>= 1).
        tile: Tile side (> 0); a dimension smaller than this becomes one shorter tile.
        overlap: LR pixels shared by neighbouring tiles, ``0 <= overlap < tile``.

    Returns:
        Tiles in row-major order; see the module docstring for the exact rule.

    Raises:
        ValueError: On a non-positive size or tile, or an overlap outside ``[0, tile)``.
    """
    height = _check_int("height", height, 1)
    width = _check_int("width", width, 1)
    tile = _check_int("tile", tile, 1)
    overlap = _check_int("overlap", overlap, 0)
    if overlap >= tile:
        raise ValueError(f"overlap must be < tile, got overlap={overlap}, tile={tile}")
    stride = tile - overlap
    ys = _axis_starts(height, tile, stride)
    xs = _axis_starts(width, tile, stride)
    return [
        Tile(y0, x0, min(y0 + tile, height), min(x0 + tile, width)) for y0 in ys for x0 in xs
    ]


def blend_weights(tile_len_out: int, overlap_out: int, at_start: bool, at_end: bool) -> np.ndarray:
    """1-D blending weight of one tile along one axis, in output pixels.

    Args:
        tile_len_out: Output length of the tile (>= 1).
        overlap_out: Output overlap, ``scale * overlap`` (>= 0).
        at_start: The tile starts at the image border: no ramp on that side.
        at_end: The tile ends at the image border: no ramp on that side.

    Returns:
        float32 array of length ``tile_len_out``, every value in ``(0, 1]``.
    """
    tile_len_out = _check_int("tile_len_out", tile_len_out, 1)
    overlap_out = _check_int("overlap_out", overlap_out, 0)
    weights = np.ones(tile_len_out, dtype=np.float32)
    n = min(overlap_out, tile_len_out)
    denom = np.float32(overlap_out + 1)
    if not at_start and n:
        ramp = np.arange(1, n + 1, dtype=np.float32) / denom
        weights[:n] = np.minimum(weights[:n], ramp)
    if not at_end and n:
        # (L - i) for i = L - n .. L - 1 is n .. 1.
        ramp = np.arange(n, 0, -1, dtype=np.float32) / denom
        weights[tile_len_out - n :] = np.minimum(weights[tile_len_out - n :], ramp)
    return weights


def argb_to_chw_float(argb: np.ndarray) -> np.ndarray:
    """HxW int32 ARGB pixels (Android ``Bitmap.getPixels``) to 3xHxW float32 RGB in [0, 1]."""
    argb = np.asarray(argb)
    if argb.ndim != 2 or argb.dtype.kind not in "iu":
        raise ValueError(f"expected an HxW integer ARGB array, got {argb.dtype} {argb.shape}")
    v = argb.astype(np.int64)
    rgb = np.stack([(v >> 16) & 0xFF, (v >> 8) & 0xFF, v & 0xFF]).astype(np.float32)
    return rgb / _255


def chw_float_to_argb(arr: np.ndarray) -> np.ndarray:
    """3xHxW float RGB to HxW int32 ARGB with alpha 255 (the value Java's ``int`` holds)."""
    arr = np.asarray(arr)
    if arr.ndim != 3 or arr.shape[0] != 3:
        raise ValueError(f"expected a 3xHxW array, got shape {arr.shape}")
    q = float_to_uint8(arr).astype(np.uint32)
    packed = np.uint32(0xFF000000) | (q[0] << 16) | (q[1] << 8) | q[2]
    return packed.view(np.int32)


def _as_float_output(out: Any, expected: tuple[int, ...]) -> np.ndarray:
    if hasattr(out, "detach"):  # torch.Tensor, without importing torch here
        out = out.detach().cpu().numpy()
    out = np.asarray(out, dtype=np.float32)
    if out.shape != expected:
        raise ValueError(f"run() returned shape {out.shape}, expected {expected}")
    return out[0]


def _tile_rows(tiles: list[Tile]) -> Iterator[list[Tile]]:
    row: list[Tile] = []
    for t in tiles:
        if row and t.y0 != row[0].y0:
            yield row
            row = []
        row.append(t)
    yield row


def _emit_rows(acc: np.ndarray, wsum: np.ndarray, out: np.ndarray) -> None:
    """Writes the first ``len(out)`` band rows, blended and rounded, into ``out`` (HxWx3)."""
    for r0 in range(0, len(out), _EMIT_ROWS):
        r1 = min(r0 + _EMIT_ROWS, len(out))
        # The quotient is a fresh buffer, so rounding it in place costs no second float copy.
        out[r0:r1] = float_to_uint8(acc[:, r0:r1] / wsum[r0:r1], overwrite=True).transpose(1, 2, 0)


def _shift_band(acc: np.ndarray, wsum: np.ndarray, done: int) -> None:
    """Drops the first ``done`` band rows and zeroes the freed rows at the end."""
    keep = wsum.shape[0] - done
    # Copy in blocks of `done` rows: overlapping slices would make numpy copy the whole
    # source first, which next to the clamped last tile row is most of the band.
    for i in range(0, keep, done):
        n = min(done, keep - i)
        acc[:, i : i + n] = acc[:, done + i : done + i + n]
        wsum[i : i + n] = wsum[done + i : done + i + n]
    acc[:, keep:] = 0
    wsum[keep:] = 0


def upscale_tiled(
    run: Callable[[np.ndarray], Any],
    image: np.ndarray,
    scale: int,
    tile: int,
    overlap: int,
    pad_to_tile: bool = True,
    progress: bool = False,
) -> np.ndarray:
    """Upscales an image tile by tile and blends the tiles (see the module docstring).

    Args:
        run: Maps a float32 ``1x3xhxw`` array in [0, 1] to a ``1x3x(scale*h)x(scale*w)``
            numpy array or torch tensor.
        image: HxWx3 uint8 RGB image.
        scale: Upscaling factor of ``run``.
        tile: LR tile side the program expects.
        overlap: LR pixels shared by neighbouring tiles, ``0 <= overlap < tile``.
        pad_to_tile: When the image is smaller than ``tile`` in a dimension, edge-pad that
            tile to ``tile x tile`` before ``run`` and crop the output back (needed by
            fixed-shape programs; turn off for programs with a dynamic shape).
        progress: Show a tqdm bar over tiles.

    Returns:
        ``(scale*H) x (scale*W) x 3`` uint8 image.

    Raises:
        ValueError: On a bad image, bad tiling arguments, or a ``run`` output of the wrong shape.
    """
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an HxWx3 uint8 image, got {image.dtype} {image.shape}")
    scale = _check_int("scale", scale, 1)
    height, width = image.shape[:2]
    tiles = plan_tiles(height, width, tile, overlap)
    s, out_w = scale, scale * width
    out = np.empty((s * height, out_w, 3), dtype=np.uint8)

    band_h = s * min(tile, height)
    acc = np.zeros((3, band_h, out_w), dtype=np.float32)
    wsum = np.zeros((band_h, out_w), dtype=np.float32)
    rows = list(_tile_rows(tiles))

    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(tiles), unit="tile", desc="upscale")
    try:
        for r, row in enumerate(rows):
            y0, y1 = row[0].y0, row[0].y1
            wy = blend_weights(s * (y1 - y0), s * overlap, y0 == 0, y1 == height)
            for t in row:
                patch = image[t.y0 : t.y1, t.x0 : t.x1]
                if pad_to_tile and (t.height < tile or t.width < tile):
                    pad = ((0, tile - t.height), (0, tile - t.width), (0, 0))
                    patch = np.pad(patch, pad, mode="edge")
                x = hwc_uint8_to_chw_float(patch)[None]
                ph, pw = x.shape[2:]
                y = _as_float_output(run(x), (1, 3, s * ph, s * pw))
                y = y[:, : s * t.height, : s * t.width]
                wx = blend_weights(s * t.width, s * overlap, t.x0 == 0, t.x1 == width)
                w2 = wy[:, None] * wx[None, :]
                cols = slice(s * t.x0, s * t.x1)
                acc[:, : s * t.height, cols] += w2[None] * y
                wsum[: s * t.height, cols] += w2
                if bar is not None:
                    bar.update(1)
            # Rows above the next tile row's start are final; the rest stay in the band.
            done = s * ((rows[r + 1][0].y0 if r + 1 < len(rows) else height) - y0)
            _emit_rows(acc, wsum, out[s * y0 : s * y0 + done])
            _shift_band(acc, wsum, done)
    finally:
        if bar is not None:
            bar.close()
    return out
