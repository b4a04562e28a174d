"""PSNR/SSIM follow the BasicSR benchmark protocol; expected values are worked out by hand."""

import math

import numpy as np
import pytest
import torch

from lmfn_edge.metrics import float_to_uint8, psnr, rgb_to_y, ssim, tensor_to_uint8


def _random_rgb(shape=(32, 40, 3), low=0, high=256, seed=0):
    return np.random.default_rng(seed).integers(low, high, shape, dtype=np.uint8)


def _plus_minus(img, d):
    """img with +d and -d alternating in a checkerboard, so every pixel is off by exactly d."""
    rows, cols = np.indices(img.shape[:2])
    sign = np.where((rows + cols) % 2 == 0, 1, -1)
    if img.ndim == 3:
        sign = sign[..., None]
    return (img.astype(np.int16) + sign * d).astype(np.uint8)


@pytest.mark.parametrize(
    "rgb, expected",
    [
        ((255, 255, 255), 235.0),  # 16 + 65.481 + 128.553 + 24.966
        ((0, 0, 0), 16.0),
        ((255, 0, 0), 81.481),  # 16 + 65.481
        ((0, 255, 0), 144.553),  # 16 + 128.553
        ((0, 0, 255), 40.966),  # 16 + 24.966
    ],
)
def test_rgb_to_y_pure_colours(rgb, expected):
    y = rgb_to_y(np.array([[rgb]], dtype=np.uint8))
    assert y.shape == (1, 1)
    assert y.dtype == np.float64
    assert y[0, 0] == pytest.approx(expected, abs=1e-12)


def test_rgb_to_y_is_not_rounded():
    # 16 + 65.481 * 100/255 + 128.553 * 50/255 + 24.966 * 25/255
    expected = 16 + (6548.1 + 6427.65 + 624.15) / 255
    assert rgb_to_y(np.array([[[100, 50, 25]]], dtype=np.uint8))[0, 0] == pytest.approx(
        expected, abs=1e-12
    )


def test_rgb_to_y_rejects_non_rgb():
    with pytest.raises(ValueError, match="HxWx3"):
        rgb_to_y(np.zeros((4, 4), dtype=np.uint8))


def test_psnr_of_identical_images_is_inf():
    img = _random_rgb()
    assert psnr(img, img.copy()) == math.inf
    assert psnr(img, img.copy(), y_channel=False) == math.inf


@pytest.mark.parametrize("d", [1, 5, 10])
def test_psnr_rgb_off_by_d_everywhere(d):
    a = _random_rgb(low=10, high=246)
    b = _plus_minus(a, d)
    # MSE is d^2 on every channel.
    assert psnr(a, b, y_channel=False) == pytest.approx(10 * math.log10(255**2 / d**2), abs=1e-9)


@pytest.mark.parametrize("d", [1, 5, 10])
def test_psnr_y_off_by_d_everywhere(d):
    a = _random_rgb(low=10, high=246)
    b = _plus_minus(a, d)
    # All three channels move by the same +-d, so Y moves by (65.481+128.553+24.966) d/255
    # = 219 d/255.
    dy = 219 * d / 255
    assert psnr(a, b) == pytest.approx(10 * math.log10(255**2 / dy**2), abs=1e-9)


def test_psnr_gray_input_ignores_y_channel():
    a = _random_rgb((20, 20), low=10, high=246)
    b = _plus_minus(a, 3)
    assert psnr(a, b) == pytest.approx(10 * math.log10(255**2 / 9), abs=1e-9)


def test_crop_border_removes_exactly_that_border():
    a = _random_rgb((40, 40, 3), low=10, high=246)
    b = a.copy()
    border = 4
    mask = np.ones((40, 40), dtype=bool)
    mask[border:-border, border:-border] = False
    b[mask] = _plus_minus(a, 7)[mask]
    assert psnr(a, b, crop_border=border) == math.inf
    assert psnr(a, b, crop_border=border - 1) < math.inf
    assert ssim(a, b, crop_border=border) == pytest.approx(1.0, abs=1e-12)
    assert ssim(a, b, crop_border=border - 1) < 1.0


def test_crop_border_psnr_value():
    # Error of d=2 only in a centre 10x10 square of a 30x30 gray image, crop 5 -> 20x20 kept:
    # MSE = 100 * 4 / 400 = 1.
    a = np.full((30, 30), 100, dtype=np.uint8)
    b = a.copy()
    b[10:20, 10:20] += 2
    assert psnr(a, b, crop_border=5) == pytest.approx(10 * math.log10(255**2), abs=1e-9)


def test_ssim_of_identical_images_is_one():
    img = _random_rgb()
    assert ssim(img, img.copy()) == pytest.approx(1.0, abs=1e-12)
    assert ssim(img, img.copy(), y_channel=False) == pytest.approx(1.0, abs=1e-12)


def test_ssim_drops_with_noise():
    rng = np.random.default_rng(1)
    img = _random_rgb((48, 48, 3), low=40, high=216)
    values = []
    for sigma in (2, 8, 32):
        noisy = np.clip(img + rng.normal(0, sigma, img.shape), 0, 255).astype(np.uint8)
        values.append(ssim(img, noisy))
    assert 1.0 > values[0] > values[1] > values[2]


def test_ssim_of_constant_images_matches_formula():
    # No variance, so only the luminance term is left: (2 m1 m2 + C1) / (m1^2 + m2^2 + C1).
    c1 = (0.01 * 255) ** 2
    expected = (2 * 100 * 110 + c1) / (100**2 + 110**2 + c1)
    a = np.full((16, 16), 100, dtype=np.uint8)
    b = np.full((16, 16), 110, dtype=np.uint8)
    assert ssim(a, b) == pytest.approx(expected, rel=1e-10)


