"""Evaluation: the table on tiny benchmark folders (bicubic scored with the MATLAB references of
tests/helpers.py, not with lmfn_edge.imresize or lmfn_edge.metrics), JSON and crops,
one-line errors for bad folders and mismatched scales, and the expected numerics of every
runtime (lmfn_edge/data/expected_numerics.json) recomputed from scratch."""

from __future__ import annotations

import json
import platform
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import matlab_bicubic_down, matlab_bicubic_up, psnr_y
from PIL import Image

from lmfn_edge import create_model, model_name
from lmfn_edge.evaluate import main
from lmfn_edge.evaluation import Method, evaluate, load_dataset, parse_methods
from lmfn_edge.io import save_image
from lmfn_edge.manifest import Manifest, ShapeSpec, sidecar_path
from lmfn_edge.model.weights import save_weights
from quantization import numerics
from quantization.numerics import synthetic_image

TINY = dict(channels=16, num_blocks=2, pattern="LM", kernel_size=3)


pytestmark = pytest.mark.usefixtures("one_thread")


def set5_style(root: Path, scale: int = 2, sides=(40, 44)) -> Path:
    """``HR/`` + ``LR_bicubic/X{scale}/`` with Set5's ``namex2.png`` naming."""
    (root / "HR").mkdir(parents=True)
    (root / "LR_bicubic" / f"X{scale}").mkdir(parents=True)
    for i, side in enumerate(sides):
        hr = synthetic_image(i, side)
        save_image(root / "HR" / f"img{i}.png", hr)
        save_image(root / "LR_bicubic" / f"X{scale}" / f"img{i}x{scale}.png", matlab_bicubic_down(hr, scale))
    return root


def hr_only(root: Path, sides=(37,)) -> Path:
    root.mkdir(parents=True)
    for i, side in enumerate(sides):
        save_image(root / f"photo{i}.png", synthetic_image(10 + i, side))
    return root


def flat_images(root: Path, sides) -> Path:
    """Grey squares of the given sides (smaller than synthetic_image can draw)."""
    root.mkdir(parents=True)
    for i, side in enumerate(sides):
        save_image(root / f"flat{i}.png", np.full((side, side, 3), 128, np.uint8))
    return root


@pytest.fixture
def weights(tmp_path) -> Path:
    torch.manual_seed(0)
    save_weights(create_model("lmfn_x2", **TINY), tmp_path / "w.safetensors")
    return tmp_path / "w.safetensors"


def fake_artifact(path: Path, scale: int, target: str = "xnnpack") -> Path:
    """An artifact with just its sidecar: enough for the checks that run before loading."""
    if path.suffix == ".mlpackage":
        path.mkdir()
    else:
        path.write_bytes(b"")
    manifest = Manifest(model=model_name(scale), scale=scale, config={"scale": scale}, target=target,
                        precision="fp16" if target == "coreml" else "fp32", artifact=path.name,
                        shape=ShapeSpec(32, 32), overlap=16, weights={"source": "test", "sha256": None})
    sidecar_path(path).write_text(manifest.to_json())
    return path


# --- table, JSON, crops ---------------------------------------------------------------------


