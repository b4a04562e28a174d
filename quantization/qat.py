"""``python -m quantization.qat``: int8 quantization-aware fine-tuning of released LMFN weights.

PT2E QAT (torchao 0.18, ExecuTorch's XNNPACKQuantizer) on the deploy form, with the pieces of
the float recipe reused from ``training/``: patches and sampler (``training.data``), L1 + Adan
step and EMA (``training.engine``), atomic checkpoints (``training.checkpoint``), JSONL log and
plot. Schedule: fake-quant from the first step with observers tracking activation ranges (moving
average) and weight ranges; from ``freeze_observers_at`` on, scales and zero points are frozen
and the weights adapt to fixed grids. LMFN has no BatchNorm, so there are no BN statistics to
freeze. The EMA averages parameters only; the quantization state (scales, zero points) is the
live model's, which is frozen by the time the EMA has forgotten the early steps.

At the end the EMA model is converted (``convert_pt2e``), exported at one fixed tile (batch 1)
and saved as ``.pt2`` with its LMFN config inside; ``python -m lmfn_edge.export --precision
int8 --quantized X.pt2`` lowers it to an XNNPACK .pte. Resume is exact: the data stream is a
function of (seed, step), and the checkpoint holds the prepared model's parameters and
quantization state, the EMA, the optimizer and the RNG states.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from lmfn_edge.export import DYNAMIC_MULTIPLE
from lmfn_edge.model import LMFN, model_name
from lmfn_edge.weights import WeightsError, load_weights, sha256_file
from training.checkpoint import CHECKPOINT_NAME, CheckpointError, load_checkpoint, rng_state, save_checkpoint, set_rng_state
from training.config import apply_overrides, parse_set
from training.data import DataError, StepSampler, TrainPatches, find_pairs, load_validation
from training.engine import bicubic_psnr, build_optimizer, ema_update, train_step, validate
from training.plot import plot_log
from training.train import _RunLog

from .config import ConfigError, QATConfig, load_qat_config
from .pt2e import (
    QuantizationError,
    QuantizedInfo,
    convert,
    copy_prepared,
    disable_observers,
    export_quantized,
    observers_frozen,
    observers_paused,
    prepare,
    save_quantized,
)

__all__ = ["qat", "main"]

LOG_NAME, PLOT_NAME = "log.jsonl", "curves.png"
KIND = "qat"


class PadToMultiple(nn.Module):
    """Runs a captured graph (H/W multiples of 8, >= 16) on any image: edge-pads, then crops."""

    def __init__(self, model: nn.Module, scale: int, multiple: int = DYNAMIC_MULTIPLE, minimum: int = 16) -> None:
        super().__init__()
        self.model, self.scale, self.multiple, self.minimum = model, scale, multiple, minimum

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[2:]
        ph = max(self.minimum, h + (-h) % self.multiple) - h
        pw = max(self.minimum, w + (-w) % self.multiple) - w
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph), mode="replicate")
        return self.model(x)[:, :, : h * self.scale, : w * self.scale]


def load_float_model(config: QATConfig) -> tuple[LMFN, dict]:
    """The float weights to fine-tune and their record for the program's metadata."""
    if not config.weights:
        raise ConfigError("no float weights: pass --weights or set weights")
    try:
        model = load_weights(config.weights, scale=config.scale)
    except WeightsError as exc:
        raise ConfigError(str(exc)) from None
    return model, {"source": str(config.weights), "sha256": sha256_file(config.weights)}


