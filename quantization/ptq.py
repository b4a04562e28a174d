"""``python -m quantization.ptq``: the post-training int8 baseline QAT is measured against.

PT2E PTQ with the same quantizer as QAT (:mod:`lmfn_edge.deployment.pt2e`): ``prepare_pt2e`` inserts
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

from lmfn_edge import cli
from lmfn_edge.deployment.pt2e import (
    QuantizationError,
    convert,
    export_converted,
    prepare,
)
from lmfn_edge.deployment.quantized import QuantizedInfo, check_tile, save_quantized
from lmfn_edge.files import check_output
from lmfn_edge.io import ImageError, load_image
from lmfn_edge.manifest import DEFAULT_TILE, DYNAMIC_MULTIPLE, MAX_SIDE
from lmfn_edge.metrics import hwc_uint8_to_chw_float
from lmfn_edge.model import LMFN
from lmfn_edge.model.weights import load_model
from training.data import DataError, find_pairs

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
        crops.append(torch.from_numpy(hwc_uint8_to_chw_float(img[y : y + h, x : x + w]))[None])
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
    return export_converted(converted, tile), converted


def load_calibration(roots: list[str], scale: int, num_images: int, size: int, cache_dir: Path) -> list[torch.Tensor]:
    """Calibration crops from the LR images of ``roots`` (LR made and cached for HR-only ones)."""
    pairs = [p for root in roots for p in find_pairs(root, scale, cache_dir)]
    pairs = sorted(pairs, key=lambda p: p.hr.name)[:num_images]
    try:
        return calibration_crops([load_image(p.lr) for p in pairs], size)
    except ImageError as exc:
        raise DataError(str(exc)) from None


def build_parser() -> argparse.ArgumentParser:
    p = cli.parser("quantization.ptq", "Post-training int8 quantization: the baseline QAT is measured against.")
    cli.add_weights(p, "float weights (.safetensors)")
    p.add_argument("--data-root", action="append", required=True, help="calibration folder (repeatable)")
    p.add_argument("--output", type=Path, required=True, help="int8 program to write (.pt2)")
    cli.add_scale(p, help="check that the weights have this scale")
    p.add_argument("--tile", type=cli.int_at_least(16, MAX_SIDE), default=DEFAULT_TILE,
                   help=f"LR tile of the program, a multiple of 8, at most {MAX_SIDE} (default 128)")
    p.add_argument("--num-images", type=cli.int_at_least(1), default=DEFAULT_IMAGES,
                   help="calibration images (default 16)")
    p.add_argument("--crop", type=cli.int_at_least(16), default=DEFAULT_SIZE,
                   help="calibration crop side, LR pixels (default 96)")
    p.add_argument("--cache-dir", type=Path, help="LR cache for HR-only folders (default OUTPUT's folder/cache)")
    cli.add_progress(p)
    return p


def _run(args: argparse.Namespace) -> int:
    if not args.weights:
        raise QuantizationError("--weights is required: the float weights to quantize")
    check_tile(args.tile)
    if args.output.suffix != ".pt2":
        raise QuantizationError(f"--output {args.output} must end in .pt2")
    cache = args.cache_dir or args.output.parent / "cache"
    # Nothing is written into the calibration folders: not the program, not the LR cache.
    check_output(args.output, inputs=(args.weights, *args.data_root), flag="--output", inside_inputs=False)
    check_output(cache, inputs=(args.weights, *args.data_root), folder=True, flag="--cache-dir", inside_inputs=False)
    model, weights = load_model(args.scale, args.weights)
    crops = load_calibration(args.data_root, model.config.scale, args.num_images, args.crop, cache)
    program, _ = ptq(model, crops, args.tile, progress=not args.no_progress)
    info = QuantizedInfo(
        method="ptq",
        config=model.config.to_dict(),
        tile=args.tile,
        weights=weights.to_dict(),
        details={"calibration_crops": len(crops), "crop": args.crop, "data_roots": args.data_root},
    )
    save_quantized(program, args.output, info)
    print(f"wrote {args.output} (PTQ int8, {len(crops)} calibration crops, tile {args.tile})")
    return 0


def main(argv: list[str] | None = None) -> int:
    return cli.run(build_parser(), _run, argv)


if __name__ == "__main__":
    sys.exit(main())