def test_ssim_matches_scikit_image_gaussian_ssim():
    # scikit-image with these options is an independent implementation of Wang's SSIM.
    metrics = pytest.importorskip("skimage.metrics")
    rng = np.random.default_rng(2)
    a = rng.integers(0, 256, (40, 37), dtype=np.uint8)
    b = np.clip(a + rng.normal(0, 20, a.shape), 0, 255).astype(np.uint8)
    expected = metrics.structural_similarity(
        a.astype(np.float64),
        b.astype(np.float64),
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
        data_range=255,
    )
    assert ssim(a, b) == pytest.approx(expected, abs=1e-10)


def test_ssim_rgb_without_y_is_mean_over_channels():
    a = _random_rgb((24, 24, 3), seed=3)
    b = _random_rgb((24, 24, 3), seed=4)
    per_channel = [ssim(a[..., c], b[..., c]) for c in range(3)]
    assert ssim(a, b, y_channel=False) == pytest.approx(np.mean(per_channel), abs=1e-12)


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="shapes differ"):
        psnr(np.zeros((8, 8, 3), np.uint8), np.zeros((8, 9, 3), np.uint8))
    with pytest.raises(ValueError, match="shapes differ"):
        ssim(np.zeros((16, 16, 3), np.uint8), np.zeros((16, 16), np.uint8))


def test_crop_larger_than_image_is_an_error():
    img = np.zeros((8, 8, 3), np.uint8)
    with pytest.raises(ValueError, match="crop_border=4"):
        psnr(img, img, crop_border=4)


def test_ssim_needs_an_11x11_window_after_crop():
    img = np.zeros((20, 20, 3), np.uint8)
    assert ssim(img, img, crop_border=4) == pytest.approx(1.0)  # 12x12 left
    with pytest.raises(ValueError, match="11x11"):
        ssim(img, img, crop_border=5)  # 10x10 left
    with pytest.raises(ValueError, match="11x11"):
        ssim(np.zeros((10, 30), np.uint8), np.zeros((10, 30), np.uint8))


def test_bad_layouts_are_errors():
    with pytest.raises(ValueError):
        psnr(np.zeros((8, 8, 4), np.uint8), np.zeros((8, 8, 4), np.uint8))
    with pytest.raises(ValueError):
        psnr(np.zeros((8, 8), np.uint8), np.zeros((8, 8), np.uint8), crop_border=-1)


# x * 255 is exactly k + 0.5 in float32 for these: MATLAB's uint8() rounds them up, where
# round-half-to-even (torch.round, np.round) would give 0, 2, 2, 254 and 254.
HALVES = [(0.5, 1), (1.5, 2), (2.5, 3), (253.5, 254), (254.5, 255)]


@pytest.mark.parametrize("half, expected", HALVES)
def test_float_to_uint8_rounds_exact_halves_away_from_zero(half, expected):
    x = np.float32(half / 255)
    assert x * np.float32(255) == np.float32(half)  # really a half, not just below or above
    assert float_to_uint8(np.array([x])).tolist() == [expected]


def test_float_to_uint8_clamps_nan_and_inf():
    x = np.array([-0.5, 1.7, np.nan, np.inf, -np.inf, -0.0, 1.0, 0.49 / 255], dtype=np.float32)
    out = float_to_uint8(x)
    assert out.dtype == np.uint8
    assert out.tolist() == [0, 255, 0, 255, 0, 0, 255, 0]


def test_float_to_uint8_overwrite_gives_the_same_result():
    x = np.random.default_rng(5).uniform(-0.2, 1.2, (3, 7, 9)).astype(np.float32)
    x[0, 0, :len(HALVES)] = [h / 255 for h, _ in HALVES]
    kept = x.copy()
    expected = float_to_uint8(x)
    np.testing.assert_array_equal(x, kept)  # the default leaves the input alone
    np.testing.assert_array_equal(float_to_uint8(x, overwrite=True), expected)


def test_the_tiler_uses_the_same_rounding():
    from lmfn_edge.runtime import tiling

    assert tiling.float_to_uint8 is float_to_uint8


def test_tensor_to_uint8_clamps_scales_rounds_and_permutes():
    t = torch.zeros(1, 3, 2, 3)
    t[0, 0, 0, 0] = -0.1  # clamped to 0
    t[0, 0, 0, 1] = 1.2  # clamped to 255
    t[0, 0, 0, 2] = 2.5 / 255  # an exact half: 3, where half-to-even gives 2
    t[0, 1, 1, 0] = 0.5 / 255  # 1, where half-to-even gives 0
    t[0, 2, 1, 2] = 100.4 / 255  # -> 100
    t[0, 1, 0, 1] = float("nan")  # -> 0
    t[0, 2, 0, 1] = float("inf")  # -> 255
    out = tensor_to_uint8(t)
    assert out.shape == (2, 3, 3)
    assert out.dtype == np.uint8
    assert out.flags.c_contiguous
    assert out[0, 0, 0] == 0
    assert out[0, 1, 0] == 255
    assert out[0, 2, 0] == 3
    assert out[1, 0, 1] == 1
    assert out[1, 2, 2] == 100
    assert out[0, 1, 2] == 255
    assert int(out.sum()) == 0 + 255 + 3 + 1 + 100 + 0 + 255
    np.testing.assert_array_equal(tensor_to_uint8(t[0]), out)
    np.testing.assert_array_equal(tensor_to_uint8(t.to(torch.float64).requires_grad_()), out)


def test_tensor_to_uint8_rejects_other_shapes():
    for shape in [(2, 3, 4, 4), (4, 4, 4), (4, 4)]:
        with pytest.raises(ValueError, match="3xHxW"):
            tensor_to_uint8(torch.zeros(shape))
