"""The shipped models' numbers as checked data: PSNR-Y / SSIM-Y of each embedded model on
scikit-image's held-out photos, per runtime and precision, in ``lmfn_edge/data/shipped_numerics.json``.

The README and the model card quote this file; ``tests/test_default_weights.py`` (marked slow,
which CI runs) recomputes it and fails when a number moves beyond its tolerance. Everything goes
through ``lmfn_edge.evaluate`` on the four held-out photos (``training/skimage_split.json``,
written by ``training.skimage_photos``), with the benchmark protocol (MATLAB bicubic LR, Y
channel, ``scale`` pixels cropped). Rows:

- ``bicubic`` and ``eager`` (the float model on whole images);
- ``pte:fp32``: the default export (``python -m lmfn_edge.export --scale S``: an XNNPACK fp32
  program with a 128x128 tile) run by ExecuTorch through the tiler, as the app runs it;
- ``qdq:int8`` and ``qdq:int8-dynamic``: the q/dq programs of the static and dynamic int8
  variants in PyTorch, tiled at the default tile and overlap: what their ``.pte`` compute within
  rounding (``tests/test_quantization.py`` compares the two), without minutes of lowering.

Not stored: Core ML fp16 through the numpy evaluator. Its prediction needs macOS, and the numpy
evaluator takes 4-7 s per 64x64 fp16 tile on this machine (docs/coreml-verification.md, which
has its PSNR bound), some 10 minutes for the three scales' photos: more than this check's share
of CI.

    python -m quantization.shipped_numerics            # recompute and compare (exit 1 on drift)
    python -m quantization.shipped_numerics --write    # recompute and store
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from importlib import resources
from pathlib import Path

from lmfn_edge import cli, load_model
from lmfn_edge.deployment import export
from lmfn_edge.evaluation import evaluate, parse_methods
from lmfn_edge.files import atomic_write_text
from lmfn_edge.registry import SCALES, shipped

__all__ = ["NUMERICS_PATH", "compare", "compute"]

NUMERICS_PATH = Path(str(resources.files("lmfn_edge") / "data" / "shipped_numerics.json"))
METHODS = "bicubic,eager,qdq:int8,qdq:int8-dynamic"  # and pte:fp32, exported first
# How far a recomputed number may move: bicubic and eager are float32 on whole images (other
# CPUs sum in other orders, far below 0.001 dB); the q/dq programs round fp32 accumulations to
# int8 grids, so a kernel difference can flip a value by one step.
TOLERANCE = {"bicubic": (0.002, 2e-5), "eager": (0.002, 2e-5), "pte:fp32": (0.002, 2e-5), "qdq:int8": (0.02, 2e-4),
             "qdq:int8-dynamic": (0.02, 2e-4)}  # (PSNR dB, SSIM)


def compute(scales=SCALES, progress: bool = False) -> dict:
    """``{"scales": {s: {"weights_sha256", "int8_sha256", "rows": {label: {"psnr", "ssim"}}}}}``."""
    from training.skimage_photos import write_split

    out = {"description": "PSNR-Y / SSIM-Y (dB / 1; crop = scale; MATLAB bicubic LR) of the shipped models on "
                          "scikit-image's four held-out photos; regenerate with python -m "
                          "quantization.shipped_numerics --write",
           "photos": [], "tolerance": {k: {"psnr_db": p, "ssim": s} for k, (p, s) in TOLERANCE.items()},
           "scales": {}}
    with tempfile.TemporaryDirectory(prefix="lmfn_numerics_") as tmp:
        heldout = write_split(Path(tmp))["heldout"]
        out["photos"] = [p.stem for p in heldout]
        for scale in scales:
            pte = Path(tmp) / f"x{scale}_fp32.pte"
            model, record = load_model(scale)
            export(model, "xnnpack", pte, weights=record)
            report = evaluate([heldout[0].parent], scale, parse_methods(f"{METHODS},pte:{pte}"), progress=progress)
            (dataset,) = report.datasets
            files = shipped(scale)
            out["scales"][str(scale)] = {
                "weights_sha256": files.weights_sha256, "int8_sha256": files.int8_sha256,
                "rows": {("pte:fp32" if label == f"pte:{pte.name}" else label):
                         {"psnr": round(per[dataset]["psnr"], 4), "ssim": round(per[dataset]["ssim"], 5)}
                         for label, per in report.results.items()},
            }
    return out


def compare(expected: dict, actual: dict) -> list[str]:
    """One line per number that moved beyond its tolerance (or a model that changed)."""
    problems = []
    for scale, want in expected["scales"].items():
        got = actual["scales"].get(scale)
        if got is None:
            continue
        if (got["weights_sha256"], got["int8_sha256"]) != (want["weights_sha256"], want["int8_sha256"]):
            problems.append(f"x{scale}: the shipped files changed; regenerate with --write")
            continue
        for label, scores in want["rows"].items():
            psnr_tol, ssim_tol = TOLERANCE[label]
            new = got["rows"].get(label)
            if new is None:
                problems.append(f"x{scale} {label}: not computed")
            elif abs(new["psnr"] - scores["psnr"]) > psnr_tol or abs(new["ssim"] - scores["ssim"]) > ssim_tol:
                problems.append(f"x{scale} {label}: PSNR {new['psnr']:.4f} dB, SSIM {new['ssim']:.5f}; stored "
                                f"{scores['psnr']:.4f} dB, {scores['ssim']:.5f}")
    return problems


def build_parser() -> argparse.ArgumentParser:
    p = cli.parser("quantization.shipped_numerics", "Recompute the shipped models' PSNR/SSIM on the held-out photos "
                                                    "and compare them with the stored numbers.")
    p.add_argument("--write", action="store_true", help=f"store the result in {NUMERICS_PATH}")
    cli.add_progress(p)
    return p


def _run(args: argparse.Namespace) -> int:
    actual = compute(progress=not args.no_progress)
    if args.write:
        atomic_write_text(NUMERICS_PATH, json.dumps(actual, indent=1) + "\n")
        print(f"wrote {NUMERICS_PATH}")
        return 0
    problems = compare(json.loads(NUMERICS_PATH.read_text()), actual)
    for line in problems:
        print(line)
    print("the shipped numerics match" if not problems else f"{len(problems)} number(s) drifted")
    return 1 if problems else 0


def main(argv: list[str] | None = None) -> int:
    return cli.run(build_parser(), _run, argv)


if __name__ == "__main__":
    sys.exit(main())
