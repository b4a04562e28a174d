"""``python -m training.release CKPT --output W.safetensors``: release weights from a checkpoint.

The EMA weights are released, as BasicSR's tests load ``params_ema``; the file is safetensors
with the model config and training facts (steps, recipe) in its metadata, and is checked by
loading it back with ``lmfn_edge.weights.load_weights``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from lmfn_edge.model import LMFN, LMFNConfig, model_name
from lmfn_edge.weights import WeightsError, load_state, load_weights, save_weights, sha256_file

from .checkpoint import CheckpointError, load_checkpoint

__all__ = ["release", "main"]


def release(checkpoint: str | Path, output: str | Path, ema: bool = True) -> LMFN:
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
    save_weights(model, output, extra)
    return load_weights(output, scale=config.scale)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.release", description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path, help="training checkpoint (ckpt.pt)")
    parser.add_argument("--output", type=Path, required=True, help="safetensors file to write")
    parser.add_argument("--raw", action="store_true", help="release the raw weights instead of the EMA")
    args = parser.parse_args(argv)
    try:
        release(args.checkpoint, args.output, ema=not args.raw)
    except CheckpointError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{args.output} sha256 {sha256_file(args.output)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
