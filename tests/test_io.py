"""Image loading/saving and atomic writes: every mode becomes the RGB a viewer would show."""

import os
import warnings

import numpy as np
import pytest
from PIL import Image, ImageCms, features

from lmfn_edge import io
from lmfn_edge.files import atomic_write, atomic_write_bytes, atomic_write_text
from lmfn_edge.io import IMAGE_EXTENSIONS, ImageError, list_images, load_image, load_image_with_info, save_image


def _save(tmp_path, img, name, **kwargs):
    path = tmp_path / name
    img.save(path, **kwargs)
    return path


def _srgb_profile() -> bytes:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def _pixels(rgb_rows):
    return np.array(rgb_rows, dtype=np.uint8)


# ---- modes ------------------------------------------------------------------------------------


def test_rgb_png(tmp_path):
    arr = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    path = _save(tmp_path, Image.fromarray(arr), "rgb.png")
    out = load_image(path)
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, arr)


def test_mode_l(tmp_path):
    path = _save(tmp_path, Image.fromarray(np.array([[0, 77, 255]], np.uint8)), "l.png")
    np.testing.assert_array_equal(load_image(path), _pixels([[[0] * 3, [77] * 3, [255] * 3]]))


def test_mode_1(tmp_path):
    img = Image.new("1", (2, 1))
    img.putpixel((1, 0), 1)
    path = _save(tmp_path, img, "bilevel.png")
    assert Image.open(path).mode == "1"
    np.testing.assert_array_equal(load_image(path), _pixels([[[0] * 3, [255] * 3]]))


def test_mode_la_composites_on_white(tmp_path):
    img = Image.new("LA", (3, 1))
    img.putdata([(100, 255), (100, 0), (100, 128)])
    path = _save(tmp_path, img, "la.png")
    assert Image.open(path).mode == "LA"
    # Half alpha: 100 * 128/255 + 255 * 127/255 = 45185/255 = 177.2 -> 177.
    np.testing.assert_array_equal(load_image(path), _pixels([[[100] * 3, [255] * 3, [177] * 3]]))


def test_mode_rgba_composites_on_white(tmp_path):
    img = Image.new("RGBA", (3, 1))
    img.putdata([(10, 20, 30, 255), (10, 20, 30, 0), (0, 0, 0, 51)])
    path = _save(tmp_path, img, "rgba.png")
    # alpha 51 = 20%: 0 * 0.2 + 255 * 0.8 = 204.
    np.testing.assert_array_equal(
        load_image(path), _pixels([[[10, 20, 30], [255, 255, 255], [204, 204, 204]]])
    )


def test_mode_p(tmp_path):
    img = Image.new("P", (2, 1))
    img.putpalette([255, 0, 0, 0, 0, 255] + [0] * (256 * 3 - 6))
    img.putpixel((1, 0), 1)
    path = _save(tmp_path, img, "p.png")
    assert Image.open(path).mode == "P"
    np.testing.assert_array_equal(load_image(path), _pixels([[[255, 0, 0], [0, 0, 255]]]))


def test_mode_p_with_transparent_index_is_white(tmp_path):
    img = Image.new("P", (2, 1))
    img.putpalette([255, 0, 0, 0, 0, 255] + [0] * (256 * 3 - 6))
    img.putpixel((1, 0), 1)
    path = _save(tmp_path, img, "p_trans.png", transparency=1)
    with Image.open(path) as reopened:
        assert reopened.mode == "P" and "transparency" in reopened.info
    np.testing.assert_array_equal(load_image(path), _pixels([[[255, 0, 0], [255, 255, 255]]]))


@pytest.mark.parametrize(
    "dtype, name, mode",
    [("<u2", "g16.png", "I;16"), (">u2", "g16b.tif", "I;16B"), (np.int32, "g32.tif", "I")],
)
def test_16_bit_modes_scale_to_8_bit(tmp_path, dtype, name, mode):
    values = np.array([[65535, 32768, 0, 257]], dtype=dtype)
    path = _save(tmp_path, Image.fromarray(values), name)
    assert Image.open(path).mode == mode
    # 65535 -> 255, 32768 * 255/65535 = 127.5019 -> 128, 257 * 255/65535 = 1 (not clipped to 255).
    np.testing.assert_array_equal(load_image(path)[0, :, 0], [255, 128, 0, 1])


