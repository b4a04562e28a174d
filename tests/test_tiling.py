"""Tiling: plan coverage, blending weights, exactness, seam error, memory, pixel conversions."""

import tracemalloc

import numpy as np
import pytest
import torch

from lmfn_edge.android_golden import PLAN_CASES as GOLDEN_PLAN_CASES
from lmfn_edge.metrics import chw_float_to_hwc_uint8, hwc_uint8_to_chw_float
from lmfn_edge.runtime.tiling import (
    Tile,
    argb_to_chw_float,
    blend_weights,
    chw_float_to_argb,
    float_to_uint8,
    plan_tiles,
    upscale_tiled,
)

PLAN_CASES = [*GOLDEN_PLAN_CASES, (65, 64, 64, 8), (480, 640, 128, 16)]


def nearest(x: np.ndarray, scale: int) -> np.ndarray:
    return np.repeat(np.repeat(x, scale, axis=2), scale, axis=3)


def box3_nearest(x: np.ndarray, scale: int) -> np.ndarray:
    """3x3 mean with zero padding (as a conv net pads), then nearest upsampling."""
    c = x[0]
    h, w = c.shape[1:]
    p = np.pad(c, ((0, 0), (1, 1), (1, 1)))
    blurred = sum(p[:, dy : dy + h, dx : dx + w] for dy in range(3) for dx in range(3)) / 9
    return nearest(blurred[None].astype(np.float32), scale)


def whole_image(run, image: np.ndarray) -> np.ndarray:
    return chw_float_to_hwc_uint8(run(hwc_uint8_to_chw_float(image)[None])[0])


def random_image(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


# --- plan -------------------------------------------------------------------------------------


@pytest.mark.parametrize("height,width,tile,overlap", PLAN_CASES)
def test_plan_covers_every_pixel_with_full_tiles(height, width, tile, overlap):
    tiles = plan_tiles(height, width, tile, overlap)
    cover = np.zeros((height, width), dtype=int)
    for t in tiles:
        assert 0 <= t.y0 < t.y1 <= height and 0 <= t.x0 < t.x1 <= width
        assert t.height == min(tile, height) and t.width == min(tile, width)
        cover[t.y0 : t.y1, t.x0 : t.x1] += 1
    assert cover.min() >= 1
    assert len(set(tiles)) == len(tiles)
    ys = sorted({t.y0 for t in tiles})
    xs = sorted({t.x0 for t in tiles})
    assert ys[0] == 0 and xs[0] == 0
    assert max(t.y1 for t in tiles) == height and max(t.x1 for t in tiles) == width
    # Consecutive starts advance by the stride, except the clamped last one (shorter step).
    for starts in (ys, xs):
        steps = np.diff(starts)
        assert np.all(steps[:-1] == tile - overlap) and np.all(steps <= tile - overlap)
    # Row-major order.
    assert tiles == sorted(tiles, key=lambda t: (t.y0, t.x0))


def test_plan_exact_small_case():
    assert plan_tiles(10, 7, 4, 1) == [
        Tile(0, 0, 4, 4), Tile(0, 3, 4, 7),
        Tile(3, 0, 7, 4), Tile(3, 3, 7, 7),
        Tile(6, 0, 10, 4), Tile(6, 3, 10, 7),
    ]


def test_plan_small_image_is_one_tile_of_image_size():
    assert plan_tiles(1, 1, 64, 8) == [Tile(0, 0, 1, 1)]
    assert plan_tiles(20, 30, 64, 8) == [Tile(0, 0, 20, 30)]
    assert [(t.y0, t.y1) for t in plan_tiles(20, 100, 64, 8)] == [(0, 20), (0, 20)]


@pytest.mark.parametrize(
    "args,message",
    [
        ((10, 10, 0, 0), "tile"),
        ((10, 10, 4, -1), "overlap"),
        ((10, 10, 4, 4), "overlap must be < tile"),
        ((0, 10, 4, 1), "height"),
        ((10, 0, 4, 1), "width"),
        ((10, 10, 4.0, 1), "tile must be an int"),
        ((10, 10, True, 0), "tile must be an int"),
    ],
)
def test_plan_rejects_bad_arguments(args, message):
    with pytest.raises(ValueError, match=message):
        plan_tiles(*args)


# --- weights ----------------------------------------------------------------------------------


def test_blend_weights_values():
    w = blend_weights(8, 3, at_start=False, at_end=False)
    assert w.dtype == np.float32
    expected = np.float32([1, 2, 3, 4, 4, 3, 2, 1]) / np.float32(4)
    np.testing.assert_array_equal(w, np.minimum(expected, 1))
    np.testing.assert_array_equal(blend_weights(8, 3, True, True), np.ones(8, np.float32))
    np.testing.assert_array_equal(blend_weights(5, 0, False, False), np.ones(5, np.float32))
    np.testing.assert_array_equal(blend_weights(4, 2, True, False)[:2], [1, 1])


@pytest.mark.parametrize("length,overlap", [(1, 0), (1, 5), (3, 5), (8, 3), (16, 15), (256, 32)])
@pytest.mark.parametrize("at_start", [False, True])
@pytest.mark.parametrize("at_end", [False, True])
def test_blend_weights_positive_and_bounded(length, overlap, at_start, at_end):
    w = blend_weights(length, overlap, at_start, at_end)
    assert w.shape == (length,)
    assert np.all(w > 0) and np.all(w <= 1)


@pytest.mark.parametrize("tile_out,overlap_out", [(8, 3), (32, 8), (6, 5)])
def test_neighbour_weights_sum_to_one_over_nominal_overlap(tile_out, overlap_out):
    a = blend_weights(tile_out, overlap_out, at_start=True, at_end=False)
    b = blend_weights(tile_out, overlap_out, at_start=False, at_end=True)
    np.testing.assert_allclose(a[-overlap_out:] + b[:overlap_out], 1.0, rtol=0, atol=1e-6)


def test_blend_weights_reject_bad_arguments():
    with pytest.raises(ValueError, match="tile_len_out"):
        blend_weights(0, 1, False, False)
    with pytest.raises(ValueError, match="overlap_out"):
        blend_weights(4, -1, False, False)


# --- tiled upscale ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "h,w,scale,tile,overlap",
    [(37, 53, 2, 16, 4), (40, 40, 3, 12, 5), (64, 48, 4, 16, 0), (9, 70, 2, 16, 6), (5, 3, 2, 8, 2)],
)
def test_nearest_upsampling_is_reproduced_bit_exactly(h, w, scale, tile, overlap):
    image = random_image(h, w)
    run = lambda x: nearest(x, scale)  # noqa: E731
    tiled = upscale_tiled(run, image, scale, tile, overlap)
    assert tiled.dtype == np.uint8 and tiled.shape == (scale * h, scale * w, 3)
    np.testing.assert_array_equal(tiled, whole_image(run, image))
    np.testing.assert_array_equal(tiled, nearest(image.transpose(2, 0, 1)[None], scale)[0]
                                  .transpose(1, 2, 0))


