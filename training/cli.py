"""The command-line plumbing the engine's commands share (``training.train``,
``quantization.qat``): their common flags and how a run's config is put together from
``--config``, the checkpoint, the flags and ``--set``."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from .checkpoint import CHECKPOINT_NAME, load_checkpoint
from .config import LoopConfig, apply_overrides, load_config, parse_sets

__all__ = ["add_run_arguments", "resolve_config"]


def add_run_arguments(p: argparse.ArgumentParser, config_help: str, set_example: str) -> None:
    """The flags every engine command shares (``training.train``, ``quantization.qat``)."""
    from lmfn_edge import cli

    p.add_argument("--config", type=Path, help=config_help)
    p.add_argument("--data-root", action="append", help="training folder (repeatable, e.g. DIV2K and Flickr2K)")
    p.add_argument("--val-root", help="benchmark folder validated every val_every iterations")
    p.add_argument("--output-dir", type=Path, required=True, help="checkpoint, log and plot folder")
    p.add_argument("--resume", action="store_true", help="continue from OUTPUT_DIR/ckpt.pt")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help=f"override one config field, e.g. {set_example}")
    cli.add_progress(p)


def resolve_config(cls: type[LoopConfig], args: argparse.Namespace, flags: dict[str, Any]) -> LoopConfig:
    """The run's config: ``--config`` over ``cls``'s defaults (or, on ``--resume`` without one,
    the checkpoint's config), then ``flags`` that are given, then ``--set``."""
    if args.config is None and args.resume:
        config = cls.from_dict(load_checkpoint(args.output_dir / CHECKPOINT_NAME)["config"], "checkpoint")
    else:
        config = load_config(args.config, None, cls)
    config = apply_overrides(config, {k: v for k, v in flags.items() if v is not None}, "command line")
    return apply_overrides(config, parse_sets(args.sets), "--set") if args.sets else config
