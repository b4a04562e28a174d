"""python -m quantization.qat: int8 quantization-aware fine-tuning of released LMFN weights.

PT2E QAT (torchao 0.18, ExecuTorch's XNNPACKQuantizer) on the deploy form
(:mod:`lmfn_edge.deployment.pt2e`), run by the float recipe's engine (:mod:`training.loop`:
data, L1 + Adan step, EMA, checkpoints, exact resume, run log and plot); the L1 target is the HR
patch or, with ``target = "float"``, the float model's output (distillation). Schedule:
fake-quant from the first step with observers tracking activation ranges (moving average) and
weight ranges; from ``freeze_observers_at`` on, scales and zero points are frozen and the
weights adapt to fixed grids. LMFN has no BatchNorm, so there are no BN statistics to freeze.
The EMA averages parameters only; the quantization state (scales, zero points) is the live
model's, which is frozen by the time the EMA has forgotten the early steps.

At the last step the EMA model (or, with ``release = "raw"``, the live one) is saved twice: as
int8 parameters (``lmfn_x{s}_int8.safetensors``, :mod:`lmfn_edge.deployment.int8`: the prepared
graph's weights and frozen quantization state, from which ``python -m lmfn_edge.export
--precision int8 --quantized X.safetensors`` builds a program of any shape, and which the
package embeds as its default int8), and converted (``convert_pt2e``), exported at one fixed
tile (batch 1) and saved as a ``.pt2`` program (:mod:`lmfn_edge.deployment.quantized`).
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

from lmfn_edge import cli
from lmfn_edge.deployment.int8 import Int8Info, save_int8_params
from lmfn_edge.deployment.pt2e import (
    QuantizationError,
    convert,
    copy_prepared,
    export_converted,
    prepare,
)
from lmfn_edge.deployment.quantized import QuantizedInfo, save_quantized
from lmfn_edge.manifest import DYNAMIC_MULTIPLE, MIN_DYNAMIC, padded_side
from lmfn_edge.model import model_name
from lmfn_edge.model.weights import load_model
from lmfn_edge.registry import int8_params_name
from training.checkpoint import CheckpointError
from training.cli import add_run_arguments, resolve_config
from training.config import ConfigError
from training.engine import validate
from training.loop import Trainer

from .config import QATConfig
from .observers import disable_observers, observers_frozen, observers_paused

__all__ = ["QATTrainer", "qat", "main"]


class PadToMultiple(nn.Module):
    """Runs a captured graph (H/W multiples of 8, >= 16) on any image: edge-pads, then crops."""

    def __init__(self, model: nn.Module, scale: int, multiple: int = DYNAMIC_MULTIPLE, minimum: int = MIN_DYNAMIC):
        super().__init__()
        self.model, self.scale, self.multiple, self.minimum = model, scale, multiple, minimum

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[2:]
        ph = padded_side(h, self.multiple, self.minimum) - h
        pw = padded_side(w, self.multiple, self.minimum) - w
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph), mode="replicate")
        return self.model(x)[:, :, : h * self.scale, : w * self.scale]


class QATTrainer(Trainer):
    """The engine on a PT2E-prepared graph of released float weights."""

    kind = "qat"

    def __init__(self, config: QATConfig, output_dir: str | Path, progress: bool = True,
                 output: str | Path | None = None, reads: tuple[str | Path, ...] = ()) -> None:
        super().__init__(config, output_dir, progress, reads)
        if not config.weights:
            raise ConfigError("no float weights: pass --weights or set weights")
        self.output = Path(output) if output else self.output_dir / f"{model_name(config.scale)}_qat_int8.pt2"
        if self.output.suffix != ".pt2":
            raise QuantizationError(f"--output {self.output} must end in .pt2")
        self.params = self.output.with_name(int8_params_name(config.scale))
        self.float_model, self.weights = load_model(config.scale, config.weights)

    def inputs(self) -> list[str | Path]:
        return [*super().inputs(), self.config.weights]

    def outputs(self) -> list[Path]:
        return [self.output, self.params]

    def describe(self, model: nn.Module) -> str:
        return f"QAT {model_name(self.scale)} {self.float_model.config.to_dict()} from {self.config.weights}"

    def check_resume(self, ckpt: dict[str, Any]) -> None:
        if ckpt.get("weights_sha256") != self.weights.sha256:
            raise CheckpointError(f"the checkpoint fine-tunes other float weights than {self.config.weights}")

    def build(self, ckpt, device: torch.device) -> tuple[nn.Module, nn.Module]:
        if self.ctx.world_size > 1:
            raise ConfigError("QAT runs in one process; start it without torchrun")
        model = prepare(self.float_model, qat=True)
        return model, copy_prepared(model).requires_grad_(False)

    def on_start(self, summary: dict[str, Any], fresh: bool, val_images) -> None:
        super().on_start(summary, fresh=False, val_images=val_images)
        if val_images:
            summary["val_psnr_y_float"] = validate(self.float_model.to(self.ctx.device), val_images, self.scale,
                                                   self.ctx.device)
            if fresh:
                self.log.write({"step": 0, "bicubic_psnr_y": summary["bicubic_psnr_y"],
                                "val_psnr_y_float": summary["val_psnr_y_float"]})

    def before_step(self, model: nn.Module, step: int) -> None:
        if step >= self.config.freeze_observers_at and not observers_frozen(model):
            disable_observers(model)
            self.log.write({"step": step, "event": "observers frozen"})

    def target(self, lr_batch: torch.Tensor, hr_batch: torch.Tensor) -> torch.Tensor:
        if self.config.target == "hr":
            return hr_batch
        with torch.no_grad():
            return self.float_model.to(lr_batch.device)(lr_batch)

    def validate(self, model: nn.Module, ema: nn.Module, val_images) -> dict[str, float]:
        device = self.ctx.device
        final = _final_model(model, ema, use_ema=True)
        with observers_paused(model), observers_paused(final):
            record = {
                "val_psnr_y": validate(PadToMultiple(final, self.scale), val_images, self.scale, device),
                "val_psnr_y_raw": validate(PadToMultiple(model, self.scale), val_images, self.scale, device),
            }
        model.train()
        return record

    def report(self, step: int, record: dict[str, float], summary: dict[str, Any]) -> str:
        return (f"step {step}: val PSNR-Y {record['val_psnr_y']:.2f} dB fake-quant EMA, {record['val_psnr_y_raw']:.2f} "
                f"raw (float {summary.get('val_psnr_y_float', float('nan')):.2f})")

    def checkpoint_extra(self) -> dict[str, Any]:
        return {"weights_sha256": self.weights.sha256}

    def model_config(self, model: nn.Module) -> dict[str, Any]:
        return self.float_model.config.to_dict()

    def finish(self, model: nn.Module, ema: nn.Module, summary: dict[str, Any], val_images) -> None:
        config = self.config
        use_ema = config.ema_decay > 0 and config.release == "ema"
        final = _final_model(model, ema, use_ema=use_ema).cpu()
        details = {"steps": summary["step"], "freeze_observers_at": config.freeze_observers_at,
                   "ema_decay": config.ema_decay, "released": "ema" if use_ema else "raw",
                   "learning_rate": config.learning_rate, "target": config.target,
                   "batch_size": config.batch_size, "patch_size": config.patch_size}
        params = self.params
        save_int8_params(final, params, Int8Info(self.float_model.config.to_dict(), self.kind, self.weights.to_dict(),
                                                 details))
        summary["int8_params"] = str(params)
        converted = convert(final)
        if val_images:
            summary["val_psnr_y_qdq"] = validate(PadToMultiple(converted, self.scale), val_images, self.scale,
                                                 torch.device("cpu"))
            self.log.write({"step": summary["step"], "val_psnr_y_qdq": summary["val_psnr_y_qdq"]})
        info = QuantizedInfo(
            method=self.kind,
            config=self.float_model.config.to_dict(),
            tile=config.tile,
            weights=self.weights.to_dict(),
            details=details,
        )
        save_quantized(export_converted(converted, config.tile), self.output, info)
        summary["program"] = str(self.output)


def _final_model(model: nn.Module, ema: nn.Module, use_ema: bool) -> nn.Module:
    """The EMA's parameters with the live model's quantization state (or the raw model)."""
    if not use_ema:
        return model
    params = dict(ema.named_parameters())
    ema.load_state_dict({k: params[k].detach() if k in params else v for k, v in model.state_dict().items()})
    return ema


def qat(
    config: QATConfig,
    output_dir: str | Path,
    resume: bool = False,
    progress: bool = True,
    output: str | Path | None = None,
    reads: tuple[str | Path, ...] = (),
) -> dict[str, Any]:
    """Fine-tunes (or resumes) in ``output_dir``; at the last step writes the int8 program and
    the int8 parameters beside it (``lmfn_x{scale}_int8.safetensors``).

    Args:
        config: The run.
        output_dir: Checkpoint, log and plot folder.
        resume: Continue from ``output_dir/ckpt.pt``.
        progress: Show a progress bar.
        output: Program path; default ``output_dir/lmfn_x{scale}_qat_int8.pt2``.
        reads: Files the caller read for this run (its TOML config); like the config's inputs,
            none may be one of the files the run writes (checked before any work).

    Returns:
        ``step``, ``loss``, validation PSNR-Y of the float model, the fake-quant EMA and the
        converted q/dq model when validation ran, and ``program`` (the .pt2 path).

    Raises:
        ConfigError, DataError, CheckpointError, WeightsError: With a one-line message, before
            any training.
    """
    return QATTrainer(config, output_dir, progress, output, reads).run(resume)


def build_parser() -> argparse.ArgumentParser:
    p = cli.parser("quantization.qat", "Int8 quantization-aware fine-tuning of released LMFN weights.")
    add_run_arguments(p, "TOML file over the QATConfig defaults (quantization/configs/)", "--set iterations=500")
    cli.add_weights(p, "float weights (.safetensors) to fine-tune")
    p.add_argument("--output", type=Path, help="int8 program (default OUTPUT_DIR/lmfn_x{scale}_qat_int8.pt2)")
    return p


def _run(args: argparse.Namespace) -> int:
    flags = {"weights": args.weights, "data_roots": args.data_root, "val_root": args.val_root}
    config = resolve_config(QATConfig, args, flags)
    summary = qat(config, args.output_dir, args.resume, not args.no_progress, args.output,
                  reads=(args.config,) if args.config else ())
    print(json.dumps(summary))
    return 0


def main(argv: list[str] | None = None) -> int:
    return cli.run(build_parser(), _run, argv)


if __name__ == "__main__":
    sys.exit(main())