def test_mode_f(tmp_path):
    values = np.array([[0.0, 127.6, 300.0, -5.0]], dtype=np.float32)
    path = _save(tmp_path, Image.fromarray(values), "f.tif")
    assert Image.open(path).mode == "F"
    np.testing.assert_array_equal(load_image(path)[0, :, 0], [0, 128, 255, 0])


def test_mode_cmyk(tmp_path):
    img = Image.new("CMYK", (3, 1))
    img.putdata([(0, 0, 0, 0), (255, 0, 0, 0), (0, 0, 0, 255)])
    path = _save(tmp_path, img, "cmyk.tif")
    assert Image.open(path).mode == "CMYK"
    # No ink is white, full cyan removes red, full black is black.
    np.testing.assert_array_equal(
        load_image(path), _pixels([[[255, 255, 255], [0, 255, 255], [0, 0, 0]]])
    )


def test_one_by_one(tmp_path):
    path = _save(tmp_path, Image.new("RGB", (1, 1), (1, 2, 3)), "one.png")
    np.testing.assert_array_equal(load_image(path), _pixels([[[1, 2, 3]]]))


def test_exif_orientation_6_rotates_clockwise(tmp_path):
    # Stored 2 rows x 3 columns; orientation 6 means "rotate 90 degrees clockwise to display",
    # so stored row 0 becomes the rightmost column and stored column 0 the top row.
    stored = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3) * 10
    exif = Image.Exif()
    exif[0x0112] = 6
    path = _save(tmp_path, Image.fromarray(stored), "rotated.png", exif=exif)
    out = load_image(path)
    assert out.shape == (3, 2, 3)
    np.testing.assert_array_equal(out[0, 1], stored[0, 0])  # top-left -> top-right
    np.testing.assert_array_equal(out[0, 0], stored[1, 0])  # bottom-left -> top-left
    np.testing.assert_array_equal(out[2, 1], stored[0, 2])  # top-right -> bottom-right
    np.testing.assert_array_equal(out, np.rot90(stored, k=-1))


# ---- errors -----------------------------------------------------------------------------------


def _assert_image_error(path, match):
    with pytest.raises(ImageError, match=match) as info:
        load_image(path)
    message = str(info.value)
    assert str(path) in message
    assert "\n" not in message


def test_missing_file(tmp_path):
    _assert_image_error(tmp_path / "nope.png", "no such file")


def test_directory(tmp_path):
    _assert_image_error(tmp_path, "directory")


def test_not_an_image(tmp_path):
    path = tmp_path / "text.png"
    path.write_bytes(b"this is not an image")
    _assert_image_error(path, "not an image")


def _noise_bytes(tmp_path, name):
    arr = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    path = _save(tmp_path, Image.fromarray(arr), name)
    return path.read_bytes()


