"""``python -m training.release CKPT --output W.safetensors``: release weights from a checkpoint.

The EMA weights are released, as BasicSR's tests load ``params_ema``; the file is safetensors
with the model config and training facts (steps, recipe) in its metadata, and is checked by
loading it back with ``lmfn_edge.weights.load_weights``.

The metadata also fingerprints the training images: ``train_images`` lists every HR image the
config's ``data_roots`` hold (file name and SHA-256 over shape and RGB pixels, as in
``training/skimage_split.json``), so anyone can check that no evaluation image was trained on.
The fingerprint is taken at release from the same folders; with ``--no-fingerprint``, or when a
folder is gone, ``train_images`` says it is unavailable.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from tqdm import tqdm

from lmfn_edge.io import ImageError, load_image
from lmfn_edge.model import LMFN, LMFNConfig, model_name
from lmfn_edge.weights import WeightsError, load_state, load_weights, save_weights, sha256_file

from .checkpoint import CheckpointError, load_checkpoint
from .data import DataError, hr_images
from .skimage_photos import pixel_sha256

__all__ = ["release", "main"]


def fingerprint_training_images(train_config: dict, scale: int) -> list[dict[str, str]]:
    """``{"root", "file", "sha256"}`` of every HR image under the config's ``data_roots``.

    Raises:
        DataError, ImageError: If a folder or image cannot be read.
    """
    found = [(root, path) for root in train_config["data_roots"] for path in hr_images(root, scale)]
    return [
        {"root": root, "file": path.name, "sha256": pixel_sha256(load_image(path))}
        for root, path in tqdm(found, desc="fingerprinting training images", unit="img", leave=False)
    ]


def release(checkpoint: str | Path, output: str | Path, ema: bool = True, fingerprint: bool = True) -> LMFN:
    """Writes the checkpoint's EMA (or raw, ``ema=False``) weights to ``output``.

    Returns:
        The released model, as loaded back from ``output``.

    Raises:
        CheckpointError: If the checkpoint cannot be read or its weights do not fit its config.
    """
    ckpt = load_checkpoint(checkpoint)
    config = LMFNConfig.from_dict(ckpt["model_config"])
    model = LMFN(config)
    try:
        load_state(model, ckpt["ema" if ema else "model"], str(checkpoint))
    except WeightsError as exc:
        raise CheckpointError(str(exc)) from None
    extra = {
        "model_name": model_name(config.scale),
        "weights": "ema" if ema else "raw",
        "training_steps": str(int(ckpt["step"])),
        "train_config": json.dumps(ckpt["train_config"]),
    }
    extra["train_images"] = "unavailable"
    if fingerprint:
        try:
            extra["train_images"] = json.dumps(fingerprint_training_images(ckpt["train_config"], config.scale))
        except (DataError, ImageError) as exc:
            print(f"note: training images not fingerprinted ({exc})", file=sys.stderr)
    save_weights(model, output, extra)
    return load_weights(output, scale=config.scale)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.release", description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path, help="training checkpoint (ckpt.pt)")
    parser.add_argument("--output", type=Path, required=True, help="safetensors file to write")
    parser.add_argument("--raw", action="store_true", help="release the raw weights instead of the EMA")
    parser.add_argument("--no-fingerprint", action="store_true",
                        help="do not record the training images' SHA-256 (train_images) in the metadata")
    args = parser.parse_args(argv)
    try:
        release(args.checkpoint, args.output, ema=not args.raw, fingerprint=not args.no_fingerprint)
    except CheckpointError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{args.output} sha256 {sha256_file(args.output)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