def test_torch_tensor_output_is_accepted():
    image = random_image(20, 30)
    run = lambda x: torch.nn.functional.interpolate(torch.from_numpy(x), scale_factor=2)  # noqa: E731
    np.testing.assert_array_equal(upscale_tiled(run, image, 2, 8, 2),
                                  upscale_tiled(lambda x: nearest(x, 2), image, 2, 8, 2))


def test_small_image_is_edge_padded_to_tile_and_cropped():
    image = random_image(5, 40)
    shapes = []

    def run(x):
        shapes.append(x.shape)
        return nearest(x, 2)

    out = upscale_tiled(run, image, 2, tile=16, overlap=4)
    assert set(shapes) == {(1, 3, 16, 16)}
    np.testing.assert_array_equal(out, whole_image(lambda x: nearest(x, 2), image))

    shapes.clear()
    upscale_tiled(run, image, 2, tile=16, overlap=4, pad_to_tile=False)
    assert set(shapes) == {(1, 3, 5, 16)}


def seam_mask(height, width, scale, tile, overlap, radius):
    """Output pixels within `radius` LR pixels of an interior edge of some covering tile."""
    mask = np.zeros((scale * height, scale * width), dtype=bool)
    band = scale * radius
    for t in plan_tiles(height, width, tile, overlap):
        ys, xs = slice(scale * t.y0, scale * t.y1), slice(scale * t.x0, scale * t.x1)
        if t.y0 > 0:
            mask[scale * t.y0 : scale * t.y0 + band, xs] = True
        if t.y1 < height:
            mask[scale * t.y1 - band : scale * t.y1, xs] = True
        if t.x0 > 0:
            mask[ys, scale * t.x0 : scale * t.x0 + band] = True
        if t.x1 < width:
            mask[ys, scale * t.x1 - band : scale * t.x1] = True
    return mask


