"""Golden vectors that pin the Java image core (``android_demo/imagecore``) to
:mod:`lmfn_edge.runtime.tiling` and :mod:`lmfn_edge.manifest`.

``python -m lmfn_edge.android_golden android_demo/imagecore/src/test/resources/golden`` writes:

- ``plans.json``: tile plans for several ``(height, width, tile, overlap)``;
- ``blend_weights.json``: 1-D blending weights;
- ``image_core.json``: ARGB -> CHW float -> ARGB and the float -> uint8 rounding rule, including
  values where float32 and float64 arithmetic round differently;
- ``upscale.json``: whole tiled upscales with :func:`golden_model`, a deterministic stand-in for
  the network that both languages implement with the same float32 operations in the same order
  (input as ARGB ints, output as row-major RGB bytes; the output alpha is always 255);
- ``manifests.json``: sidecar texts with what :class:`lmfn_edge.manifest.Manifest` and the app's
  ``Manifest`` must decide for each (accept, or refuse with a message naming ``keyword``), and
  whether the app can run the program; the first is a sidecar exactly as the exporter writes it.

``tests/test_tiling_golden.py`` regenerates the files and checks the committed ones are
identical, and the Java tests check the Java side against them, so a change on either side is
caught. Images come from a fixed integer generator (not numpy's RNG) so the bytes never depend
on the numpy version.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from .manifest import Manifest, ManifestError, ShapeSpec
from .runtime.tiling import (
    argb_to_chw_float,
    blend_weights,
    chw_float_to_argb,
    float_to_uint8,
    plan_tiles,
    upscale_tiled,
)

FORMAT = "lmfn-edge-golden"
VERSION = 1

PLAN_CASES = [
    (1, 1, 64, 8),
    (5, 7, 4, 1),
    (10, 10, 4, 0),
    (17, 9, 8, 3),
    (64, 64, 64, 8),
    (65, 130, 64, 8),
    (100, 37, 32, 24),
    (3, 50, 16, 4),
]
# (tile_len_out, overlap_out, at_start, at_end)
WEIGHT_CASES = [
    (8, 3, False, False),
    (8, 3, True, False),
    (8, 3, False, True),
    (8, 3, True, True),
    (12, 6, False, False),
    (5, 0, False, False),
    (3, 5, False, False),
    (1, 2, False, False),
    (24, 16, False, True),
]
UPSCALE_CASES = [
    # Clamped last tiles overlap their neighbours by more than `overlap` on both axes.
    {"name": "multi_tile", "height": 11, "width": 11, "scale": 2, "tile": 6, "overlap": 2,
     "pad_to_tile": True},
    # Smaller than the tile on both axes: edge-padded to 8x8, output cropped back.
    {"name": "small_padded", "height": 3, "width": 5, "scale": 3, "tile": 8, "overlap": 2,
     "pad_to_tile": True},
    # Shorter than the tile in height and run unpadded, as a dynamic-shape program would.
    {"name": "wide_unpadded", "height": 4, "width": 17, "scale": 2, "tile": 8, "overlap": 3,
     "pad_to_tile": False},
    # No ramps (overlap 0), only the clamped last tiles overlap: blending is a plain mean there.
    {"name": "scale4_no_overlap", "height": 5, "width": 6, "scale": 4, "tile": 4, "overlap": 0,
     "pad_to_tile": True},
]
# Dyadic constants, so float32 literals are exact in both languages.
GAIN = (3.0, 0.75, -1.5)
BIAS = (-1.0, 0.0625, 1.25)


def golden_model(x: np.ndarray, scale: int, gain=GAIN, bias=BIAS) -> np.ndarray:
    """3x3 mean with zero padding, per-channel ``v * gain + bias``, then nearest upsampling.

    Float32 throughout; the nine taps are summed row by row from a zero start, then divided
    by 9. The zero padding makes tile borders differ from the whole image, so the blend matters;
    the affine pushes values outside [0, 1], so the clamp matters.
    """
    c = np.asarray(x, dtype=np.float32)[0]
    h, w = c.shape[1:]
    padded = np.pad(c, ((0, 0), (1, 1), (1, 1)))
    acc = np.zeros_like(c)
    for dy in range(3):
        for dx in range(3):
            acc = acc + padded[:, dy : dy + h, dx : dx + w]
    y = acc / np.float32(9)
    y = y * np.float32(gain)[:, None, None] + np.float32(bias)[:, None, None]
    return np.repeat(np.repeat(y, scale, axis=1), scale, axis=2)[None]


def _argb_image(height: int, width: int, seed: int) -> np.ndarray:
    # Numerical Recipes LCG: fixed bytes on every platform and numpy version.
    state = seed
    values = []
    for _ in range(height * width):
        state = (1664525 * state + 1013904223) % 2**32
        values.append(state)
    return np.array(values, dtype=np.uint32).reshape(height, width).view(np.int32)


def _argb_hex(argb: np.ndarray) -> str:
    return "".join(f"{v:08x}" for v in np.asarray(argb).view(np.uint32).ravel().tolist())


def _argb_to_rgb(argb: np.ndarray) -> np.ndarray:
    v = np.asarray(argb).view(np.uint32)
    return np.stack([(v >> 16) & 0xFF, (v >> 8) & 0xFF, v & 0xFF], axis=-1).astype(np.uint8)


def _floats(a: np.ndarray) -> list[float]:
    # float32 -> Python float is exact, and json writes the shortest round-tripping repr.
    return [float(v) for v in np.asarray(a, dtype=np.float32).ravel()]


def _quantize_inputs() -> np.ndarray:
    values = [-0.25, 0.0, 1.0, 1.5, 0.5]
    for k in range(0, 256, 5):
        mid = np.float32((k + 0.5) / 255)
        values += [np.nextafter(mid, np.float32(-1)), mid, np.nextafter(mid, np.float32(2))]
    return np.array(values, dtype=np.float32)


def _plans() -> dict:
    cases = []
    for height, width, tile, overlap in PLAN_CASES:
        tiles = [[t.y0, t.x0, t.y1, t.x1] for t in plan_tiles(height, width, tile, overlap)]
        cases.append({"height": height, "width": width, "tile": tile, "overlap": overlap,
                      "tiles": tiles})
    return {"cases": cases}


def _weights() -> dict:
    cases = []
    for length, overlap, at_start, at_end in WEIGHT_CASES:
        w = blend_weights(length, overlap, at_start, at_end)
        cases.append({"tile_len_out": length, "overlap_out": overlap, "at_start": at_start,
                      "at_end": at_end, "weights": _floats(w)})
    return {"cases": cases}


def _image_core() -> dict:
    # Random pixels after four that test the sign bit and alpha handling of Java's int.
    extremes = np.array([0, 0xFFFFFFFF, 0x7FFFFFFF, 0x00FF00FF], dtype=np.uint32).view(np.int32)
    argb = np.concatenate([extremes, _argb_image(1, 8, seed=7).ravel()]).reshape(3, 4)
    chw = argb_to_chw_float(argb)
    q = _quantize_inputs()
    return {
        "argb": {"height": 3, "width": 4, "argb_hex": _argb_hex(argb), "chw": _floats(chw),
                 "argb_out_hex": _argb_hex(chw_float_to_argb(chw))},
        "quantize": {"inputs": _floats(q), "outputs": float_to_uint8(q).tolist()},
    }


def _upscale() -> dict:
    cases = []
    for i, case in enumerate(UPSCALE_CASES):
        argb = _argb_image(case["height"], case["width"], seed=100 + i)
        scale = case["scale"]
        out = upscale_tiled(lambda x: golden_model(x, scale), _argb_to_rgb(argb), scale,
                            case["tile"], case["overlap"], pad_to_tile=case["pad_to_tile"])
        cases.append({**case, "input_argb_hex": _argb_hex(argb),
                      "output_rgb_hex": out.tobytes().hex()})
    return {"model": {"kind": "box3_affine_nearest", "gain": list(GAIN), "bias": list(BIAS)},
            "cases": cases}


def _sidecar(**changes) -> dict:
    """A sidecar as the exporter writes it (a fixed 128 tile, x4, XNNPACK fp32), then ``changes``."""
    manifest = Manifest(
        model="lmfn_x4", scale=4, config={"scale": 4, "channels": 56}, target="xnnpack", precision="fp32",
        artifact="lmfn_x4_xnnpack_fp32.pte", shape=ShapeSpec(128, 128), overlap=16,
        weights={"source": "embedded:lmfn_x4.safetensors", "sha256": "0" * 64}, packages={"executorch": "1.5.1"},
        delegation={"subgraphs": 1}, export_seconds=42.0, artifact_sha256="ab" * 32,
    )
    data = manifest.to_dict()
    for key, value in changes.items():
        if value is _DROP:
            data.pop(key)
        else:
            data[key] = value
    return data


_DROP = object()
_DYNAMIC = {"dynamic": True, "min": 16, "max": 512, "multiple": 8}
# (name, sidecar or raw text, Python's verdict, the app's verdict, a word both refusals contain)
MANIFEST_CASES = [
    ("as_exported", _sidecar(), "accept", "accept", None),
    ("int8", _sidecar(precision="int8"), "accept", "accept", None),
    ("portable", _sidecar(target="portable"), "accept", "accept", None),
    ("no_program_sha256", _sidecar(artifact_sha256=_DROP), "accept", "accept", None),
    ("unknown_keys_allowed", _sidecar(future_field={"x": 1}), "accept", "accept", None),
    ("float_input_range", _sidecar(input_range=[0, 1]), "accept", "accept", None),
    ("core_ml", _sidecar(target="coreml", precision="fp16"), "accept", "refuse", "target"),
    ("dynamic_shape", _sidecar(shape=_DYNAMIC, tile=None), "accept", "refuse", "square fixed tile"),
    ("non_square", _sidecar(shape={"dynamic": False, "height": 96, "width": 128}, tile=None), "accept", "refuse",
     "square fixed tile"),
    ("not_json", '{"format": "lmfn-edge-manifest", "version": 1,', "refuse", "refuse", "JSON"),
    ("a_list", "[1, 2]", "refuse", "refuse", "JSON object"),
    ("other_format", _sidecar(format="something-else"), "refuse", "refuse", "format"),
    ("version_2", _sidecar(version=2), "refuse", "refuse", "version 2"),
    ("missing_scale", _sidecar(scale=_DROP), "refuse", "refuse", "missing"),
    ("missing_overlap", _sidecar(overlap=_DROP), "refuse", "refuse", "missing"),
    ("scale_5", _sidecar(scale=5, model="lmfn_x5"), "refuse", "refuse", "scale must be"),
    ("scale_a_string", _sidecar(scale="4"), "refuse", "refuse", "scale"),
    ("model_scale_mismatch", _sidecar(model="lmfn_x2"), "refuse", "refuse", "does not match scale"),
    ("tile_disagrees", _sidecar(tile=64), "refuse", "refuse", "disagrees"),
    ("tile_missing_for_fixed", _sidecar(tile=None), "refuse", "refuse", "disagrees"),
    ("overlap_equals_tile", _sidecar(overlap=128), "refuse", "refuse", "overlap"),
    ("negative_overlap", _sidecar(overlap=-1), "refuse", "refuse", "overlap"),
    ("fractional_overlap", _sidecar(overlap=1.5), "refuse", "refuse", "overlap"),
    ("bad_dynamic_range", _sidecar(shape={**_DYNAMIC, "max": 20}, tile=None), "refuse", "refuse",
     "a dynamic range needs multiples of 8"),
    ("layout_nhwc", _sidecar(layout="NHWC"), "refuse", "refuse", "layout"),
    ("input_range_255", _sidecar(input_range=[0, 255]), "refuse", "refuse", "input_range"),
    ("input_renamed", _sidecar(input={"name": "x", "dtype": "float32"}), "refuse", "refuse", "named"),
    ("unknown_target", _sidecar(target="tflite"), "refuse", "refuse", "unknown target"),
    ("precision_of_another_target", _sidecar(precision="fp16"), "refuse", "refuse", "precision"),
    ("bad_program_sha256", _sidecar(artifact_sha256="xyz"), "refuse", "refuse", "artifact_sha256"),
]


def python_verdict(text: str) -> tuple[str, str | None]:
    """``("accept", None)`` or ``("refuse", message)`` from :class:`~lmfn_edge.manifest.Manifest`."""
    try:
        Manifest.from_dict(json.loads(text), "sidecar")
    except json.JSONDecodeError as exc:
        return "refuse", f"sidecar is not valid JSON ({exc})"
    except ManifestError as exc:
        return "refuse", str(exc)
    return "accept", None


def _manifests() -> dict:
    cases = []
    for name, sidecar, python, app, keyword in MANIFEST_CASES:
        text = sidecar if isinstance(sidecar, str) else json.dumps(sidecar)
        verdict, message = python_verdict(text)
        if verdict != python or (keyword and python == "refuse" and keyword not in message):
            raise AssertionError(f"manifest case {name}: Python says {verdict} ({message}), expected {python}")
        case = {"name": name, "text": text, "python": python, "app": app, "keyword": keyword}
        if app == "accept":
            m = Manifest.from_dict(json.loads(text))
            case["expect"] = {"model": m.model, "scale": m.scale, "target": m.target, "precision": m.precision,
                              "tile": m.tile, "overlap": m.overlap}
        cases.append(case)
    return {"cases": cases}


def _dump(payload: dict) -> str:
    # One key, and one case, per line: small files that still diff readably.
    lines = []
    for key, value in {"format": FORMAT, "version": VERSION, **payload}.items():
        if key == "cases":
            rows = ",\n".join(json.dumps(c, separators=(",", ":")) for c in value)
            lines.append(f'"cases":[\n{rows}\n]')
        else:
            lines.append(f"{json.dumps(key)}:{json.dumps(value, separators=(',', ':'))}")
    return "{" + ",\n".join(lines) + "}\n"


GOLDEN = {
    "plans.json": _plans,
    "blend_weights.json": _weights,
    "image_core.json": _image_core,
    "upscale.json": _upscale,
    "manifests.json": _manifests,
}


def write_golden(out_dir: str | Path) -> list[Path]:
    """Writes every golden file into ``out_dir`` (created if missing) and returns their paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, build in GOLDEN.items():
        path = out_dir / name
        path.write_text(_dump(build()), encoding="utf-8")
        paths.append(path)
    return paths


def main(argv: list[str] | None = None) -> int:
    """A developer tool, not a user command: plain argparse, outside the commands' error boundary."""
    parser = argparse.ArgumentParser(
        prog="python -m lmfn_edge.android_golden",
        description="Write the golden files the Java image core is tested against.")
    parser.add_argument("output", type=Path, help="folder for the golden JSON files")
    args = parser.parse_args(argv)
    for path in write_golden(args.output):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
