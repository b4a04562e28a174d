"""Runtime and the upscale CLI: tiled upscaling of real photos, any backend, clear errors."""


import numpy as np
import pytest
import torch
from helpers import OVERLAP, TILE
from PIL import Image

from lmfn_edge.manifest import ManifestError
from lmfn_edge.metrics import psnr
from lmfn_edge.model.weights import save_weights
from lmfn_edge.runtime import BackendError, Upscaler, eager_backend, load_backend
from lmfn_edge.upscale import main as upscale_main


@pytest.fixture(scope="module")
def photo():
    from skimage.data import chelsea

    return np.ascontiguousarray(chelsea()[:96, :120])  # a real photograph, cropped for speed


@pytest.fixture(scope="module")
def model(fixed_pte):
    return fixed_pte[0]


def test_tiled_matches_whole_image_eager(photo, model):
    whole = Upscaler(eager_backend(model), tile=0).upscale(photo)
    tiled = Upscaler(eager_backend(model), tile=48, overlap=16).upscale(photo)
    assert tiled.shape == whole.shape == (192, 240, 3)
    # Tiles see less context than the whole image (MSM pools by up to 8); overlap blending keeps
    # the difference far below visibility.
    assert psnr(tiled, whole, crop_border=0) >= 45.0


def test_pte_backend_tiles_with_its_fixed_shape_and_sidecar_overlap(photo, fixed_pte):
    model, result = fixed_pte
    backend = load_backend(result.path)
    assert (backend.tile, backend.scale, backend.overlap) == (TILE, 2, OVERLAP)
    up = Upscaler(backend)
    assert (up.tile, up.overlap) == (TILE, OVERLAP)  # as the Android app tiles: the sidecar's overlap
    out = up.upscale(photo)
    ref = Upscaler(eager_backend(model), tile=TILE, overlap=OVERLAP).upscale(photo)
    # Same tiles, same blending: only fp32 kernel rounding differs (<= 1 level after rounding).
    assert np.abs(out.astype(int) - ref.astype(int)).max() <= 1
    small = photo[:10, :15]  # smaller than the tile: padded to 24x24 and cropped back
    assert up.upscale(small).shape == (20, 30, 3)
    with pytest.raises(BackendError, match=f"takes {TILE}x{TILE} tiles"):
        Upscaler(backend, tile=64)
    with pytest.raises(BackendError, match="must be smaller than the tile"):
        Upscaler(backend, overlap=TILE)
    with pytest.raises(BackendError, match="x2, but --scale 4"):
        load_backend(result.path, scale=4)


@pytest.mark.parametrize("h, w", [(35, 42), (6, 13)])  # padded to 40x48, and to the minimum size 16x16
def test_dynamic_pte_edge_pads_a_small_tile_and_crops_back(photo, dynamic_pte, h, w):
    model, result = dynamic_pte
    backend = load_backend(result.path)
    assert (backend.min_size, backend.multiple) == (16, 8)  # the sizes the reference pads to
    image = photo[:h, :w]
    out = Upscaler(backend, tile=48, overlap=16).upscale(image)  # one tile
    # The runtime's contract: replicate the last row and column up to an accepted size, run, crop.
    padded = np.pad(image, ((0, max(16, -(-h // 8) * 8) - h), (0, max(16, -(-w // 8) * 8) - w), (0, 0)), mode="edge")
    with torch.no_grad():
        ref = model(torch.from_numpy(padded).permute(2, 0, 1)[None].float() / 255)[0, :, : 2 * h, : 2 * w]
    ref = (ref.clamp(0, 1) * 255).permute(1, 2, 0).numpy()
    # Rounding to uint8 moves a pixel by at most 0.5 levels, and the fp32 program is within 5e-6 of eager
    # (test_export.PARITY), 1.3e-3 levels. Measured: at most 0.49995. Zero, reflect or symmetric padding
    # instead, or edge padding above and left, give 0.52-23 levels (3 to 2732 pixels past the bound).
    assert out.shape == ref.shape == (2 * h, 2 * w, 3)
    err = float(np.abs(out - ref).max())
    assert err <= 0.5 + 2e-3, err


def test_load_backend_errors(tmp_path):
    with pytest.raises(BackendError, match="not found"):
        load_backend(tmp_path / "none.pte")
    bogus = tmp_path / "model.onnx"
    bogus.write_bytes(b"x")
    with pytest.raises(BackendError, match="unknown model file"):
        load_backend(bogus)
    orphan = tmp_path / "orphan.pte"
    orphan.write_bytes(b"x")
    with pytest.raises(ManifestError, match="no sidecar"):
        load_backend(orphan)


def _cli(capsys, *argv):
    code = upscale_main([str(a) for a in argv])
    return code, capsys.readouterr()


def test_upscale_cli_file_folder_and_icc(tmp_path, photo, model, capsys):
    weights = tmp_path / "w.safetensors"
    save_weights(model, weights)
    from PIL import ImageCms

    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray(photo[:40, :50]).save(src / "a.png", icc_profile=icc)
    Image.fromarray(photo[:30, :20]).convert("L").save(src / "b.jpg")
    (src / "notes.txt").write_text("not an image")
    code, out = _cli(capsys, src, tmp_path / "out", "--model", weights, "--no-progress")
    assert code == 0, out.err
    assert "skipped notes.txt" in out.err
    a = Image.open(tmp_path / "out" / "a.png")
    assert a.size == (100, 80) and a.info.get("icc_profile") == icc
    assert Image.open(tmp_path / "out" / "b.jpg").size == (40, 60)
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.startswith(".")]


def test_upscale_cli_errors(tmp_path, model, capsys):
    weights = tmp_path / "w.safetensors"
    save_weights(model, weights)
    folder = tmp_path / "mixed"
    folder.mkdir()
    Image.new("RGB", (8, 8), (10, 200, 30)).save(folder / "ok.png")
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    code, out = _cli(capsys, folder, tmp_path / "o", "--model", weights, "--no-progress")
    assert code == 1
    errors = [line for line in out.err.splitlines() if line.startswith("error:")]
    assert any("broken.png" in line for line in errors) and "1 of 2" in errors[-1]
    assert (tmp_path / "o" / "ok.png").exists() and not (tmp_path / "o" / "broken.png").exists()
    code, out = _cli(capsys, tmp_path / "missing.png", tmp_path / "x.png", "--model", weights)
    assert code == 2 and out.err.strip() == f"error: input not found: {tmp_path / 'missing.png'}"
    code, out = _cli(capsys, folder / "ok.png", tmp_path / "x.png", "--model", weights, "--scale", "4")
    assert code == 2 and "holds x2 weights, but x4 was requested" in out.err
    corrupt = tmp_path / "c.safetensors"
    corrupt.write_bytes(b"junk")
    code, out = _cli(capsys, folder / "ok.png", tmp_path / "x.png", "--model", corrupt)
    assert code == 2 and "not a valid safetensors" in out.err and "Traceback" not in out.err