def test_table_json_and_crops_on_tiny_folders(tmp_path, weights, capsys):
    paired, plain = set5_style(tmp_path / "Set5"), hr_only(tmp_path / "Photos")
    out = tmp_path / "scores.json"
    assert main(["--scale", "2", "--data", str(paired), str(plain), "--methods", "bicubic,eager,deploy",
                 "--weights", str(weights), "--json", str(out), "--crops-dir", str(tmp_path / "crops"),
                 "--no-progress"]) == 0
    table = capsys.readouterr().out.strip().splitlines()
    assert table[0] == ("| method | Set5 PSNR | Set5 SSIM | Set5 Δ dB | Photos PSNR | Photos SSIM | Photos Δ dB |")
    assert [line.split(" | ")[0] for line in table[2:]] == ["| bicubic", "| eager", "| deploy"]
    eager_row = [c.strip() for c in table[3].strip("|").split("|")]
    assert eager_row[0] == "eager" and eager_row[3] == eager_row[6] == "-"  # the reference

    report = json.loads(out.read_text())
    assert report["scale"] == 2 and report["protocol"]["crop_border"] == 2 and report["reference"] == "eager"
    # The bicubic row, scored by the MATLAB references. On these images PIL's bicubic upscaling
    # moves the scores by -0.002..-0.014 dB, a crop of 1 or 3 instead of 2 by +0.01..+0.04 and
    # -0.10..-0.15 dB, RGB instead of Y PSNR by -1.1..-1.25 dB: all far outside 1e-9.
    expected = [psnr_y(matlab_bicubic_up(matlab_bicubic_down(hr, 2), 2), hr, 2)
                for hr in (synthetic_image(0, 40), synthetic_image(1, 44))]
    set5 = report["results"]["bicubic"]["Set5"]
    assert [set5["images"][f"img{i}"]["psnr"] for i in (0, 1)] == pytest.approx(expected, abs=1e-9)
    assert set5["psnr"] == pytest.approx(np.mean(expected), abs=1e-9)
    hr = synthetic_image(10, 37)[:36, :36]  # HR-only: LR made from the modcropped image
    assert report["results"]["bicubic"]["Photos"]["psnr"] == pytest.approx(
        psnr_y(matlab_bicubic_up(matlab_bicubic_down(hr, 2), 2), hr, 2), abs=1e-9)
    # The deploy form computes the same function: the same uint8 images, up to rare flips.
    for ds in ("Set5", "Photos"):
        eager, deploy = report["results"]["eager"][ds], report["results"]["deploy"][ds]
        assert abs(deploy["psnr"] - eager["psnr"]) < 0.01 and abs(deploy["delta_psnr"]) < 0.01
        assert report["results"]["bicubic"][ds]["delta_psnr"] == pytest.approx(
            report["results"]["bicubic"][ds]["psnr"] - eager["psnr"])

    crops = sorted(p.relative_to(tmp_path / "crops").as_posix() for p in (tmp_path / "crops").rglob("*.png"))
    assert crops == ["Photos/photo0.png", "Set5/img0.png", "Set5/img1.png"]
    with Image.open(tmp_path / "crops" / "Set5" / "img1.png") as img:
        panels = np.asarray(img.convert("RGB"))
    panel_w = (panels.shape[1] - 3 * 4) // 4  # bicubic | eager | deploy | HR, 4 px apart, titled
    assert panels.shape[0] == 44 + 14 and panel_w >= 44
    np.testing.assert_array_equal(panels[14:, 3 * (panel_w + 4) :][:, :44], synthetic_image(1, 44))


def test_two_sets_of_weights_in_one_table(tmp_path, weights):
    data = hr_only(tmp_path / "Photos", sides=(37, 41))
    torch.manual_seed(1)
    other = tmp_path / "other.safetensors"
    save_weights(create_model("lmfn_x2", **TINY), other)
    report = evaluate([data], 2, parse_methods(f"bicubic,eager:{weights},eager:{other}"), progress=False,
                      crops_dir=tmp_path / "crops")
    first, second = f"eager:{weights.name}", f"eager:{other.name}"
    assert report.reference == first
    alone = evaluate([data], 2, parse_methods("eager"), weights=weights, progress=False)
    assert report.results[first]["Photos"]["psnr"] == alone.results["eager"]["Photos"]["psnr"]
    assert report.results[second]["Photos"]["psnr"] != report.results[first]["Photos"]["psnr"]
    assert report.delta(second, "Photos") == pytest.approx(
        report.results[second]["Photos"]["psnr"] - report.results[first]["Photos"]["psnr"])
    assert len(list((tmp_path / "crops" / "Photos").glob("*.png"))) == 2


def test_crop_defaults_to_scale_and_can_be_set(tmp_path):
    data = set5_style(tmp_path / "Set5", scale=3, sides=(45,))
    (img,) = load_dataset(data, 3)
    sr = matlab_bicubic_up(img.lr, 3)
    for crop in (None, 0, 6):
        report = evaluate([data], 3, [Method("bicubic")], crop=crop, progress=False)
        expected = psnr_y(sr, img.hr, 3 if crop is None else crop)
        assert report.results["bicubic"]["Set5"]["psnr"] == pytest.approx(expected, abs=1e-9)


