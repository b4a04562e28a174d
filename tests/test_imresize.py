"""MATLAB bicubic imresize: expected values are worked out by hand from the Keys kernel, and
arbitrary shapes are checked against the independent MATLAB reference of tests/helpers.py.

Keys cubic (a = -0.5), |x| <= 1: 1.5|x|^3 - 2.5|x|^2 + 1;  1 < |x| <= 2: -0.5|x|^3 + 2.5|x|^2 - 4|x| + 2.
Values used below:
    k(0.25) = 1.5/64 - 2.5/16 + 1             =  0.8671875
    k(0.75) = 1.5*27/64 - 2.5*9/16 + 1        =  0.2265625
    k(1.25) = -0.5*125/64 + 2.5*25/16 - 5 + 2 = -0.0703125
    k(1.75) = -0.5*343/64 + 2.5*49/16 - 7 + 2 = -0.0234375
    k(|x| >= 2) = 0
Symmetric padding of a length-4 signal v1..v4: v0 = v1, v-1 = v2, v-2 = v3, v5 = v4, v6 = v3.
"""

import numpy as np
import pytest
from helpers import matlab_bicubic_down, matlab_bicubic_up, matlab_imresize, matlab_resize_matrix

from lmfn_edge.imresize import bicubic_downscale, bicubic_upscale, imresize, modcrop

# Downscale 4 -> 2 (scale 1/2): kernel width 4 / (1/2) = 8, weight(d) = k(d / 2) / 2.
# Output 1 samples u = 1/(1/2) + 0.5 * (1 - 2) = 1.5; taps j = -2..5 at distances 3.5..-3.5:
#   k(1.75), k(1.25), k(0.75), k(0.25), k(0.25), k(0.75), k(1.25), k(1.75), summing to 2.0,
#   so the normalised weights are those values / 2:
#   j:  -2 (v3)      -1 (v2)      0 (v1)      1 (v1)      2 (v2)      3 (v3)      4 (v4)      5 (v4)
#       -0.01171875  -0.03515625  0.11328125  0.43359375  0.43359375  0.11328125  -0.03515625 -0.01171875
# Collected per input sample:
#   v1: 0.11328125 + 0.43359375 = 0.546875
#   v2: -0.03515625 + 0.43359375 = 0.3984375
#   v3: -0.01171875 + 0.11328125 = 0.1015625
#   v4: -0.03515625 - 0.01171875 = -0.046875
# Output 2 (u = 3.5) is the mirror image: weights reversed.
DOWN_ROW = np.array([0.546875, 0.3984375, 0.1015625, -0.046875])
DOWN = np.stack([DOWN_ROW, DOWN_ROW[::-1]])
RAMP = np.array([10.0, 20.0, 30.0, 40.0])
# Upscale x2 of RAMP, worked out in test_upscale_1d_ramp_by_hand.
UP_RAMP = [9.0625, 11.796875, 17.265625, 22.5, 27.5, 32.734375, 38.203125, 40.9375]


def test_downscale_1d_ramp_by_hand():
    row = np.array([RAMP] * 4)
    # 10*0.546875 + 20*0.3984375 + 30*0.1015625 - 40*0.046875 = 14.609375, and by symmetry
    # 50 - 14.609375 = 35.390625.
    np.testing.assert_allclose(imresize(row, 0.5), [[14.609375, 35.390625]] * 2, atol=1e-12)


def test_downscale_4x4_impulse_by_hand():
    img = np.zeros((4, 4))
    img[0, 0] = 64.0
    # out[x, y] = 64 * w_x(v1) * w_y(v1):
    #   64 * 0.546875^2 = 19.140625, 64 * 0.546875 * -0.046875 = -1.640625, 64 * 0.046875^2 = 0.140625
    expected = [[19.140625, -1.640625], [-1.640625, 0.140625]]
    np.testing.assert_allclose(imresize(img, 0.5), expected, atol=1e-12)


def test_downscale_4x4_random_matches_weight_matrix():
    img = np.random.default_rng(0).uniform(0, 255, (4, 4))
    np.testing.assert_allclose(imresize(img, 0.5), DOWN @ img @ DOWN.T, atol=1e-10)


