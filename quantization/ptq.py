"""``python -m quantization.ptq``: the post-training int8 baseline QAT is measured against.

PT2E PTQ with the same quantizer as QAT (:mod:`quantization.pt2e`): ``prepare_pt2e`` inserts
histogram observers for activations (per-channel min/max for weights), the model runs on a few
LR crops, ``convert_pt2e`` fixes the grids. Calibration crops are the centre ``size x size``
window of each LR image (the first ``num_images`` by name), so the result depends on nothing
but the data and the weights.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from lmfn_edge.export import DEFAULT_TILE, DYNAMIC_MULTIPLE
from lmfn_edge.io import ImageError, load_image
from lmfn_edge.model import LMFN
from lmfn_edge.weights import WeightsError, load_weights, sha256_file
from training.data import DataError, find_pairs

from .pt2e import QuantizationError, QuantizedInfo, check_tile, convert, export_quantized, prepare, save_quantized

__all__ = ["calibration_crops", "ptq", "main"]

DEFAULT_IMAGES = 16
DEFAULT_SIZE = 96


def calibration_crops(lr_images: list[np.ndarray], size: int = DEFAULT_SIZE) -> list[torch.Tensor]:
    """Centre crops (1x3xHxW in [0, 1]) with sides cut down to multiples of 8, at most ``size``."""
    crops = []
    for img in lr_images:
        h, w = (min(size, side) // DYNAMIC_MULTIPLE * DYNAMIC_MULTIPLE for side in img.shape[:2])
        if min(h, w) < 16:
            continue
        y, x = (img.shape[0] - h) // 2, (img.shape[1] - w) // 2
        crop = np.ascontiguousarray(img[y : y + h, x : x + w].transpose(2, 0, 1))
        crops.append(torch.from_numpy(crop)[None].float().div(255.0))
    if not crops:
        raise QuantizationError("no calibration image is at least 16x16 LR pixels")
    return crops


@torch.no_grad()
def ptq(
    model: LMFN,
    calibration: list[torch.Tensor],
    tile: int = DEFAULT_TILE,
    progress: bool = False,
) -> tuple[torch.export.ExportedProgram, torch.fx.GraphModule]:
    """Calibrate, convert and export ``model`` at ``tile``.

    Returns:
        The exported int8 (q/dq) program and the converted graph module it was exported from.
    """
    check_tile(tile)
    prepared = prepare(model, qat=False)
    prepared.eval()
    for x in tqdm(calibration, desc="calibration", unit="crop", disable=not progress):
        prepared(x)
    converted = convert(prepared)
    return export_quantized(converted, tile), converted


def load_calibration(roots: list[str], scale: int, num_images: int, size: int, cache_dir: Path) -> list[torch.Tensor]:
    """Calibration crops from the LR images of ``roots`` (LR made and cached for HR-only ones)."""
    pairs = [p for root in roots for p in find_pairs(root, scale, cache_dir)]
    pairs = sorted(pairs, key=lambda p: p.hr.name)[:num_images]
    try:
        return calibration_crops([load_image(p.lr) for p in pairs], size)
    except ImageError as exc:
        raise DataError(str(exc)) from None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m quantization.ptq", description=__doc__.splitlines()[0])
    p.add_argument("--weights", required=True, help="float weights (.safetensors)")
    p.add_argument("--data-root", action="append", required=True, help="calibration folder (repeatable)")
    p.add_argument("--output", type=Path, required=True, help="int8 program to write (.pt2)")
    p.add_argument("--scale", type=int, choices=(2, 3, 4), help="check that the weights have this scale")
    p.add_argument("--tile", type=int, default=DEFAULT_TILE, help="LR tile of the program (default 128)")
    p.add_argument("--num-images", type=int, default=DEFAULT_IMAGES, help="calibration images (default 16)")
    p.add_argument("--crop", type=int, default=DEFAULT_SIZE, help="calibration crop side, LR pixels (default 96)")
    p.add_argument("--cache-dir", type=Path, help="LR cache for HR-only folders (default OUTPUT's folder/cache)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = p.parse_args(argv)
    try:
        model = load_weights(args.weights, scale=args.scale)
        cache = args.cache_dir or args.output.parent / "cache"
        crops = load_calibration(args.data_root, model.config.scale, args.num_images, args.crop, cache)
        program, _ = ptq(model, crops, args.tile, progress=not args.no_progress)
        info = QuantizedInfo(
            method="ptq",
            config=model.config.to_dict(),
            tile=args.tile,
            weights={"source": args.weights, "sha256": sha256_file(args.weights)},
            details={"calibration_crops": len(crops), "crop": args.crop, "data_roots": args.data_root},
        )
        args.output.parent.mkdir(parents=True, exist_ok=True)
        save_quantized(program, args.output, info)
    except (WeightsError, DataError, QuantizationError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {args.output} (PTQ int8, {len(crops)} calibration crops, tile {args.tile})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