@pytest.mark.skipif(platform.system() == "Darwin", reason="Core ML runs on macOS")
def test_coreml_is_skipped_with_a_note_off_macos(tmp_path, capsys):
    data = hr_only(tmp_path / "Photos")
    package = fake_artifact(tmp_path / "m.mlpackage", 2, "coreml")
    assert main(["--scale", "2", "--data", str(data), "--methods", f"bicubic,coreml:{package}", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "| bicubic |" in out and "| coreml:m.mlpackage |" not in out
    assert "coreml:m.mlpackage: skipped (Core ML prediction needs macOS" in out


# --- errors ---------------------------------------------------------------------------------


def _set5_without_lr_for_second(d: Path) -> None:
    set5_style(d / "data")
    (d / "data" / "LR_bicubic" / "X2" / "img1x2.png").unlink()


def _set5_with_extra_lr(d: Path) -> None:
    set5_style(d / "data")
    save_image(d / "data" / "LR_bicubic" / "X2" / "stray.png", np.zeros((8, 8, 3), np.uint8))


def _set5_with_wrong_lr_size(d: Path) -> None:
    set5_style(d / "data")
    save_image(d / "data" / "LR_bicubic" / "X2" / "img0x2.png", np.zeros((19, 20, 3), np.uint8))


@pytest.mark.parametrize(
    "make, methods, message",
    [
        (lambda d: None, "bicubic", "data folder not found"),
        (lambda d: (d / "data").mkdir(), "bicubic", "no images"),
        (lambda d: (d / "data" / "HR").mkdir(parents=True), "bicubic", "no images"),
        (_set5_without_lr_for_second, "bicubic", "no LR image for img1.png"),
        (_set5_with_extra_lr, "bicubic", "1 LR image(s) in"),
        (_set5_with_wrong_lr_size, "bicubic", "img0x2.png is 20x19, but x2 LR of img0.png (40x40) must be 20x20"),
        (lambda d: hr_only(d / "data"), "bicubic,nearest", "unknown method 'nearest'"),
        (lambda d: flat_images(d / "data", (5, 1)), "bicubic", "smaller than the scale x2"),
        (lambda d: flat_images(d / "data", (4,)), "bicubic", "nothing is left to score"),
        (lambda d: hr_only(d / "data"), "pte", "pte needs a path"),
        (lambda d: hr_only(d / "data"), "bicubic,bicubic", "listed twice"),
        (lambda d: hr_only(d / "data"), "pte:{d}/missing.pte", "pte artifact not found"),
        (lambda d: (hr_only(d / "data"), fake_artifact(d / "x3.pte", 3)), "pte:{d}/x3.pte",
         "x3.pte upscales x3, but --scale 2 was given"),
        (lambda d: (hr_only(d / "data"), fake_artifact(d / "x4.mlpackage", 4, "coreml")), "coreml:{d}/x4.mlpackage",
         "x4.mlpackage upscales x4, but --scale 2 was given"),
    ],
)
def test_bad_input_is_one_line_with_nonzero_exit(tmp_path, capsys, make, methods, message):
    make(tmp_path)
    code = main(["--scale", "2", "--data", str(tmp_path / "data"), "--methods", methods.format(d=tmp_path),
                 "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1, err
    assert message in err


def test_float_methods_check_the_weights_scale(tmp_path, weights, capsys):
    data = hr_only(tmp_path / "data")
    assert main(["--scale", "3", "--data", str(data), "--methods", "eager", "--weights", str(weights)]) == 2
    assert "holds x2 weights, but x3 was requested" in capsys.readouterr().err


# --- expected numerics ----------------------------------------------------------------------


def test_numerics_comparison_flags_drift():
    expected = json.loads(numerics.EXPECTED_PATH.read_text())
    assert numerics.compare(expected, expected) == []
    drifted = json.loads(json.dumps(expected))
    drifted["artifacts"]["pte_int8_ptq"]["psnr_vs_float"] -= 0.1  # e.g. per-tensor weights: -0.25 dB
    drifted["artifacts"]["pte_fp32"]["psnr_vs_float"] = 45.0  # no longer the float function
    problems = numerics.compare(expected, drifted)
    assert len(problems) == 2 and problems[0].startswith("pte_fp32") and problems[1].startswith("pte_int8_ptq")


# About 80 s (a PTQ step and two lowerings): -m slow. In the suite, fp32 .pte parity with eager is
# tests/test_export.py's, and the shipped int8 function is pinned by the golden of
# tests/test_default_weights.py.
@pytest.mark.slow
def test_expected_numerics_of_every_runtime(tmp_path):
    expected = json.loads(numerics.EXPECTED_PATH.read_text())
    assert set(expected["artifacts"]) == {"eager", "deploy", "pte_fp32", "pte_int8_ptq"}
    actual = numerics.compute(tmp_path)
    assert numerics.compare(expected, actual) == [], "regenerate with python -m quantization.numerics --write " \
        "only if the change is intended"
    # The int8 program is close to, but not the same function as, the float model.
    assert 40 < actual["artifacts"]["pte_int8_ptq"]["psnr_vs_float"] < numerics.PSNR_CAP