def test_upscale_1d_ramp_by_hand():
    row = RAMP[None]
    # Scale 2: kernel width 4, u = x/2 + 0.25 for x = 1..8.
    #   x=1, u=0.75: taps v-1..v2 at distances 1.75, 0.75, -0.25, -1.25:
    #        -0.0234375*v2 + 0.2265625*v1 + 0.8671875*v1 - 0.0703125*v2 = 9.0625
    #   x=2, u=1.25: -0.0703125*v1 + 0.8671875*v1 + 0.2265625*v2 - 0.0234375*v3 = 11.796875
    #   x=3, u=1.75: -0.0234375*v1 + 0.2265625*v1 + 0.8671875*v2 - 0.0703125*v3 = 17.265625
    #   x=4, u=2.25: -0.0703125*v1 + 0.8671875*v2 + 0.2265625*v3 - 0.0234375*v4 = 22.5
    # and x=5..8 mirror these around 25.
    np.testing.assert_allclose(imresize(row, 2)[0], UP_RAMP, atol=1e-12)


def test_reference_reproduces_the_hand_worked_weights():
    # tests/helpers.py's MATLAB reference, which other tests trust, against the values above.
    np.testing.assert_allclose(matlab_resize_matrix(4, 2, 0.5), DOWN, atol=1e-15)
    np.testing.assert_allclose(matlab_resize_matrix(4, 8, 2) @ RAMP, UP_RAMP, atol=1e-12)


@pytest.mark.parametrize("shape, scale", [((13, 17, 3), 0.5), ((13, 17), 1 / 3), ((30, 9), 0.25), ((11, 14), 0.7),
                                          ((7, 5, 3), 1.5), ((6, 9), 2), ((5, 8, 3), 3), ((3, 4), 4)])
def test_imresize_matches_the_independent_reference(shape, scale):
    img = np.random.default_rng(3).uniform(0, 255, shape)
    out = imresize(img, scale)
    np.testing.assert_allclose(out, matlab_imresize(img, scale, *out.shape[:2]), atol=1e-9)


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_uint8_helpers_match_the_independent_reference(scale):
    hr = np.random.default_rng(scale).integers(0, 256, (4 * scale + 3, 5 * scale + 1, 3), dtype=np.uint8)
    lr = bicubic_downscale(hr, scale)
    np.testing.assert_array_equal(lr, matlab_bicubic_down(hr, scale))
    np.testing.assert_array_equal(bicubic_upscale(lr, scale), matlab_bicubic_up(lr, scale))


@pytest.mark.parametrize("scale", [0.5, 1 / 3, 0.25, 0.7, 1.0, 1.5, 2, 3, 4])
def test_constant_image_stays_constant(scale):
    img = np.full((13, 17, 3), 123, dtype=np.uint8)
    out = imresize(img, scale)
    assert out.dtype == np.float64
    np.testing.assert_allclose(out, 123.0, atol=1e-10)


@pytest.mark.parametrize(
    "shape, scale, expected",
    [
        ((10, 7), 0.5, (5, 4)),  # ceil(3.5) = 4
        ((10, 7), 1 / 3, (4, 3)),  # ceil(3.33), ceil(2.33)
        ((12, 9, 3), 1 / 3, (4, 3, 3)),
        ((10, 7), 2, (20, 14)),
        ((5, 3), 1.5, (8, 5)),  # ceil(7.5), ceil(4.5)
        ((20, 20), 0.35, (7, 7)),  # 20 * 0.35 is 7.000000000000001 in floating point
        ((1, 1), 0.5, (1, 1)),
    ],
)
def test_output_size_is_ceil(shape, scale, expected):
    assert imresize(np.zeros(shape), scale).shape == expected


def test_channels_are_resized_independently():
    img = np.random.default_rng(1).uniform(0, 255, (9, 11, 3))
    out = imresize(img, 1 / 3)
    for c in range(3):
        np.testing.assert_allclose(out[..., c], imresize(img[..., c], 1 / 3), atol=1e-12)


def test_uint8_and_float_inputs_agree():
    img = np.random.default_rng(2).integers(0, 256, (12, 12, 3), dtype=np.uint8)
    np.testing.assert_allclose(imresize(img, 0.5), imresize(img.astype(np.float64), 0.5))


