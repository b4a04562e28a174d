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

from .checkpoint import CheckpointError, init_from, read_init_state
from .cli import add_run_arguments, resolve_config
from .config import TrainConfig
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

    def inputs(self) -> list[str | Path]:
        return [*super().inputs(), self.config.init_from]

    def check_resume(self, ckpt: dict[str, Any]) -> None:
        if ckpt["model_config"] != self.config.model_config().to_dict():
            raise CheckpointError(f"the checkpoint holds {ckpt['model_config']}, but the config asks for "
                                  f"{self.config.model_config().to_dict()}")

    def prepare(self, ckpt: dict[str, Any] | None) -> None:
        # init_from is read, and tried on a throwaway model (refused if nothing fits or a tensor
        # is unusable), before the data is touched.
        self.init_state = None
        if ckpt is None and self.config.init_from:
            self.init_state = read_init_state(self.config.init_from)
            init_from(LMFN(self.config.model_config()), self.init_state, self.config.init_from)

    def build(self, ckpt, device: torch.device) -> tuple[nn.Module, nn.Module]:
        model = LMFN(self.config.model_config())
        if self.init_state is not None:
            copied, left = init_from(model, self.init_state, self.config.init_from)
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


def train(config: TrainConfig, output_dir: str | Path, resume: bool = False, progress: bool = True,
          reads: tuple[str | Path, ...] = ()) -> dict[str, Any]:
    """Trains (or resumes) a run in ``output_dir``; call it the same way in every process.

    ``reads`` names files the caller read for this run (its TOML config), which the run must
    not write over, besides the config's own inputs (data, validation, ``init_from``).

    Returns:
        ``step``, the last logged ``loss``, and ``val_psnr_y`` (EMA), ``val_psnr_y_raw`` and
        ``bicubic_psnr_y`` when validation ran (on rank 0).

    Raises:
        ConfigError, DataError, CheckpointError: With a one-line message, before any training.
    """
    return FloatTrainer(config, output_dir, progress, reads).run(resume)


def build_parser() -> argparse.ArgumentParser:
    p = cli.parser("training.train", "Train LMFN with the paper's recipe; run under torchrun for several GPUs.")
    add_run_arguments(p, "TOML file over the TrainConfig defaults (training/configs/)",
                      "--set learning_rate=1e-3 --set model_overrides.channels=16")
    return p


def _run(args: argparse.Namespace) -> int:
    config = resolve_config(TrainConfig, args, {"data_roots": args.data_root, "val_root": args.val_root})
    summary = train(config, args.output_dir, resume=args.resume, progress=not args.no_progress,
                    reads=(args.config,) if args.config else ())
    if int(os.environ.get("RANK", 0)) == 0:
        print(json.dumps(summary))
    return 0


def main(argv: list[str] | None = None) -> int:
    return cli.run(build_parser(), _run, argv)


if __name__ == "__main__":
    sys.exit(main())
