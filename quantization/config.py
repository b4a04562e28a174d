"""QAT configuration: a typed dataclass, TOML files over its defaults, ``--set`` overrides.

The TOML and ``--set`` grammar, type checks and one-line errors are those of
:mod:`training.config` (the same parser is reused), and the engine's fields are its
``LoopConfig``'s; only the QAT fields and some defaults differ. A QAT run
fine-tunes released float weights, so the architecture comes from the weights file and
``scale`` only guards against pairing a config with the wrong model.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lmfn_edge.manifest import DEFAULT_TILE, DYNAMIC_MULTIPLE, MAX_SIDE
from training.config import ConfigError, LoopConfig, load_config

__all__ = ["ConfigError", "QATConfig", "RELEASES", "TARGETS", "load_qat_config"]

RELEASES = ("ema", "raw")
TARGETS = ("hr", "float")


@dataclass
class QATConfig(LoopConfig):
    """Everything that defines a QAT fine-tune, saved inside every checkpoint.

    The engine's fields (data, optimizer, schedule, device) are :class:`~training.config.
    LoopConfig`'s, with defaults for a fine-tune; the architecture comes from the weights file.

    Attributes:
        scale: Upscaling factor the weights must have.
        weights: Float weights (.safetensors) to start from; ``--weights`` wins.
        freeze_observers_at: Step from which scales and zero points are frozen (the weights keep
            training against fixed grids); at least 1 so the observers see data first.
        tile: LR side of the exported int8 program (batch 1), a multiple of 8.
        release: Which weights the last step writes: ``ema`` (the EMA's, the default; the raw
            weights when ``ema_decay`` is 0) or ``raw`` (the live model's, whatever the EMA).
            ``--resume --set release=raw`` on a finished run writes them again from its checkpoint.
        target: What the L1 loss compares the fake-quant model with: ``hr``, the HR patches (the
            float recipe's loss, the default), or ``float``, the float model's output on the same
            LR patches (distillation: QAT then learns to reproduce the released float function
            on the int8 grids rather than to fine-tune it further).

    Changed defaults: ``patch_size`` 48 and ``tile`` must be multiples of 8 (the captured
    graph's H/W grid); ``learning_rate`` 1e-4, far below the float recipe's 5e-3, since QAT
    only adapts trained weights to the int8 grid; ``batch_size`` 16, ``iterations`` 4000,
    ``val_every`` 500, ``ckpt_every`` 100, ``log_every`` 10, ``num_workers`` 0.
    """

    scale: int = 4
    weights: str = ""
    freeze_observers_at: int = 2000
    tile: int = DEFAULT_TILE
    release: str = "ema"
    target: str = "hr"
    batch_size: int = 16
    iterations: int = 4000
    learning_rate: float = 1e-4
    val_every: int = 500
    ckpt_every: int = 100
    log_every: int = 10
    num_workers: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.scale not in (2, 3, 4):
            raise ConfigError(f"scale must be 2, 3 or 4, got {self.scale}")
        if self.freeze_observers_at < 1:
            raise ConfigError(f"freeze_observers_at must be >= 1, got {self.freeze_observers_at}")
        if self.release not in RELEASES:
            raise ConfigError(f"release must be one of {', '.join(RELEASES)}, got {self.release!r}")
        if self.target not in TARGETS:
            raise ConfigError(f"target must be one of {', '.join(TARGETS)}, got {self.target!r}")
        for name in ("patch_size", "tile"):
            value = getattr(self, name)
            if value < 16 or value % DYNAMIC_MULTIPLE:
                raise ConfigError(f"{name} must be a multiple of {DYNAMIC_MULTIPLE} and >= 16, got {value}")
        if self.tile > MAX_SIDE:
            raise ConfigError(f"tile must be <= {MAX_SIDE} (the largest program input side), got {self.tile}")


def load_qat_config(path: str | Path | None = None, sets: list[str] | None = None) -> QATConfig:
    """Defaults, then the TOML file at ``path`` (if any), then ``key=value`` strings in ``sets``."""
    return load_config(path, sets, QATConfig)
