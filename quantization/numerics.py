"""Expected numerics: what each runtime computes for a tiny fixed model, stored as data.

The ai-hub-models habit: PSNR per runtime and precision is kept in
``lmfn_edge/data/expected_numerics.json`` and recomputed by ``tests/test_evaluate.py``, so a
change in the deploy form, the export, the XNNPACK lowering or the int8 quantization that moves
the numbers beyond the stored tolerance fails CI. The model is built here from a seed (no
trained weights) and the images are synthetic and deterministic; everything runs through
``lmfn_edge.evaluate``. Two numbers per artifact: PSNR-Y against the HR images and against the
float (eager) model's own outputs; the second is the one quantization moves.

    python -m quantization.numerics            # recompute and compare (exit 1 on drift)
    python -m quantization.numerics --write    # recompute and store
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
from importlib import resources
from pathlib import Path

import numpy as np
import torch

from lmfn_edge import cli, create_model, model_name
from lmfn_edge.deployment import QuantizedInfo, export, export_quantized
from lmfn_edge.evaluation import Method, evaluate
from lmfn_edge.files import atomic_write_text
from lmfn_edge.imresize import bicubic_downscale
from lmfn_edge.io import save_image
from lmfn_edge.manifest import ShapeSpec
from lmfn_edge.model import LMFN
from lmfn_edge.model.dsconv import DSConv

from .ptq import calibration_crops, ptq

__all__ = ["EXPECTED_PATH", "compare", "compute", "numerics_model"]

EXPECTED_PATH = Path(str(resources.files("lmfn_edge") / "data" / "expected_numerics.json"))
SCALE, SEED, TILE, OVERLAP = 2, 0, 24, 8
MODEL = {"channels": 16, "num_blocks": 2, "pattern": "LM", "kernel_size": 3}
IMAGES, HR_SIDE = 3, 48
PSNR_CAP = 100.0  # identical images have infinite PSNR; JSON has no infinity
# Float programs differ from eager only by summation order: at most a rare 1-LSB rounding flip,
# which takes "identical" (the cap) to 70-90 dB, so at the cap the check is a floor instead.
IDENTICAL_FLOOR = 60.0
# dB. One 1-LSB flip moves these PSNRs by about 0.001 dB. The int8 program may also differ
# across CPUs in the fp32 ops XNNPACK runs inside the int8 graph (GELU, tanh, rsqrt); 0.05 dB
# allows ~50 flips, while per-tensor instead of per-channel weights moves psnr_vs_float 0.25 dB.
TOLERANCE = {"eager": 0.01, "deploy": 0.01, "pte_fp32": 0.01, "pte_int8_ptq": 0.05}


def numerics_model() -> LMFN:
    """The fixed tiny x2 model: seeded init, bent DSConv offsets, outputs around mid-grey."""
    torch.manual_seed(SEED)
    model = create_model(model_name(SCALE), **MODEL).eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, DSConv):  # non-zero offsets, so the snake sampling is exercised
                torch.nn.init.normal_(m.offset_conv.weight, std=0.3)
        model.upsample.bias += 0.5  # keep outputs inside [0, 1], where clamping hides nothing
    return model


def synthetic_image(seed: int, side: int = HR_SIDE) -> np.ndarray:
    """Coloured gratings plus a bright rectangle: smooth texture and hard edges."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:side, 0:side].astype(np.float64)
    img = np.full((side, side, 3), 0.45)
    for _ in range(3):
        f, theta, phase = rng.uniform(0.05, 0.2), rng.uniform(0, np.pi), rng.uniform(0, 2 * np.pi)
        img += 0.12 * np.sin(2 * np.pi * f * (x * np.cos(theta) + y * np.sin(theta)) + phase)[..., None] * rng.uniform(0.5, 1, 3)
    y0, x0 = rng.integers(4, side // 2, 2)
    img[y0 : y0 + side // 3, x0 : x0 + side // 4] += 0.25
    return np.rint(np.clip(img, 0, 1) * 255).astype(np.uint8)


def _write_sets(root: Path, model: LMFN) -> tuple[Path, Path, list[np.ndarray]]:
    """``hr/``: the synthetic images; ``float/``: the eager model's outputs as ground truth."""
    from lmfn_edge.runtime import Upscaler, eager_backend

    upscale = Upscaler(eager_backend(model), tile=0).upscale
    lrs = []
    for i in range(IMAGES):
        hr = synthetic_image(i)
        lr = bicubic_downscale(hr, SCALE)
        lrs.append(lr)
        for name, target in (("hr", hr), ("float", upscale(lr))):
            (root / name / "HR").mkdir(parents=True, exist_ok=True)
            (root / name / "LR_bicubic" / f"X{SCALE}").mkdir(parents=True, exist_ok=True)
            save_image(root / name / "HR" / f"{i}.png", target)
            save_image(root / name / "LR_bicubic" / f"X{SCALE}" / f"{i}x{SCALE}.png", lr)
    return root / "hr", root / "float", lrs


def compute(workdir: str | Path | None = None) -> dict:
    """Build the artifacts and score them; returns the content of the expected-numerics file."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(workdir or tmp)
        model = numerics_model()
        hr_set, float_set, lrs = _write_sets(root, model)
        fp32 = export(model, "xnnpack", root / "fp32.pte", ShapeSpec(TILE, TILE), overlap=OVERLAP)
        program, _ = ptq(model, calibration_crops(lrs, HR_SIDE), tile=TILE)
        export_quantized(program, QuantizedInfo("ptq", model.config.to_dict(), TILE), "xnnpack", root / "int8.pte",
                         OVERLAP)
        methods = {
            "eager": Method("eager"),
            "deploy": Method("deploy"),
            "pte_fp32": Method("pte", fp32.path),
            "pte_int8_ptq": Method("pte", root / "int8.pte"),
        }
        report = evaluate([hr_set, float_set], SCALE, list(methods.values()), model, progress=False)

    def score(method: Method, dataset: str) -> float:
        return round(min(report.results[method.label][dataset]["psnr"], PSNR_CAP), 4)

    return {
        "description": "PSNR-Y (dB, crop = scale, uint8 outputs) of a fixed tiny model on fixed synthetic images; "
                       "regenerate with python -m quantization.numerics --write",
        "model": {"scale": SCALE, "seed": SEED, **MODEL},
        "images": {"count": IMAGES, "hr_side": HR_SIDE, "tile": TILE, "overlap": OVERLAP},
        "psnr_cap": PSNR_CAP,
        "artifacts": {
            key: {"psnr_hr": score(m, "hr"), "psnr_vs_float": score(m, "float"), "tolerance_db": TOLERANCE[key]}
            for key, m in methods.items()
        },
    }


def compare(expected: dict, actual: dict) -> list[str]:
    """One line per number outside its tolerance (empty when everything matches)."""
    problems = []
    for key, exp in expected["artifacts"].items():
        got = actual["artifacts"].get(key)
        if got is None:
            problems.append(f"{key}: not computed")
            continue
        for metric in ("psnr_hr", "psnr_vs_float"):
            if metric == "psnr_vs_float" and exp[metric] >= PSNR_CAP:
                if got[metric] < IDENTICAL_FLOOR:
                    problems.append(f"{key} {metric}: {got[metric]:.4f} dB, expected identical (>= {IDENTICAL_FLOOR})")
            elif not math.isclose(got[metric], exp[metric], rel_tol=0, abs_tol=exp["tolerance_db"]):
                problems.append(f"{key} {metric}: {got[metric]:.4f} dB, expected {exp[metric]:.4f} ± {exp['tolerance_db']}")
    return problems


def build_parser() -> argparse.ArgumentParser:
    p = cli.parser("quantization.numerics", "Recompute the expected PSNR of every runtime for a fixed tiny model "
                                            "and compare it with the stored numbers.")
    p.add_argument("--write", action="store_true", help=f"store the result in {EXPECTED_PATH}")
    return p


def _run(args: argparse.Namespace) -> int:
    actual = compute()
    for key, a in actual["artifacts"].items():
        print(f"{key:14s} PSNR-Y vs HR {a['psnr_hr']:8.4f} dB   vs float {a['psnr_vs_float']:8.4f} dB")
    if args.write:
        EXPECTED_PATH.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(EXPECTED_PATH, json.dumps(actual, indent=2) + "\n")
        print(f"wrote {EXPECTED_PATH}")
        return 0
    problems = compare(json.loads(EXPECTED_PATH.read_text()), actual)
    for line in problems:
        print(f"drift: {line}", file=sys.stderr)
    return 1 if problems else 0


def main(argv: list[str] | None = None) -> int:
    return cli.run(build_parser(), _run, argv)


if __name__ == "__main__":
    sys.exit(main())
