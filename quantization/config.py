"""QAT configuration: a typed dataclass, TOML files over its defaults, ``--set`` overrides.

The TOML and ``--set`` grammar, type checks and one-line errors are those of
:mod:`training.config` (the same parser is reused); only the fields differ. A QAT run
fine-tunes released float weights, so the architecture comes from the weights file and
``scale`` only guards against pairing a config with the wrong model.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lmfn_edge.export import DEFAULT_TILE, DYNAMIC_MULTIPLE
from training.config import ConfigError, apply_overrides, load_config

__all__ = ["ConfigError", "QATConfig", "load_qat_config"]


@dataclass
class QATConfig:
    """Everything that defines a QAT fine-tune, saved inside every checkpoint.

    Attributes:
        scale: Upscaling factor the weights must have.
        weights: Float weights (.safetensors) to start from; ``--weights`` wins.
        data_roots: Training folders (layouts of ``training.data``); ``--data-root`` wins.
        val_root: Validation folder; empty: no validation.
        cache_dir: Where LR images made from HR-only folders are kept; empty: ``<output>/cache``.
        patch_size: LR patch side; a multiple of 8 (the captured graph's H/W constraint).
        batch_size: Patches per step.
        iterations: Optimizer steps.
        lr: Adan learning rate, constant; far below the float recipe's 5e-3, since QAT only
            adapts trained weights to the int8 grid.
        betas: Adan's three betas.
        weight_decay: Adan weight decay.
        ema_decay: Decay of the EMA of the parameters that is converted at the end; 0 converts
            the raw weights.
        freeze_observers_at: Step from which scales and zero points are frozen (the weights keep
            training against fixed grids); at least 1 so the observers see data first.
        tile: LR side of the exported int8 program (batch 1), a multiple of 8.
        val_every: Validate (fake-quant model, PSNR-Y) every this many steps (0: at the end).
        ckpt_every: Write the resume checkpoint every this many steps (and at the end).
        log_every: Log the mean loss every this many steps.
        seed: Seeds the data stream (crops, flips, order).
        num_workers: DataLoader worker processes.
        device: ``auto`` (CUDA when present), ``cpu`` or ``cuda``.
    """

    scale: int = 4
    weights: str = ""
    data_roots: list[str] = field(default_factory=list)
    val_root: str = ""
    cache_dir: str = ""
    patch_size: int = 48
    batch_size: int = 16
    iterations: int = 4000
    lr: float = 1e-4
    betas: tuple[float, float, float] = (0.98, 0.92, 0.99)
    weight_decay: float = 0.0
    ema_decay: float = 0.999
    freeze_observers_at: int = 2000
    tile: int = DEFAULT_TILE
    val_every: int = 500
    ckpt_every: int = 100
    log_every: int = 10
    seed: int = 0
    num_workers: int = 0
    device: str = "auto"

    def __post_init__(self) -> None:
        if self.scale not in (2, 3, 4):
            raise ConfigError(f"scale must be 2, 3 or 4, got {self.scale}")
        for name in ("batch_size", "iterations", "log_every", "freeze_observers_at"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("val_every", "ckpt_every", "num_workers", "seed"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("patch_size", "tile"):
            value = getattr(self, name)
            if value < 16 or value % DYNAMIC_MULTIPLE:
                raise ConfigError(f"{name} must be a multiple of {DYNAMIC_MULTIPLE} and >= 16, got {value}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ConfigError(f"ema_decay must be in [0, 1), got {self.ema_decay}")
        if self.lr <= 0:
            raise ConfigError(f"lr must be > 0, got {self.lr}")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ConfigError(f"device must be auto, cpu or cuda, got {self.device!r}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "config") -> "QATConfig":
        return apply_overrides(cls(), data, source)


def load_qat_config(path: str | Path | None = None, sets: list[str] | None = None) -> QATConfig:
    """Defaults, then the TOML file at ``path`` (if any), then ``key=value`` strings in ``sets``."""
    return load_config(path, sets, QATConfig)