@pytest.mark.parametrize("overlap", [1, 4, 8])
def test_local_filter_seams_are_confined_and_damped(overlap):
    scale, tile, radius = 2, 24, 1
    image = random_image(70, 90, seed=1)
    run = lambda x: box3_nearest(x, scale)  # noqa: E731
    err = np.abs(upscale_tiled(run, image, scale, tile, overlap).astype(int)
                 - whole_image(run, image))
    # Away from tile edges every covering tile saw the same pixels: equal up to float rounding.
    assert err[~seam_mask(70, 90, scale, tile, overlap, radius)].max() <= 1
    # Near an edge a wrong tile pixel carries at most (scale*radius)/(scale*overlap+1) of the
    # blend per axis, and zero padding is wrong by at most 5/9 of the range (a corner).
    share = 2 * (scale * radius) / (scale * overlap + 1)
    assert err.max() <= np.ceil(255 * 5 / 9 * min(share, 1.0))
    no_overlap = np.abs(upscale_tiled(run, image, scale, tile, 0).astype(int)
                        - whole_image(run, image))
    assert err.mean() < no_overlap.mean()


def test_run_output_of_wrong_shape_is_rejected():
    with pytest.raises(ValueError, match="expected \\(1, 3, 32, 32\\)"):
        upscale_tiled(lambda x: nearest(x, 3), random_image(16, 16), 2, 16, 4)


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"scale": 0}, "scale"),
        ({"tile": 0}, "tile"),
        ({"overlap": 16}, "overlap"),
        ({"image": np.zeros((8, 8), np.uint8)}, "HxWx3 uint8"),
        ({"image": np.zeros((8, 8, 3), np.float32)}, "HxWx3 uint8"),
    ],
)
def test_upscale_rejects_bad_arguments(kwargs, message):
    args = {"run": lambda x: nearest(x, 2), "image": random_image(8, 8), "scale": 2,
            "tile": 16, "overlap": 4, **kwargs}
    with pytest.raises(ValueError, match=message):
        upscale_tiled(**args)


def test_progress_bar_runs(capsys):
    upscale_tiled(lambda x: nearest(x, 2), random_image(20, 20), 2, 8, 2, progress=True)
    assert "9/9" in capsys.readouterr().err


def test_large_image_keeps_only_a_band_of_float_accumulators():
    height, width, scale, tile = 2000, 3000, 2, 256
    image = np.full((height, width, 3), 77, dtype=np.uint8)
    image[::7, ::5] = 200
    full_float_output = 3 * scale * height * scale * width * 4
    tracemalloc.start()
    try:
        out = upscale_tiled(lambda x: nearest(x, scale), image, scale, tile, 16)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # Beyond the uint8 output (a quarter of a float32 one) only the band of scale*tile rows of
    # float accumulators (3 channels + weight sum) and a few per-tile buffers are alive.
    band = 4 * (3 + 1) * scale * tile * scale * width
    tile_buffer = 4 * 3 * (scale * tile) ** 2
    assert peak < out.nbytes + band + 8 * tile_buffer
    assert peak < 0.6 * full_float_output
    np.testing.assert_array_equal(out[::977, ::1231], np.repeat(np.repeat(image, 2, 0), 2, 1)
                                  [::977, ::1231])


# --- pixel conversions ------------------------------------------------------------------------


def test_rounding_rule_and_clamping():
    k = np.arange(256)
    np.testing.assert_array_equal(float_to_uint8(k.astype(np.float32) / np.float32(255)), k)
    assert float_to_uint8(np.float32([-0.5, 1.7, np.nan, np.inf, -np.inf])).tolist() == [
        0, 255, 0, 255, 0]
    # Halfway between two levels rounds up.
    assert float_to_uint8(np.float32([0.5 / 255, 1.5 / 255])).tolist() == [1, 2]
    assert float_to_uint8(np.float32([0.49 / 255, 1.49 / 255])).tolist() == [0, 1]


def test_hwc_chw_round_trip():
    image = random_image(6, 9)
    chw = hwc_uint8_to_chw_float(image)
    assert chw.dtype == np.float32 and chw.shape == (3, 6, 9)
    assert chw.min() >= 0 and chw.max() <= 1
    np.testing.assert_array_equal(chw_float_to_hwc_uint8(chw), image)


def test_argb_round_trip_sets_alpha():
    rng = np.random.default_rng(3)
    argb = rng.integers(-(2**31), 2**31, (4, 5), dtype=np.int64).astype(np.int32)
    chw = argb_to_chw_float(argb)
    assert chw.dtype == np.float32 and chw.shape == (3, 4, 5)
    back = chw_float_to_argb(chw)
    assert back.dtype == np.int32
    np.testing.assert_array_equal(back, (argb.view(np.uint32) | np.uint32(0xFF000000))
                                  .view(np.int32))
    red = np.int32(np.uint32(0xFFFF0000).view(np.int32))
    np.testing.assert_array_equal(argb_to_chw_float(np.array([[red]]))[:, 0, 0], [1, 0, 0])