def qat(
    config: QATConfig,
    output_dir: str | Path,
    resume: bool = False,
    progress: bool = True,
    output: str | Path | None = None,
) -> dict[str, Any]:
    """Fine-tunes (or resumes) in ``output_dir``; at the last step writes the int8 program.

    Args:
        config: The run.
        output_dir: Checkpoint, log and plot folder.
        resume: Continue from ``output_dir/ckpt.pt``.
        progress: Show a progress bar.
        output: Program path; default ``output_dir/lmfn_x{scale}_qat_int8.pt2``.

    Returns:
        ``step``, ``loss``, validation PSNR-Y of the float model, the fake-quant EMA and the
        converted q/dq model when validation ran, and ``program`` (the .pt2 path).

    Raises:
        ConfigError, DataError, CheckpointError: With a one-line message, before any training.
    """
    output_dir = Path(output_dir)
    output = Path(output) if output else output_dir / f"{model_name(config.scale)}_qat_int8.pt2"
    if not config.data_roots:
        raise ConfigError("no training data: pass --data-root or set data_roots")
    float_model, weights_info = load_float_model(config)
    ckpt_path = output_dir / CHECKPOINT_NAME
    ckpt = None
    if resume:
        ckpt = load_checkpoint(ckpt_path)
        if ckpt.get("kind") != KIND:
            raise CheckpointError(f"{ckpt_path} is not a QAT checkpoint")
        if ckpt["weights_sha256"] != weights_info["sha256"]:
            raise CheckpointError(f"{ckpt_path} fine-tunes other float weights than {config.weights}")
    elif ckpt_path.exists():
        raise CheckpointError(f"{ckpt_path} exists; pass --resume to continue it, or use another output dir")

    scale = config.scale
    cache_dir = Path(config.cache_dir).expanduser() if config.cache_dir else output_dir / "cache"
    pairs = []
    for root in config.data_roots:
        pairs += find_pairs(root, scale, cache_dir, config.patch_size, progress=progress)
    val_images = load_validation(config.val_root, scale, cache_dir) if config.val_root else []
    output_dir.mkdir(parents=True, exist_ok=True)

    device = torch.device("cuda" if config.device == "auto" and torch.cuda.is_available() else
                          "cpu" if config.device == "auto" else config.device)
    model = prepare(float_model, qat=True).to(device)
    ema = copy_prepared(model).requires_grad_(False)
    optimizer = build_optimizer(model, config)
    step = 0
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        ema.load_state_dict(ckpt["ema"])
        optimizer.load_state_dict(ckpt["optimizer"])
        set_rng_state(ckpt["rng"])
        step = int(ckpt["step"])
    else:
        torch.manual_seed(config.seed)

    sampler = StepSampler(len(pairs), config.batch_size, config.seed, start_step=step)
    loader = DataLoader(
        TrainPatches(pairs, scale, config.patch_size, config.seed),
        batch_sampler=sampler,
        num_workers=config.num_workers,
        generator=torch.Generator().manual_seed(config.seed),
    )
    log = _RunLog(output_dir / LOG_NAME, True, keep_until=step if ckpt is not None else None)
    summary: dict[str, Any] = {"step": step}
    if val_images:
        summary["bicubic_psnr_y"] = bicubic_psnr(val_images, scale)
        summary["val_psnr_y_float"] = validate(float_model.to(device), val_images, scale, device)
        if ckpt is None:
            log.write({"step": 0, "bicubic_psnr_y": summary["bicubic_psnr_y"], "val_psnr_y_float": summary["val_psnr_y_float"]})
    print(f"QAT {model_name(scale)} {float_model.config.to_dict()} from {config.weights}; {len(pairs)} training "
          f"images on {device}; step {step} of {config.iterations}", file=sys.stderr)

    model.train()
    bar = tqdm(total=config.iterations, initial=step, unit="it", disable=not progress, dynamic_ncols=True)
    loss_sum, count = torch.zeros((), device=device), 0
    batches = iter(loader)
    while step < config.iterations:
        if step >= config.freeze_observers_at and not observers_frozen(model):
            disable_observers(model)
            log.write({"step": step, "event": "observers frozen"})
        lr_batch, hr_batch = (t.to(device, non_blocking=True) for t in next(batches))
        loss_sum += train_step(model, optimizer, lr_batch, hr_batch)
        ema_update(ema, model, config.ema_decay)
        step, count = step + 1, count + 1
        bar.update()
        last = step == config.iterations
        if step % config.log_every == 0 or last:
            loss = float(loss_sum / count)
            log.write({"step": step, "loss": loss, "lr": config.lr})
            bar.set_postfix(loss=f"{loss:.4f}")
            summary.update(step=step, loss=loss)
            loss_sum.zero_()
            count = 0
        if val_images and ((config.val_every and step % config.val_every == 0) or last):
            record = _validate(model, ema, val_images, scale, device)
            summary.update(record)
            log.write({"step": step, **record})
            bar.write(f"step {step}: val PSNR-Y {record['val_psnr_y']:.2f} dB fake-quant EMA, "
                      f"{record['val_psnr_y_raw']:.2f} raw (float {summary['val_psnr_y_float']:.2f})")
        if (config.ckpt_every and step % config.ckpt_every == 0) or last:
            _save(ckpt_path, config, model, ema, optimizer, step, weights_info, float_model)
            plot_log(log.records, output_dir / PLOT_NAME)
    bar.close()
    del batches

    final = _final_model(model, ema, use_ema=config.ema_decay > 0).cpu()
    converted = convert(final)
    if val_images:
        summary["val_psnr_y_qdq"] = validate(PadToMultiple(converted, scale), val_images, scale, torch.device("cpu"))
        log.write({"step": step, "val_psnr_y_qdq": summary["val_psnr_y_qdq"]})
    info = QuantizedInfo(
        method=KIND,
        config=float_model.config.to_dict(),
        tile=config.tile,
        weights=weights_info,
        details={"steps": step, "freeze_observers_at": config.freeze_observers_at, "ema_decay": config.ema_decay,
                 "lr": config.lr, "batch_size": config.batch_size, "patch_size": config.patch_size},
    )
    save_quantized(export_quantized(converted, config.tile), output, info)
    summary["program"] = str(output)
    return summary


