"""``python -m training.train``: the LMFN recipe on a CPU, a GPU, or many GPUs with torchrun.

The same command runs single-process or, under ``torchrun --nproc_per_node N``, as N DDP
processes that split each global batch (see ``training.dist``). Rank 0 alone writes: the resume
checkpoint ``ckpt.pt``, the JSONL log ``log.jsonl`` and the plot ``curves.png``.

Resume is exact: the data stream is a function of (seed, step) and the checkpoint holds model,
EMA, optimizer and RNG states, so stopping at N and resuming to 2N gives the weights of a run
straight to 2N.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as torch_dist
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from tqdm import tqdm

from lmfn_edge.model import LMFN

from . import dist
from .checkpoint import (
    CHECKPOINT_NAME,
    CheckpointError,
    init_from,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from .config import ConfigError, TrainConfig, apply_overrides, load_config, parse_set
from .data import DataError, ImagePair, StepSampler, TrainPatches, ValImage, find_pairs, load_validation
from .engine import bicubic_psnr, build_optimizer, ema_update, train_step, validate
from .plot import plot_log

__all__ = ["train", "main"]

LOG_NAME = "log.jsonl"
PLOT_NAME = "curves.png"

# Fields whose change on resume makes the run differ from an uninterrupted one.
_STREAM_FIELDS = ("seed", "batch_size", "patch_size", "data_roots", "lr", "betas", "weight_decay", "ema_decay")


def train(config: TrainConfig, output_dir: str | Path, resume: bool = False, progress: bool = True) -> dict[str, Any]:
    """Trains (or resumes) a run in ``output_dir``; call it the same way in every process.

    Returns:
        ``step``, the last logged ``loss``, and ``val_psnr_y`` (EMA), ``val_psnr_y_raw`` and
        ``bicubic_psnr_y`` when validation ran (on rank 0).

    Raises:
        ConfigError, DataError, CheckpointError: With a one-line message, before any training.
    """
    output_dir = Path(output_dir)
    if not config.data_roots:
        raise ConfigError("no training data: pass --data-root or set data_roots")
    ckpt_path = output_dir / CHECKPOINT_NAME
    ckpt = None
    if resume:
        ckpt = load_checkpoint(ckpt_path)
        _check_resume(ckpt, config)
    elif ckpt_path.exists():
        raise CheckpointError(f"{ckpt_path} exists; pass --resume to continue it, or use another output dir")

    # Data is found (and missing LR images made) before the process group exists, so a data
    # error stops every rank the same way instead of leaving some waiting at a barrier.
    rank, world_size = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    scale = config.model_config().scale
    cache_dir = _cache_dir(config, output_dir)
    pairs: list[ImagePair] = []
    for root in config.data_roots:
        pairs += find_pairs(root, scale, cache_dir, config.patch_size, (rank, world_size), progress and rank == 0)
    val_images = load_validation(config.val_root, scale, cache_dir) if config.val_root and rank == 0 else []
    if ckpt is not None and ckpt["sampler"]["num_images"] != len(pairs) and rank == 0:
        print(f"note: the data now holds {len(pairs)} images, the checkpoint's {ckpt['sampler']['num_images']}; "
              "resume is not exact", file=sys.stderr)

    ctx = dist.setup(config.device)
    try:
        return _run(config, output_dir, ctx, ckpt, pairs, val_images, progress)
    finally:
        dist.cleanup()


def _run(
    config: TrainConfig,
    output_dir: Path,
    ctx: dist.DistContext,
    ckpt: dict[str, Any] | None,
    pairs: list[ImagePair],
    val_images: list[ValImage],
    progress: bool,
) -> dict[str, Any]:
    model_config = config.model_config()
    scale, device = model_config.scale, ctx.device
    if ctx.is_main:
        output_dir.mkdir(parents=True, exist_ok=True)

    torch.manual_seed(config.seed)  # the same initial weights on every rank
    model = LMFN(model_config)
    if ckpt is None and config.init_from:
        copied, left = init_from(model, config.init_from)
        if ctx.is_main:
            print(f"init_from {config.init_from}: {copied} tensors copied, {len(left)} left as initialised", file=sys.stderr)
    ema = copy.deepcopy(model).requires_grad_(False).eval()
    fmt = torch.channels_last if config.channels_last else torch.contiguous_format
    model.to(device, memory_format=fmt)
    ema.to(device, memory_format=fmt)
    optimizer = build_optimizer(model, config)

    step = 0
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        ema.load_state_dict(ckpt["ema"])
        optimizer.load_state_dict(ckpt["optimizer"])
        step = int(ckpt["step"])
    rngs = ckpt["rng"] if ckpt is not None else []
    if len(rngs) == ctx.world_size:
        set_rng_state(rngs[ctx.rank])
    else:  # fresh run, or resumed on another number of processes
        _seed_everything(config.seed + ctx.rank)

    train_model: torch.nn.Module = model
    if config.compile:
        train_model = torch.compile(train_model, mode=config.compile_mode)
    if ctx.distributed:
        train_model = DistributedDataParallel(train_model, device_ids=[ctx.local_rank] if device.type == "cuda" else None)

    decoded_dir = _cache_dir(config, output_dir) / "decoded" if config.decoded_cache else None
    sampler = StepSampler(len(pairs), config.batch_size, config.seed, ctx.rank, ctx.world_size, start_step=step)
    loader = DataLoader(
        TrainPatches(pairs, scale, config.patch_size, config.seed, decoded_dir),
        batch_sampler=sampler,
        num_workers=config.num_workers,
        pin_memory=device.type == "cuda",
        # Worker seeds would otherwise be drawn from the global torch RNG; the samples do not
        # need them (each draws from (seed, sample)), but the global stream must stay untouched.
        generator=torch.Generator().manual_seed(config.seed),
    )

    log = _RunLog(output_dir / LOG_NAME, ctx.is_main, keep_until=step if ckpt is not None else None)
    summary: dict[str, Any] = {"step": step}
    if ctx.is_main:
        params = sum(p.numel() for p in model.parameters())
        print(f"{config.model} {model_config.to_dict()}: {params} params; {len(pairs)} training images; "
              f"{ctx.world_size} process(es) on {device}; step {step} of {config.iterations}", file=sys.stderr)
        if val_images:
            summary["bicubic_psnr_y"] = bicubic_psnr(val_images, scale)
            if ckpt is None:
                log.write({"step": 0, "bicubic_psnr_y": summary["bicubic_psnr_y"]})

    bar = tqdm(total=config.iterations, initial=step, unit="it", disable=not (ctx.is_main and progress), dynamic_ncols=True)
    loss_sum, count, tick = torch.zeros((), device=device), 0, time.perf_counter()
    batches = iter(loader)
    started = time.monotonic()
    while step < config.iterations:
        lr_batch, hr_batch = next(batches)
        lr_batch = lr_batch.to(device, non_blocking=True).contiguous(memory_format=fmt)
        hr_batch = hr_batch.to(device, non_blocking=True)
        loss_sum += train_step(train_model, optimizer, lr_batch, hr_batch, config.amp_bf16)
        ema_update(ema, model, config.ema_decay)
        step, count = step + 1, count + 1
        bar.update()
        last = step == config.iterations or (
            config.time_limit > 0
            and step % config.log_every == 0
            and _time_is_up(ctx, time.monotonic() - started, config.time_limit)
        )
        if step % config.log_every == 0 or last:
            elapsed = time.perf_counter() - tick
            loss = _mean_over_ranks(ctx, loss_sum / count)
            log.write({"step": step, "loss": loss, "lr": config.lr, "it_per_s": count / elapsed,
                       "images_per_s": count * config.batch_size / elapsed})
            bar.set_postfix(loss=f"{loss:.4f}")
            summary.update(step=step, loss=loss)
            loss_sum.zero_()
            count, tick = 0, time.perf_counter()
        if val_images and ((config.val_every and step % config.val_every == 0) or last):
            summary["val_psnr_y"] = validate(ema, val_images, scale, device)
            # The raw weights too: early in a run the EMA still mostly holds the initial weights.
            summary["val_psnr_y_raw"] = validate(model, val_images, scale, device)
            model.train()
            log.write({"step": step, "val_psnr_y": summary["val_psnr_y"], "val_psnr_y_raw": summary["val_psnr_y_raw"]})
            bar.write(f"step {step}: val PSNR-Y {summary['val_psnr_y']:.2f} dB EMA, {summary['val_psnr_y_raw']:.2f} "
                      f"raw (bicubic {summary['bicubic_psnr_y']:.2f})")
        if (config.ckpt_every and step % config.ckpt_every == 0) or last:
            _save(output_dir / CHECKPOINT_NAME, ctx, config, model, ema, optimizer, step, len(pairs))
            if ctx.is_main:
                plot_log(log.records, output_dir / PLOT_NAME)
        if last:
            break
    bar.close()
    if step < config.iterations and ctx.is_main:
        print(f"time_limit of {config.time_limit:g} s reached at step {step}; --resume continues", file=sys.stderr)
    del batches  # stops the DataLoader workers
    return summary


def _save(path: Path, ctx, config: TrainConfig, model, ema, optimizer, step: int, num_images: int) -> None:
    rngs = dist.gather_objects(ctx, rng_state())  # a collective: every rank takes part
    if not ctx.is_main:
        return
    save_checkpoint(path, {
        "step": step,
        "model": model.state_dict(),
        "ema": ema.state_dict(),
        "optimizer": optimizer.state_dict(),
        "rng": rngs,
        "sampler": {"next_step": step, "num_images": num_images, "seed": config.seed, "batch_size": config.batch_size},
        "train_config": config.to_dict(),
        "model_config": model.config.to_dict(),
        "world_size": ctx.world_size,
    })


def _cache_dir(config: TrainConfig, output_dir: Path) -> Path:
    return Path(config.cache_dir).expanduser() if config.cache_dir else output_dir / "cache"


def _seed_everything(seed: int) -> None:
    import random

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _time_is_up(ctx: dist.DistContext, elapsed: float, limit: float) -> bool:
    """Whether any rank has passed the limit, so that all ranks stop at the same step."""
    up = torch.tensor(float(elapsed > limit), device=ctx.device)
    if ctx.distributed:
        torch_dist.all_reduce(up, op=torch_dist.ReduceOp.MAX)
    return bool(up)


def _mean_over_ranks(ctx: dist.DistContext, value: torch.Tensor) -> float:
    if ctx.distributed:
        value = value.clone()
        torch_dist.all_reduce(value)  # gloo has no AVG
        value /= ctx.world_size
    return float(value)


def _check_resume(ckpt: dict[str, Any], config: TrainConfig) -> None:
    if ckpt["model_config"] != config.model_config().to_dict():
        raise CheckpointError(
            f"the checkpoint holds {ckpt['model_config']}, but the config asks for {config.model_config().to_dict()}"
        )
    old, new = ckpt["train_config"], config.to_dict()
    changed = [k for k in _STREAM_FIELDS if _plain(old.get(k)) != _plain(new[k])]
    if changed and int(os.environ.get("RANK", 0)) == 0:
        print(f"note: resuming with changed {', '.join(changed)}; the run will differ from an uninterrupted one",
              file=sys.stderr)


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, (list, tuple)) else value


class _RunLog:
    """Append-only JSONL log; on resume, records past the checkpoint's step are dropped."""

    def __init__(self, path: Path, enabled: bool, keep_until: int | None) -> None:
        self.path, self.enabled, self.records = path, enabled, []
        if not enabled:
            return
        if keep_until is not None and path.is_file():
            lines = path.read_text(encoding="utf-8").splitlines()
            self.records = [r for r in map(json.loads, filter(None, lines)) if r["step"] <= keep_until]
        path.write_text("".join(json.dumps(r) + "\n" for r in self.records), encoding="utf-8")

    def write(self, record: dict[str, Any]) -> None:
        if self.enabled:
            record = {**record, "time": round(time.time(), 3)}
            self.records.append(record)
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(json.dumps(record) + "\n")