@pytest.mark.parametrize("scale", [0, -2, float("nan"), float("inf")])
def test_bad_scale_is_an_error(scale):
    with pytest.raises(ValueError, match="scale"):
        imresize(np.zeros((4, 4)), scale)


def test_bad_shape_is_an_error():
    with pytest.raises(ValueError, match="shape"):
        imresize(np.zeros((0, 4)), 2)
    with pytest.raises(ValueError, match="shape"):
        imresize(np.zeros(4), 2)


def test_modcrop_keeps_top_left():
    img = np.arange(13 * 10).reshape(13, 10)
    out = modcrop(img, 4)
    assert out.shape == (12, 8)
    np.testing.assert_array_equal(out, img[:12, :8])
    with pytest.raises(ValueError):
        modcrop(np.zeros((3, 8)), 4)
    with pytest.raises(ValueError, match="scale must be an integer"):
        modcrop(img, 2.5)
    with pytest.raises(ValueError, match="scale must be >= 1"):
        modcrop(img, 0)


def test_bicubic_downscale_modcrops_rounds_and_clips():
    hr = np.zeros((5, 6, 3), dtype=np.uint8)  # modcropped to 4x6
    hr[0, 0] = 255
    hr[4, :] = 200  # cropped away, must not leak in
    lr = bicubic_downscale(hr, 2)
    assert lr.shape == (2, 3, 3)
    assert lr.dtype == np.uint8
    # Rows (length 4 after the crop) weigh v1 by 0.546875 in output 1 and -0.046875 in output 2
    # (DOWN above). Columns (length 6): v1 is reached through taps j=0 (mirrored) and j=1, so
    # outputs 1 and 2 (u = 1.5, 3.5) weigh it 0.11328125 + 0.43359375 = 0.546875 and
    # -0.01171875 - 0.03515625 = -0.046875 as rows do; output 3 (u = 5.5) does not reach it.
    #   255 * 0.546875^2 = 76.26...       -> 76
    #   255 * 0.546875 * (negative) < 0   -> clipped to 0
    #   255 * 0.046875^2 = 0.5603...      -> 1
    assert lr[0, 0, 0] == 76
    assert lr[1, 0, 0] == 0
    assert lr[0, 1, 0] == 0
    assert lr[1, 1, 0] == 1
    assert lr[0, 2, 0] == 0


def test_bicubic_downscale_of_ramp_by_hand():
    hr = np.tile(np.array([10, 20, 30, 40], dtype=np.uint8), (4, 1))
    np.testing.assert_array_equal(bicubic_downscale(hr, 2), [[15, 35], [15, 35]])


def test_bicubic_upscale_rounds_halves_away_from_zero_like_matlab():
    lr = np.tile(np.array([10, 20, 30, 40], dtype=np.uint8), (2, 1))
    out = bicubic_upscale(lr, 2)
    assert out.shape == (4, 8)
    # 22.5 -> 23 and 27.5 -> 28 (numpy's round-half-to-even would give 22).
    np.testing.assert_array_equal(out[0], [9, 12, 17, 23, 28, 33, 38, 41])


def test_bicubic_upscale_shape_and_constant():
    lr = np.full((5, 7, 3), 77, dtype=np.uint8)
    out = bicubic_upscale(lr, 3)
    assert out.shape == (15, 21, 3)
    assert out.dtype == np.uint8
    assert np.all(out == 77)


def test_round_trip_of_smooth_image_is_close():
    y, x = np.mgrid[0:48, 0:48]
    hr = (127 + 100 * np.sin(x / 7.0) * np.cos(y / 9.0)).astype(np.uint8)
    restored = bicubic_upscale(bicubic_downscale(hr, 2), 2).astype(np.float64)
    assert np.abs(restored - hr)[4:-4, 4:-4].max() <= 6


def test_integer_helpers_reject_non_uint8_and_bad_scale():
    with pytest.raises(ValueError, match="uint8"):
        bicubic_downscale(np.zeros((8, 8)), 2)
    with pytest.raises(ValueError, match="uint8"):
        bicubic_upscale(np.zeros((8, 8)), 2)
    with pytest.raises(ValueError, match="scale must be >= 1"):
        bicubic_upscale(np.zeros((8, 8), np.uint8), 0)