@pytest.mark.parametrize("name", ["trunc.png", "trunc.jpg"])
def test_truncated_file(tmp_path, name):
    data = _noise_bytes(tmp_path, name)
    path = tmp_path / name
    path.write_bytes(data[: len(data) // 2])
    _assert_image_error(path, "corrupt or truncated")


def test_corrupt_png_data(tmp_path):
    data = bytearray(_noise_bytes(tmp_path, "corrupt.png"))
    idat = data.index(b"IDAT") + 8
    data[idat : idat + 200] = bytes(200)  # zeroed compressed data with a now-wrong CRC
    path = tmp_path / "corrupt.png"
    path.write_bytes(bytes(data))
    _assert_image_error(path, "corrupt or truncated")


def test_max_pixels(tmp_path):
    path = _save(tmp_path, Image.new("RGB", (10, 10)), "big.png")
    assert load_image(path, max_pixels=100).shape == (10, 10, 3)
    _assert_image_error_with(path, "exceeds the limit of 99 pixels", max_pixels=99)


def _assert_image_error_with(path, match, **kwargs):
    with pytest.raises(ImageError, match=match) as info:
        load_image(path, **kwargs)
    assert str(path) in str(info.value)


def test_pillow_decompression_bomb_error_becomes_image_error(tmp_path, monkeypatch):
    path = _save(tmp_path, Image.new("RGB", (10, 10)), "bomb.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 20)  # 100 > 2 * 20: Pillow raises
    _assert_image_error_with(path, "too large")


def test_pillow_decompression_bomb_warning_does_not_escape(tmp_path, monkeypatch):
    path = _save(tmp_path, Image.new("RGB", (10, 10)), "warn.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 60)  # 60 < 100 <= 120: Pillow warns
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_image(path).shape == (10, 10, 3)
        _assert_image_error_with(path, "exceeds", max_pixels=50)


# ---- saving -----------------------------------------------------------------------------------


@pytest.mark.parametrize("ext", [".png", ".PNG", ".tif", ".tiff", ".bmp"])
def test_lossless_save_round_trip(tmp_path, ext):
    arr = np.random.default_rng(1).integers(0, 256, (6, 5, 3), dtype=np.uint8)
    path = tmp_path / f"out{ext}"
    save_image(path, arr)
    np.testing.assert_array_equal(load_image(path), arr)
    assert os.listdir(tmp_path) == [path.name]


@pytest.mark.parametrize("ext", [".jpg", ".jpeg", ".webp"])
def test_lossy_save_is_high_quality(tmp_path, ext):
    if ext == ".webp" and not features.check("webp"):
        pytest.skip("Pillow built without WebP")
    y, x = np.mgrid[0:32, 0:32]
    arr = np.stack([x * 8, y * 8, (x + y) * 4], axis=-1).astype(np.uint8)
    path = tmp_path / f"out{ext}"
    save_image(path, arr)
    diff = np.abs(load_image(path).astype(int) - arr).mean()
    assert diff < 3


def test_unknown_extension_writes_nothing(tmp_path):
    with pytest.raises(ImageError, match=r"out\.gif.*unsupported extension"):
        save_image(tmp_path / "out.gif", np.zeros((2, 2, 3), np.uint8))
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("bad", [np.zeros((2, 2), np.uint8), np.zeros((2, 2, 3), np.float32)])
def test_bad_array_writes_nothing(tmp_path, bad):
    with pytest.raises(ImageError, match="HxWx3 uint8"):
        save_image(tmp_path / "out.png", bad)
    assert os.listdir(tmp_path) == []


def test_failed_save_keeps_existing_file(tmp_path, monkeypatch):
    path = tmp_path / "keep.png"
    path.write_bytes(b"old")

    def fail(self, fp, *args, **kwargs):
        fp.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(Image.Image, "save", fail)
    with pytest.raises(ImageError, match="keep.png.*disk full"):
        save_image(path, np.zeros((2, 2, 3), np.uint8))
    assert path.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["keep.png"]


def test_save_creates_missing_folders_and_refuses_a_file_in_the_way(tmp_path):
    save_image(tmp_path / "missing" / "deeper" / "out.png", np.zeros((2, 2, 3), np.uint8))
    assert load_image(tmp_path / "missing" / "deeper" / "out.png").shape == (2, 2, 3)
    (tmp_path / "file").write_text("x")
    with pytest.raises(ImageError, match="cannot write image"):
        save_image(tmp_path / "file" / "out.png", np.zeros((2, 2, 3), np.uint8))


@pytest.mark.parametrize("ext", [".png", ".jpg", ".webp", ".tif"])
def test_icc_profile_round_trip(tmp_path, ext):
    if ext == ".webp" and not features.check("webp"):
        pytest.skip("Pillow built without WebP")
    profile = _srgb_profile()
    path = tmp_path / f"icc{ext}"
    save_image(path, np.full((4, 4, 3), 128, np.uint8), icc_profile=profile)
    _, info = load_image_with_info(path)
    assert info["icc_profile"] == profile


def test_info_without_profile(tmp_path):
    path = tmp_path / "plain.png"
    save_image(path, np.zeros((2, 2, 3), np.uint8))
    _, info = load_image_with_info(path)
    assert info == {"format": "PNG", "mode": "RGB", "icc_profile": None}


def test_non_rgb_profile_is_dropped(tmp_path):
    # A Lab profile does not describe the RGB array handed back, so it must not be reused.
    lab = ImageCms.ImageCmsProfile(ImageCms.createProfile("LAB")).tobytes()
    assert lab[16:20] == b"Lab "
    path = _save(tmp_path, Image.new("RGB", (2, 2)), "lab.png", icc_profile=lab)
    assert load_image_with_info(path)[1]["icc_profile"] is None


# ---- atomic writes ----------------------------------------------------------------------------


def test_atomic_write_replaces_only_on_success(tmp_path):
    path = tmp_path / "data.bin"
    path.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with atomic_write(path) as f:
            f.write(b"new but unfinished")
            raise RuntimeError("boom")
    assert path.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["data.bin"]
    with atomic_write(path) as f:
        f.write(b"new")
        assert path.read_bytes() == b"old"  # not visible before the block ends
    assert path.read_bytes() == b"new"
    assert os.listdir(tmp_path) == ["data.bin"]


def test_atomic_write_text_and_bytes(tmp_path):
    atomic_write_text(tmp_path / "a.json", '{"café": 1}\n')
    assert (tmp_path / "a.json").read_text(encoding="utf-8") == '{"café": 1}\n'
    atomic_write_bytes(tmp_path / "b.bin", b"\x00\x01")
    assert (tmp_path / "b.bin").read_bytes() == b"\x00\x01"
    assert sorted(os.listdir(tmp_path)) == ["a.json", "b.bin"]


def test_atomic_write_uses_normal_permissions(tmp_path):
    if os.name != "posix":
        pytest.skip("POSIX permissions")
    umask = os.umask(0o022)
    try:
        atomic_write_bytes(tmp_path / "perm.bin", b"x")
    finally:
        os.umask(umask)
    assert (tmp_path / "perm.bin").stat().st_mode & 0o777 == 0o644


def test_atomic_write_rejects_non_write_modes(tmp_path):
    for mode in ("r", "a", "rb", "ab"):
        with pytest.raises(ValueError, match="'w' mode"):
            with atomic_write(tmp_path / "x", mode):
                pass
    assert os.listdir(tmp_path) == []


# ---- listing ----------------------------------------------------------------------------------


def test_list_images(tmp_path):
    for name in ["b.PNG", "a.jpg", "c.Tiff", "d.webp", "e.bmp", "f.jpeg", "notes.txt", ".hidden.png"]:
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "folder.png").mkdir()
    assert [p.name for p in list_images(tmp_path)] == [
        "a.jpg",
        "b.PNG",
        "c.Tiff",
        "d.webp",
        "e.bmp",
        "f.jpeg",
    ]


def test_list_images_of_missing_folder(tmp_path):
    with pytest.raises(ImageError, match="not a folder"):
        list_images(tmp_path / "missing")


def test_extensions_are_lowercase_with_dot():
    assert all(e.startswith(".") and e == e.lower() for e in IMAGE_EXTENSIONS)
    assert set(IMAGE_EXTENSIONS) == set(io._SAVE_FORMATS)


def test_lossless_webp_keeps_every_pixel_and_jpeg_refuses(tmp_path):
    if not features.check("webp"):
        pytest.skip("Pillow built without WebP")
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (17, 23, 3), dtype=np.uint8)
    save_image(tmp_path / "a.webp", img, lossless=True)
    np.testing.assert_array_equal(load_image(tmp_path / "a.webp"), img)
    with pytest.raises(ImageError, match="cannot store pixels losslessly"):
        save_image(tmp_path / "a.jpg", img, lossless=True)