def resolve_config(
    config_path: Path | None, sets: list[str], data_roots: list[str] | None, val_root: str | None,
    resume_dir: Path | None = None,
) -> TrainConfig:
    """The run's config: file (or, on resume without one, the checkpoint's), flags, ``--set``."""
    if config_path is None and resume_dir is not None:
        config = TrainConfig.from_dict(load_checkpoint(resume_dir / CHECKPOINT_NAME)["train_config"], "checkpoint")
    else:
        config = load_config(config_path)
    flags: dict[str, Any] = {}
    if data_roots:
        flags["data_roots"] = data_roots
    if val_root is not None:
        flags["val_root"] = val_root
    config = apply_overrides(config, flags, "command line")
    return apply_overrides(config, dict(parse_set(s) for s in sets), "--set") if sets else config


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m training.train",
        description="Train LMFN with the paper's recipe; run under torchrun for several GPUs.",
    )
    parser.add_argument("--config", type=Path, help="TOML file over the TrainConfig defaults")
    parser.add_argument("--data-root", action="append", help="training folder (repeat for DIV2K + Flickr2K)")
    parser.add_argument("--val-root", help="benchmark folder validated every val_every iterations")
    parser.add_argument("--output-dir", type=Path, required=True, help="checkpoint, log and plot folder")
    parser.add_argument("--resume", action="store_true", help="continue from OUTPUT_DIR/ckpt.pt")
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                        help="override one config field, e.g. --set lr=1e-3 --set model_overrides.channels=16")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    try:
        config = resolve_config(args.config, args.sets, args.data_root, args.val_root,
                                args.output_dir if args.resume else None)
        summary = train(config, args.output_dir, resume=args.resume, progress=not args.no_progress)
    except (ConfigError, DataError, CheckpointError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if int(os.environ.get("RANK", 0)) == 0:
        print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
