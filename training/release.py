"""``python -m training.release CKPT --output W.safetensors``: release weights from a checkpoint.

The EMA weights are released, as BasicSR's tests load ``params_ema``; the file is safetensors
with the model config and training facts (steps, recipe) in its metadata, and is checked by
loading it back with ``lmfn_edge.model.weights.load_weights``.

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

from lmfn_edge import cli
from lmfn_edge.files import check_output
from lmfn_edge.io import ImageError, load_image
from lmfn_edge.model import LMFN, LMFNConfig, model_name
from lmfn_edge.model.weights import (
    WeightsError,
    load_state,
    load_weights,
    save_weights,
    sha256_file,
)

from .checkpoint import CheckpointError, load_checkpoint
from .config import ConfigError, TrainConfig
from .data import DataError, hr_images
from .skimage_photos import pixel_sha256

__all__ = ["release", "main"]


def fingerprint_training_images(train_config: TrainConfig, scale: int) -> list[dict[str, str]]:
    """``{"root", "file", "sha256"}`` of every HR image under the config's ``data_roots``.

    Raises:
        DataError, ImageError: If a folder or image cannot be read.
    """
    found = [(root, path) for root in train_config.data_roots for path in hr_images(root, scale)]
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
    if ckpt["kind"] != "train":
        raise CheckpointError(f"{checkpoint} is a {ckpt['kind']} checkpoint; release takes float training checkpoints")
    config = LMFNConfig.from_dict(ckpt["model_config"])  # validated by load_checkpoint
    if "data_roots" not in ckpt["config"]:
        raise CheckpointError(f"{checkpoint}: its config lacks data_roots, so the training images cannot be named")
    try:
        train_config = TrainConfig.from_dict(ckpt["config"], f"{checkpoint} config")
    except ConfigError as exc:
        raise CheckpointError(str(exc)) from None
    model = LMFN(config)
    try:
        load_state(model, ckpt["ema" if ema else "model"], str(checkpoint))
    except WeightsError as exc:
        raise CheckpointError(str(exc)) from None
    extra = {
        "model_name": model_name(config.scale),
        "weights": "ema" if ema else "raw",
        "training_steps": str(int(ckpt["step"])),
        "train_config": json.dumps(ckpt["config"]),
    }
    extra["train_images"] = "unavailable"
    if fingerprint:
        try:
            extra["train_images"] = json.dumps(fingerprint_training_images(train_config, config.scale))
        except (DataError, ImageError) as exc:
            print(f"note: training images not fingerprinted ({exc})", file=sys.stderr)
    save_weights(model, output, extra)
    return load_weights(output, scale=config.scale)


def build_parser() -> argparse.ArgumentParser:
    p = cli.parser("training.release", "Release weights (safetensors) from a training checkpoint.")
    p.add_argument("checkpoint", type=Path, help="training checkpoint (ckpt.pt)")
    p.add_argument("--output", type=Path, required=True, help="safetensors file to write")
    p.add_argument("--raw", action="store_true", help="release the raw weights instead of the EMA")
    p.add_argument("--no-fingerprint", action="store_true",
                   help="do not record the training images' SHA-256 (train_images) in the metadata")
    return p


def _run(args: argparse.Namespace) -> int:
    if args.output.suffix != ".safetensors":
        raise CheckpointError(f"--output {args.output} must end in .safetensors")
    check_output(args.output, inputs=(args.checkpoint,), flag="--output")
    release(args.checkpoint, args.output, ema=not args.raw, fingerprint=not args.no_fingerprint)
    print(f"{args.output} sha256 {sha256_file(args.output)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    return cli.run(build_parser(), _run, argv)


if __name__ == "__main__":
    sys.exit(main())
