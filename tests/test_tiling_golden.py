"""The committed Java golden files are exactly what lmfn_edge.runtime.tiling and
lmfn_edge.manifest produce today."""

import json
from pathlib import Path

import numpy as np

from lmfn_edge import android_golden as tiling_golden
from lmfn_edge.metrics import chw_float_to_hwc_uint8, hwc_uint8_to_chw_float

COMMITTED = (Path(__file__).resolve().parents[1]
             / "android_demo/imagecore/src/test/resources/golden")


def test_committed_golden_files_match_regeneration(tmp_path):
    assert tiling_golden.main([str(tmp_path)]) == 0
    fresh = sorted(p.name for p in tmp_path.iterdir())
    assert fresh == sorted(p.name for p in COMMITTED.iterdir()), (
        "golden file set changed; regenerate with "
        "`python -m lmfn_edge.android_golden android_demo/imagecore/src/test/resources/golden`")
    for name in fresh:
        assert (tmp_path / name).read_bytes() == (COMMITTED / name).read_bytes(), (
            f"{name} differs from lmfn_edge.runtime.tiling's output; if the change is intended, "
            "regenerate the golden files and make the Java image core match them")


def test_golden_files_are_small_and_versioned():
    for path in COMMITTED.iterdir():
        assert path.stat().st_size < 32_000, path
        head = json.loads(path.read_text())
        assert head["format"] == tiling_golden.FORMAT and head["version"] == tiling_golden.VERSION


def test_golden_upscales_exercise_blending_and_clamping():
    # If a case came out equal to the untiled model, or never clamped, the Java golden test
    # would not be checking the blend or the rounding rule.
    cases = json.loads((COMMITTED / "upscale.json").read_text())["cases"]
    for case in cases:
        h, w, s = case["height"], case["width"], case["scale"]
        argb = np.frombuffer(bytes.fromhex(case["input_argb_hex"]), dtype=">u4")
        rgb = np.stack([(argb >> 16) & 255, (argb >> 8) & 255, argb & 255], -1)
        rgb = rgb.astype(np.uint8).reshape(h, w, 3)
        out = np.frombuffer(bytes.fromhex(case["output_rgb_hex"]), np.uint8)
        out = out.reshape(s * h, s * w, 3)
        whole = chw_float_to_hwc_uint8(
            tiling_golden.golden_model(hwc_uint8_to_chw_float(rgb)[None], s)[0])
        assert (out != whole).any(), case["name"]
        assert (out == 0).any(), case["name"]


def test_golden_sidecars_get_the_recorded_python_verdicts():
    # The Java ManifestTest checks the app's verdicts against the same file.
    cases = json.loads((COMMITTED / "manifests.json").read_text())["cases"]
    assert json.loads(cases[0]["text"])["format"] == "lmfn-edge-manifest" and cases[0]["python"] == "accept"
    for case in cases:
        verdict, message = tiling_golden.python_verdict(case["text"])
        assert verdict == case["python"], (case["name"], message)
        if verdict == "refuse":
            assert case["keyword"] in message, (case["name"], message)
    assert {c["app"] for c in cases} == {"accept", "refuse"}