def _final_model(model: nn.Module, ema: nn.Module, use_ema: bool) -> nn.Module:
    """The EMA's parameters with the live model's quantization state (or the raw model)."""
    if not use_ema:
        return model
    params = dict(ema.named_parameters())
    ema.load_state_dict({k: params[k].detach() if k in params else v for k, v in model.state_dict().items()})
    return ema


def _validate(model: nn.Module, ema: nn.Module, images, scale: int, device: torch.device) -> dict[str, float]:
    final = _final_model(model, ema, use_ema=True)
    with observers_paused(model), observers_paused(final):
        record = {
            "val_psnr_y": validate(PadToMultiple(final, scale), images, scale, device),
            "val_psnr_y_raw": validate(PadToMultiple(model, scale), images, scale, device),
        }
    model.train()
    return record


def _save(path: Path, config: QATConfig, model, ema, optimizer, step: int, weights_info: dict, float_model: LMFN) -> None:
    save_checkpoint(path, {
        "kind": KIND,
        "step": step,
        "model": model.state_dict(),
        "ema": ema.state_dict(),
        "optimizer": optimizer.state_dict(),
        "rng": rng_state(),
        "qat_config": config.to_dict(),
        "model_config": float_model.config.to_dict(),
        "weights_sha256": weights_info["sha256"],
    })


def resolve_config(
    config_path: Path | None, sets: list[str], flags: dict[str, Any], resume_dir: Path | None = None
) -> QATConfig:
    """The run's config: file (or, on resume without one, the checkpoint's), flags, ``--set``."""
    if config_path is None and resume_dir is not None:
        config = QATConfig.from_dict(load_checkpoint(resume_dir / CHECKPOINT_NAME)["qat_config"], "checkpoint")
    else:
        config = load_qat_config(config_path)
    config = apply_overrides(config, {k: v for k, v in flags.items() if v}, "command line")
    return apply_overrides(config, dict(parse_set(s) for s in sets), "--set") if sets else config


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m quantization.qat", description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, help="TOML file over the QATConfig defaults (quantization/configs/)")
    parser.add_argument("--weights", help="float weights (.safetensors) to fine-tune")
    parser.add_argument("--data-root", action="append", help="training folder (repeatable)")
    parser.add_argument("--val-root", help="validation folder")
    parser.add_argument("--output-dir", type=Path, required=True, help="checkpoint, log and plot folder")
    parser.add_argument("--output", type=Path, help="int8 program (default OUTPUT_DIR/lmfn_x{scale}_qat_int8.pt2)")
    parser.add_argument("--resume", action="store_true", help="continue from OUTPUT_DIR/ckpt.pt")
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                        help="override one config field, e.g. --set iterations=500")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    try:
        flags = {"weights": args.weights, "data_roots": args.data_root, "val_root": args.val_root}
        config = resolve_config(args.config, args.sets, flags, args.output_dir if args.resume else None)
        summary = qat(config, args.output_dir, args.resume, not args.no_progress, args.output)
    except (ConfigError, DataError, CheckpointError, QuantizationError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
