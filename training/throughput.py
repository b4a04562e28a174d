"""``python -m training.throughput``: training iterations/s on this device, and what 2M cost.

Times the real iteration (forward, L1, backward, Adan, EMA) on random batches, by default the
paper's batch of 64 LR patches of 48x48, after a few warm-up iterations (which absorb
``torch.compile`` and cuDNN autotuning). With ``--data-root`` it also times the data pipeline
alone (DataLoader with ``--num-workers``), which must keep up with the device.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch

from lmfn_edge import cli
from lmfn_edge.model import LMFN
from lmfn_edge.registry import SCALES, model_name

from .config import ConfigError, TrainConfig
from .data import StepSampler, TrainPatches, find_pairs
from .engine import build_optimizer, ema_update, train_step

__all__ = ["measure_step", "measure_data", "main"]


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device = cuda, but CUDA is not available")
    return torch.device(name)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure_step(config: TrainConfig, iterations: int, warmup: int) -> dict[str, Any]:
    """Seconds per training iteration for ``config``'s model, batch, patch and device options."""
    device = _device(config.device)
    model_config = config.model_config()
    torch.manual_seed(config.seed)
    fmt = torch.channels_last if config.channels_last else torch.contiguous_format
    model = LMFN(model_config).to(device, memory_format=fmt)
    ema = copy.deepcopy(model).requires_grad_(False)
    optimizer = build_optimizer(model, config)
    train_model = torch.compile(model, mode=config.compile_mode) if config.compile else model
    p, s, b = config.patch_size, model_config.scale, config.batch_size
    lr_batch = torch.rand(b, 3, p, p, device=device).contiguous(memory_format=fmt)
    hr_batch = torch.rand(b, 3, p * s, p * s, device=device)

    def step() -> None:
        train_step(train_model, optimizer, lr_batch, hr_batch, config.amp_bf16)
        ema_update(ema, model, config.ema_decay)

    for _ in range(warmup):
        step()
    _sync(device)
    start = time.perf_counter()
    for _ in range(iterations):
        step()
    _sync(device)
    seconds = (time.perf_counter() - start) / iterations
    return {
        "model": config.model,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "batch_size": b,
        "patch_size": p,
        "amp_bf16": config.amp_bf16,
        "compile": config.compile and config.compile_mode,
        "channels_last": config.channels_last,
        "seconds_per_iteration": seconds,
        "iterations_per_s": 1.0 / seconds,
        "images_per_s": b / seconds,
        "hours_for_recipe": seconds * config.iterations / 3600.0,
        "recipe_iterations": config.iterations,
    }


def measure_data(config: TrainConfig, root: str, batches: int, cache_dir: Path) -> dict[str, Any]:
    """Batches/s the DataLoader delivers from ``root`` with ``config.num_workers`` workers."""
    from torch.utils.data import DataLoader

    scale = config.model_config().scale
    pairs = find_pairs(root, scale, cache_dir, config.patch_size)
    decoded = cache_dir / "decoded" if config.decoded_cache else None
    dataset = TrainPatches(pairs, scale, config.patch_size, config.seed, decoded)
    sampler = StepSampler(len(pairs), config.batch_size, config.seed)
    loader = iter(DataLoader(dataset, batch_sampler=sampler, num_workers=config.num_workers))
    next(loader)  # worker start-up (and, with decoded_cache, the first decodes) is not timed
    start = time.perf_counter()
    for _ in range(batches):
        next(loader)
    seconds = (time.perf_counter() - start) / batches
    return {"data_images": len(pairs), "num_workers": config.num_workers, "decoded_cache": config.decoded_cache,
            "data_batches_per_s": 1.0 / seconds, "data_images_per_s": config.batch_size / seconds}


def build_parser() -> argparse.ArgumentParser:
    p = cli.parser("training.throughput", "Training iterations/s on this device, and what the recipe's 2M cost.")
    p.add_argument("--model", default=model_name(2), choices=tuple(model_name(s) for s in SCALES))
    p.add_argument("--batch-size", type=cli.int_at_least(1), default=64)
    p.add_argument("--patch-size", type=cli.int_at_least(1), default=48)
    p.add_argument("--iterations", type=cli.int_at_least(1), default=10, help="timed iterations")
    p.add_argument("--warmup", type=cli.int_at_least(0), default=3, help="untimed iterations first")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--amp-bf16", action="store_true", help="bf16 autocast")
    p.add_argument("--compile", action="store_true", help="torch.compile the model")
    p.add_argument("--compile-mode", default="default", help="torch.compile mode, e.g. reduce-overhead")
    p.add_argument("--channels-last", action="store_true", help="NHWC memory format")
    p.add_argument("--data-root", help="also time the data pipeline on this folder")
    p.add_argument("--num-workers", type=cli.int_at_least(0), default=8, help="DataLoader workers for --data-root")
    p.add_argument("--decoded-cache", action="store_true", help="read patches from decoded .npy copies")
    p.add_argument("--cache-dir", type=Path, default=Path("runs/cache"), help="cache for --data-root")
    return p


def _run(args: argparse.Namespace) -> int:
    config = TrainConfig(
        model=args.model, batch_size=args.batch_size, patch_size=args.patch_size, device=args.device,
        amp_bf16=args.amp_bf16, compile=args.compile, compile_mode=args.compile_mode,
        channels_last=args.channels_last, num_workers=args.num_workers, decoded_cache=args.decoded_cache,
    )
    result = measure_step(config, args.iterations, args.warmup)
    if args.data_root:
        result.update(measure_data(config, args.data_root, max(args.iterations, 1), args.cache_dir))
    print(json.dumps(result))
    print(
        f"{result['model']} on {result['device']}: {result['iterations_per_s']:.3g} it/s, "
        f"{result['images_per_s']:.4g} images/s (batch {result['batch_size']} of {result['patch_size']}px); "
        f"{result['recipe_iterations']:,} iterations would take {result['hours_for_recipe']:.1f} h",
        file=sys.stderr,
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    return cli.run(build_parser(), _run, argv)


if __name__ == "__main__":
    sys.exit(main())
