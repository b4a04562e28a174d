"""python -m training.train: the LMFN recipe on a CPU, a GPU, or many GPUs with torchrun.

The same command runs single-process or, under ``torchrun --nproc_per_node N``, as N DDP
processes that split each global batch (see ``training.dist``). The loop, checkpoints, exact
resume and the run log are the shared engine's (:mod:`training.loop`); this module adds the
float model: seeded init or ``init_from``, ``torch.compile`` and DDP.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from lmfn_edge import cli
from lmfn_edge.model import LMFN

from .checkpoint import CHECKPOINT_NAME, CheckpointError, init_from, load_checkpoint
from .config import TrainConfig, apply_overrides, load_config, parse_set
from .loop import Trainer, copy_for_ema

__all__ = ["FloatTrainer", "train", "main"]


class FloatTrainer(Trainer):
    """The paper's recipe: an LMFN from its config (or ``init_from``), optionally compiled."""

    kind = "train"

    @property
    def scale(self) -> int:
        return self.config.scale

    def describe(self, model: nn.Module) -> str:
        params = sum(p.numel() for p in model.parameters())
        return f"{self.config.model} {model.config.to_dict()}: {params} params"

    def check_resume(self, ckpt: dict[str, Any]) -> None:
        if ckpt["model_config"] != self.config.model_config().to_dict():
            raise CheckpointError(f"the checkpoint holds {ckpt['model_config']}, but the config asks for "
                                  f"{self.config.model_config().to_dict()}")

    def build(self, ckpt, device: torch.device) -> tuple[nn.Module, nn.Module]:
        model = LMFN(self.config.model_config())
        if ckpt is None and self.config.init_from:
            copied, left = init_from(model, self.config.init_from)
            if self.ctx.is_main:
                print(f"init_from {self.config.init_from}: {copied} tensors copied, {len(left)} left as initialised",
                      file=sys.stderr)
        return model, copy_for_ema(model)

    def wrap(self, model: nn.Module) -> nn.Module:
        if self.config.compile:
            model = torch.compile(model, mode=self.config.compile_mode)
        if self.ctx.distributed:
            device = self.ctx.device
            model = DistributedDataParallel(model, device_ids=[self.ctx.local_rank] if device.type == "cuda" else None)
        return model


def train(config: TrainConfig, output_dir: str | Path, resume: bool = False, progress: bool = True) -> dict[str, Any]:
    """Trains (or resumes) a run in ``output_dir``; call it the same way in every process.

    Returns:
        ``step``, the last logged ``loss``, and ``val_psnr_y`` (EMA), ``val_psnr_y_raw`` and
        ``bicubic_psnr_y`` when validation ran (on rank 0).

    Raises:
        ConfigError, DataError, CheckpointError: With a one-line message, before any training.
    """
    return FloatTrainer(config, output_dir, progress).run(resume)


def resolve_config(
    config_path: Path | None, sets: list[str], data_roots: list[str] | None, val_root: str | None,
    resume_dir: Path | None = None,
) -> TrainConfig:
    """The run's config: file (or, on resume without one, the checkpoint's), flags, ``--set``."""
    if config_path is None and resume_dir is not None:
        config = TrainConfig.from_dict(load_checkpoint(resume_dir / CHECKPOINT_NAME)["config"], "checkpoint")
    else:
        config = load_config(config_path)
    flags: dict[str, Any] = {}
    if data_roots:
        flags["data_roots"] = data_roots
    if val_root is not None:
        flags["val_root"] = val_root
    config = apply_overrides(config, flags, "command line")
    return apply_overrides(config, dict(parse_set(s) for s in sets), "--set") if sets else config


def build_parser() -> argparse.ArgumentParser:
    p = cli.parser("training.train", "Train LMFN with the paper's recipe; run under torchrun for several GPUs.")
    p.add_argument("--config", type=Path, help="TOML file over the TrainConfig defaults")
    p.add_argument("--data-root", action="append", help="training folder (repeat for DIV2K + Flickr2K)")
    p.add_argument("--val-root", help="benchmark folder validated every val_every iterations")
    p.add_argument("--output-dir", type=Path, required=True, help="checkpoint, log and plot folder")
    p.add_argument("--resume", action="store_true", help="continue from OUTPUT_DIR/ckpt.pt")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help="override one config field, e.g. --set learning_rate=1e-3 --set model_overrides.channels=16")
    cli.add_progress(p)
    return p


def _run(args: argparse.Namespace) -> int:
    from lmfn_edge.io import check_output

    check_output(args.output_dir, folder=True, flag="--output-dir")
    config = resolve_config(args.config, args.sets, args.data_root, args.val_root,
                            args.output_dir if args.resume else None)
    summary = train(config, args.output_dir, resume=args.resume, progress=not args.no_progress)
    if int(os.environ.get("RANK", 0)) == 0:
        print(json.dumps(summary))
    return 0


def main(argv: list[str] | None = None) -> int:
    return cli.run(build_parser(), _run, argv)


if __name__ == "__main__":
    sys.exit(main())
