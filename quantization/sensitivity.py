"""``python -m quantization.sensitivity``: where int8 loses quality, group by group, and which groups
the mixed-precision variants keep fp32.

For one scale and each int8 variant's graph (static: the embedded QAT parameters; dynamic: the
embedded float weights), on training-side crops only (the corpus's ``val`` crops, textured, and
centre crops of the smoothest training photos, where int8's fixed grids lose most):

1. the loss of the whole int8 graph against the float model (PSNR-Y, dB, mean per crop set);
2. per group (:func:`lmfn_edge.deployment.variants.groups`): the loss with *only* that group
   quantized (every other group an fp32 island), and the loss with only that group fp32;
3. greedily, the groups kept fp32 in the order of what keeping each alone recovers (those that
   recover something on both crop sets), until the loss is at most ``--target`` dB on both crop
   sets (or ``--max-groups`` are fp32).

Every graph is the q/dq reference in PyTorch (the .pte computes the same within rounding, which
the tests check). ``--write`` records the choice in ``lmfn_edge/data/int8_variants.json``, the
table ``lmfn_edge.export --precision int8-mixed | int8-dynamic`` reads, and pins the golden output
of the shipped ``int8-dynamic`` program it changes (``quantization.int8_release --pin``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from lmfn_edge import cli
from lmfn_edge.deployment.variants import DYNAMIC, MIXED, VARIANTS_PATH, convert_islands, dynamic_converted, groups
from lmfn_edge.files import atomic_write_text, check_output
from lmfn_edge.imresize import bicubic_downscale
from lmfn_edge.io import load_image
from lmfn_edge.metrics import hwc_uint8_to_chw_float, psnr, tensor_to_uint8
from lmfn_edge.model.weights import load_model

__all__ = ["main", "scan", "scan_crops"]

DEFAULT_SIDE = 64
SMOOTH_PHOTOS = 4
DEFAULT_TARGET = 0.05
DEFAULT_MAX_GROUPS = 5


def _gradient_energy(img: np.ndarray) -> float:
    f = img.astype(np.float32)
    return float(np.abs(np.diff(f, axis=0)).mean() + np.abs(np.diff(f, axis=1)).mean())


def scan_crops(val_root: Path, train_root: Path, scale: int, side: int = DEFAULT_SIDE,
               smooth: int = SMOOTH_PHOTOS) -> dict[str, list[tuple[torch.Tensor, np.ndarray]]]:
    """``{"textured": [...], "smooth": [...]}`` of ``(LR tensor 1x3xside^2, HR uint8)`` pairs:
    centre crops of every ``val_root`` image and of the ``smooth`` training photos with the least
    gradient energy (one per picture: names differing only by a ``skimage_`` prefix are one)."""

    def crop(path: Path) -> tuple[torch.Tensor, np.ndarray]:
        hr = load_image(path)
        h = side * scale
        if min(hr.shape[:2]) < h:
            raise SystemExit(f"error: {path} is smaller than a {h} px crop")
        y, x = (hr.shape[0] - h) // 2, (hr.shape[1] - h) // 2
        hr = np.ascontiguousarray(hr[y:y + h, x:x + h])
        lr = bicubic_downscale(hr, scale)
        return torch.from_numpy(hwc_uint8_to_chw_float(lr))[None], hr

    energies, seen = [], set()
    for path in sorted(train_root.glob("*.png")):
        key = path.stem.removeprefix("skimage_")
        if key in seen:
            continue
        seen.add(key)
        img = load_image(path)
        if min(img.shape[:2]) >= side * scale:
            energies.append((_gradient_energy(img), path))
    smooth_paths = [p for _, p in sorted(energies)[:smooth]]
    return {"textured": [crop(p) for p in sorted(val_root.glob("*.png"))],
            "smooth": [crop(p) for p in smooth_paths]}


@torch.no_grad()
def _psnrs(fn, crops: dict, scale: int) -> dict[str, float]:
    return {name: float(np.mean([psnr(tensor_to_uint8(fn(lr)), hr, crop_border=scale) for lr, hr in pairs]))
            for name, pairs in crops.items()}


def scan(model, converted, crops: dict, target: float = DEFAULT_TARGET, max_groups: int = DEFAULT_MAX_GROUPS,
         alone: bool = True, progress: bool = True) -> dict:
    """The per-group table and the greedy choice for one int8 variant (see the module doc);
    ``converted(keep)`` makes its q/dq graph with the groups ``keep`` fp32. ``alone=False``
    skips the rows with one group quantized (the dynamic variant's graphs are each prepared
    anew, which costs a capture)."""
    scale = model.config.scale
    names = groups(model.config)
    reference = _psnrs(model, crops, scale)

    def loss(keep) -> dict[str, float]:
        got = _psnrs(converted(keep), crops, scale)
        return {k: round(reference[k] - got[k], 4) for k in reference}

    bar = tqdm(total=1 + (1 + alone) * len(names) + max_groups, desc="sensitivity", unit="graph", disable=not progress)
    whole = loss(())
    bar.update()
    rows = {}
    for g in names:
        rows[g] = {"fp32": loss([g])}
        if alone:
            rows[g]["alone"] = loss([n for n in names if n != g])
        bar.update(1 + alone)
    gain = {g: min(whole[k] - rows[g]["fp32"][k] for k in whole) for g in names}
    # Only groups that recover something on both crop sets; one with nothing quantized in this
    # variant (trunk, shuffle in the dynamic graph) recovers exactly 0 and would only add a name.
    recovered = sorted((g for g in names if gain[g] > 0), key=lambda g: -gain[g])
    chosen, steps = [], []
    current = whole
    for g in recovered[:max_groups]:
        if max(current.values()) <= target:
            break
        chosen.append(g)
        current = loss(chosen)
        steps.append({"fp32_groups": list(chosen), "loss": current})
        bar.update()
    bar.close()
    return {"float_psnr": {k: round(v, 4) for k, v in reference.items()}, "whole": whole, "groups": rows,
            "greedy": steps, "fp32_groups": chosen, "loss": current}


def build_parser() -> argparse.ArgumentParser:
    p = cli.parser("quantization.sensitivity", "Per-group int8 sensitivity scan on training-side crops, and the "
                                               "fp32 groups of the mixed-precision int8 variants.")
    cli.add_scale(p, default=4)
    p.add_argument("--variant", choices=(MIXED, DYNAMIC), action="append",
                   help="int8-mixed scans the static QAT graph, int8-dynamic the dynamic-range one (default both)")
    p.add_argument("--val-root", type=Path, default=Path("data/corpus/val"), help="textured crops (default "
                                                                                   "data/corpus/val)")
    p.add_argument("--train-root", type=Path, default=Path("data/corpus/train"),
                   help="training photos, the smoothest of which are scanned (default data/corpus/train)")
    p.add_argument("--side", type=cli.int_at_least(16), default=DEFAULT_SIDE,
                   help=f"LR crop side, a multiple of 8 (default {DEFAULT_SIDE})")
    p.add_argument("--target", type=float, default=DEFAULT_TARGET, help="dB of loss the greedy choice stops at "
                                                                         f"(default {DEFAULT_TARGET})")
    p.add_argument("--max-groups", type=cli.int_at_least(0), default=DEFAULT_MAX_GROUPS,
                   help=f"most groups kept fp32 (default {DEFAULT_MAX_GROUPS})")
    p.add_argument("--write", action="store_true", help=f"record the choice in {VARIANTS_PATH.name}")
    cli.add_json(p)
    cli.add_progress(p)
    return p


def _converter(variant: str, model, scale: int):
    """``keep -> q/dq graph`` of ``variant`` with the groups ``keep`` fp32."""
    if variant == DYNAMIC:
        from lmfn_edge.deployment.pt2e import capture

        captured = capture(model)
        return lambda keep: dynamic_converted(model, keep, captured)
    from lmfn_edge.deployment.int8 import load_int8_params
    from lmfn_edge.registry import shipped

    prepared = load_int8_params(shipped(scale).int8_path)[0]
    return lambda keep: convert_islands(prepared, keep)


def _run(args: argparse.Namespace) -> int:
    if args.side % 8:
        raise SystemExit(f"error: --side must be a multiple of 8, got {args.side}")
    if args.json:
        check_output(args.json, flag="--json")
    torch.manual_seed(0)
    model, weights = load_model(args.scale, None)
    crops = scan_crops(args.val_root, args.train_root, model.config.scale, args.side)
    results = {}
    for variant in args.variant or (MIXED, DYNAMIC):
        start = time.perf_counter()
        result = scan(model, _converter(variant, model, model.config.scale), crops, args.target, args.max_groups,
                      alone=variant != DYNAMIC, progress=not args.no_progress)
        result["seconds"] = round(time.perf_counter() - start)
        results[variant] = result
        print(f"x{model.config.scale} {variant}: whole graph loses "
              + ", ".join(f"{k} {v:.3f}" for k, v in result["whole"].items()) + " dB")
        for g, row in result["groups"].items():
            print(f"  {g:10s} fp32 " + " ".join(f"{v:7.3f}" for v in row["fp32"].values())
                  + ("   alone " + " ".join(f"{v:7.3f}" for v in row["alone"].values()) if "alone" in row else ""))
        print(f"  fp32 groups {result['fp32_groups'] or 'none'}: loses "
              + ", ".join(f"{k} {v:.3f}" for k, v in result["loss"].items()) + " dB")
    record = {"scale": model.config.scale, "weights": weights.to_dict(), "side": args.side, "target": args.target,
              "crops": {k: len(v) for k, v in crops.items()}, "variants": results}
    if args.json:
        atomic_write_text(args.json, json.dumps(record, indent=1))
    if args.write:
        table = json.loads(VARIANTS_PATH.read_text()) if VARIANTS_PATH.is_file() else {"scales": {}}
        entry = table["scales"].setdefault(str(model.config.scale), {})
        for variant, result in results.items():
            entry[variant] = {"fp32_groups": result["fp32_groups"], "scan_loss_db": result["loss"],
                              "scan": f"python -m quantization.sensitivity --scale {model.config.scale} --variant "
                                      f"{variant} --side {args.side} --target {args.target} --max-groups "
                                      f"{args.max_groups}"}
        atomic_write_text(VARIANTS_PATH, json.dumps(table, indent=1) + "\n")
        print(f"wrote {VARIANTS_PATH}")
        if DYNAMIC in results:  # the shipped program changed: pin its golden again
            from .int8_release import pin

            pin(DYNAMIC, (model.config.scale,))
            print(f"pinned the x{model.config.scale} {DYNAMIC} golden output")
    return 0


def main(argv: list[str] | None = None) -> int:
    return cli.run(build_parser(), _run, argv)


if __name__ == "__main__":
    sys.exit(main())
