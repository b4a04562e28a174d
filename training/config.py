"""Training configuration: a typed dataclass, TOML files over its defaults, ``--set`` overrides.

The defaults are the paper's recipe, which follows LKDN's official configs (BasicSR): LR patches
of 48 px, 8 dihedral augmentations, batch 64, L1 loss, Adan with betas (0.98, 0.92, 0.99) and no
weight decay at a constant lr of 5e-3, EMA 0.999 of the weights, validation PSNR on Y with a
border of ``scale`` pixels; LMFN trains for 2,000,000 iterations where LKDN used 1,000,000.

A TOML file names only what it changes; ``--set key=value`` then overrides single fields, the
value parsed as a TOML literal (so ``learning_rate=1e-3``, ``amp_bf16=true``, ``betas=[0.9, 0.9, 0.99]``)
or else taken as a string (``model=lmfn_x2``); ``--set model_overrides.channels=16`` changes one
field of a table, and several such flags add up. The same key given twice keeps the last value,
as with repeated command-line flags. Unknown keys, wrong types and values out of range
(docs/training.md, "Limits") are a ``ConfigError`` with a one-line message; files and values
are bounded in size and nesting before they are parsed (:mod:`lmfn_edge.metadata`).
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lmfn_edge.architecture import LMFNConfig, config_for
from lmfn_edge.errors import UsageError
from lmfn_edge.metadata import MetadataError, check_bounds, read_toml_file

__all__ = ["ConfigError", "LoopConfig", "TrainConfig", "load_config", "apply_overrides", "parse_set", "parse_sets"]

# Inclusive upper bounds of fields that size an allocation or a process count, and the seed's
# range (numpy's legacy seeding takes 32 bits). docs/training.md, "Limits".
MAX = {"patch_size": 512, "batch_size": 1024, "num_workers": 64}
SEED_LIMIT = 2**32


class ConfigError(UsageError, ValueError):
    """A training config that cannot be used; the message is one line."""


@dataclass
class LoopConfig:
    """What the training engine (:mod:`training.loop`) needs: data, optimizer, schedule, device.

    Shared by :class:`TrainConfig` (the float recipe) and ``quantization.config.QATConfig``,
    whose defaults differ; saved inside every checkpoint.

    Attributes:
        data_roots: Training folders (DIV2K/Flickr2K layouts or HR-only); ``--data-root`` wins.
        val_root: Benchmark folder for validation (Set5-style or HR-only); empty: no validation.
        cache_dir: Where LR images made from HR-only folders (and decoded images) are kept;
            empty: ``<output_dir>/cache``. Runs may share one.
        decoded_cache: Keep training images decoded as ``.npy`` under ``cache_dir`` and crop
            through memory maps: much faster sampling from large PNGs, 3 bytes a pixel of disk.
        patch_size: LR patch side; the HR patch is ``patch_size * scale``.
        batch_size: Global batch, split evenly across processes, so the recipe does not depend
            on the number of GPUs.
        iterations: Optimizer steps.
        time_limit: Stop after this many seconds of training (compilation included), at the
            next ``log_every`` boundary, with a checkpoint as at the end; ``--resume`` continues.
            0: no limit. For leased machines and time-boxed runs.
        learning_rate: Adan learning rate. (Not ``lr``: in this code base ``lr`` means the
            low-resolution image.)
        schedule: ``constant`` (the paper's), or ``cosine``: from ``decay_start`` on, the
            learning rate follows a half cosine down to ``final_lr_ratio`` of itself at
            ``iterations``; for short runs, which end far from the paper's 2M steps.
        decay_start: Step at which the cosine decay begins.
        final_lr_ratio: The cosine decay's end point, as a fraction of ``learning_rate``.
        betas: Adan's three betas.
        weight_decay: Adan weight decay.
        ema_decay: Per-iteration decay of the weight EMA that is validated and released.
        val_every: Validate every this many iterations (0: only at the end).
        ckpt_every: Write the resume checkpoint every this many iterations (and at the end).
        log_every: Log the mean loss every this many iterations.
        seed: Seeds model init and the data stream (crops, flips, order).
        num_workers: DataLoader worker processes per training process.
        amp_bf16: bf16 autocast for the forward pass (CUDA).
        channels_last: NHWC memory format for the model and batches (CUDA).
        device: ``auto`` (CUDA when present), ``cpu`` or ``cuda``.
    """

    data_roots: list[str] = field(default_factory=list)
    val_root: str = ""
    cache_dir: str = ""
    decoded_cache: bool = False
    patch_size: int = 48
    batch_size: int = 64
    iterations: int = 2_000_000
    time_limit: float = 0.0
    learning_rate: float = 5e-3
    schedule: str = "constant"
    decay_start: int = 0
    final_lr_ratio: float = 0.01
    betas: tuple[float, float, float] = (0.98, 0.92, 0.99)
    weight_decay: float = 0.0
    ema_decay: float = 0.999
    val_every: int = 5_000
    ckpt_every: int = 5_000
    log_every: int = 100
    seed: int = 0
    num_workers: int = 4
    amp_bf16: bool = False
    channels_last: bool = False
    device: str = "auto"

    def __post_init__(self) -> None:
        for name in ("patch_size", "batch_size", "iterations", "log_every"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("val_every", "ckpt_every", "num_workers", "seed"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name, most in MAX.items():
            if getattr(self, name) > most:
                raise ConfigError(f"{name} must be <= {most}, got {getattr(self, name)}")
        if self.seed >= SEED_LIMIT:
            raise ConfigError(f"seed must be < 2**32, got {self.seed}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ConfigError(f"ema_decay must be in [0, 1), got {self.ema_decay}")
        if not 0.0 <= self.time_limit < float("inf"):
            raise ConfigError(f"time_limit must be >= 0 seconds, got {self.time_limit}")
        if not 0.0 < self.learning_rate < float("inf"):
            raise ConfigError(f"learning_rate must be > 0, got {self.learning_rate}")
        if not all(0.0 <= b < 1.0 for b in self.betas):
            raise ConfigError(f"betas must each be in [0, 1), got {list(self.betas)}")
        if not 0.0 <= self.weight_decay < float("inf"):
            raise ConfigError(f"weight_decay must be >= 0, got {self.weight_decay}")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ConfigError(f"device must be auto, cpu or cuda, got {self.device!r}")
        if self.schedule not in ("constant", "cosine"):
            raise ConfigError(f"schedule must be constant or cosine, got {self.schedule!r}")
        if not 0 <= self.decay_start < self.iterations:
            raise ConfigError(f"decay_start must be in [0, iterations), got {self.decay_start}")
        if not 0.0 <= self.final_lr_ratio <= 1.0:
            raise ConfigError(f"final_lr_ratio must be in [0, 1], got {self.final_lr_ratio}")

    def learning_rate_at(self, step: int) -> float:
        """The learning rate of the step that follows ``step`` completed steps."""
        if self.schedule == "constant" or step < self.decay_start:
            return self.learning_rate
        progress = (step - self.decay_start) / max(1, self.iterations - self.decay_start)
        ratio = self.final_lr_ratio + (1.0 - self.final_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
        return self.learning_rate * ratio

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "config"):
        """Build from a dict, checking keys and types (checkpoints and TOML files both use it)."""
        return apply_overrides(cls(), data, source)


@dataclass
class TrainConfig(LoopConfig):
    """Everything that defines a float training run: the engine's fields (:class:`LoopConfig`)
    plus the model and the GPU options.

    Attributes:
        model: ``lmfn_x2``, ``lmfn_x3`` or ``lmfn_x4``.
        model_overrides: ``LMFNConfig`` fields to change (e.g. ``channels``, ``pattern``).
        init_from: Weights (.safetensors) or checkpoint to start from; tensors whose name and
            shape match are copied, so x3/x4 can start from x2 (the upsampler differs).
        compile: ``torch.compile`` the training model.
        compile_mode: ``torch.compile`` mode: default, reduce-overhead (CUDA graphs),
            max-autotune or max-autotune-no-cudagraphs.
    """

    model: str = "lmfn_x4"
    model_overrides: dict[str, Any] = field(default_factory=dict)
    init_from: str = ""
    compile: bool = False
    compile_mode: str = "default"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.compile_mode not in _COMPILE_MODES:
            raise ConfigError(f"compile_mode must be one of {', '.join(_COMPILE_MODES)}, got {self.compile_mode!r}")
        self.model_config()  # fails early on a bad model name or override

    @property
    def scale(self) -> int:
        return self.model_config().scale

    def model_config(self) -> LMFNConfig:
        """The architecture this config trains."""
        try:
            return config_for(self.model, **self.model_overrides)
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"bad model config: {exc}") from None


_COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
_MODEL_FIELDS = {f.name: f for f in dataclasses.fields(LMFNConfig)}


def load_config(path: str | Path | None = None, sets: list[str] | None = None, cls=None):
    """Defaults, then the TOML file at ``path`` (if any), then ``key=value`` strings in ``sets``.

    ``cls`` is the config dataclass (default :class:`TrainConfig`; quantization passes its own).
    """
    config = (cls or TrainConfig)()
    if path is not None:
        path = Path(path)
        if not path.exists():
            raise ConfigError(f"config file not found: {path}")
        try:
            data = read_toml_file(path)
        except MetadataError as exc:
            raise ConfigError(str(exc)) from None
        config = apply_overrides(config, data, str(path))
    if sets:
        config = apply_overrides(config, parse_sets(sets), "--set")
    return config


def parse_sets(sets: list[str]) -> dict[str, Any]:
    """``--set`` flags as one mapping: tables (``model_overrides.x=...``) merge, the last of a
    repeated plain key wins."""
    out: dict[str, Any] = {}
    for text in sets:
        key, value = parse_set(text)
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            value = {**out[key], **value}
        out[key] = value
    return out


def parse_set(text: str) -> tuple[str, Any]:
    """Split ``key=value``; the value is a TOML literal when it parses as one, else a string."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"--set expects key=value, got {text!r}")
    try:
        raw = check_bounds(raw.strip(), f"--set {key}", toml=True, max_bytes=64 * 1024, max_depth=4)
    except MetadataError as exc:
        raise ConfigError(str(exc)) from None
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    if "." in key:  # model_overrides.channels=16
        head, _, sub = key.partition(".")
        return head, {sub: value}
    return key, value


def apply_overrides(config, data: dict[str, Any], source: str):
    """A copy of the dataclass ``config`` with ``data``'s fields replaced, each type-checked."""
    hints = typing.get_type_hints(type(config))
    changes: dict[str, Any] = {}
    for key, value in data.items():
        if key not in hints:
            raise ConfigError(f"{source}: unknown config key {key!r}{_suggest(key, hints)}")
        if key == "model_overrides":
            merged = dict(changes.get(key, config.model_overrides))
            merged.update(_check_model_overrides(value, source))
            changes[key] = merged
        else:
            changes[key] = _coerce(value, hints[key], f"{source}: {key}")
    try:
        return dataclasses.replace(config, **changes)
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None


def _check_model_overrides(value: Any, source: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ConfigError(f"{source}: model_overrides must be a table, got {value!r}")
    hints = typing.get_type_hints(LMFNConfig)
    out = {}
    for key, item in value.items():
        if key not in _MODEL_FIELDS or key == "scale":
            raise ConfigError(
                f"{source}: unknown model override {key!r}{_suggest(key, hints)} "
                "(the scale comes from the model name)"
            )
        out[key] = _coerce(item, hints[key], f"{source}: model_overrides.{key}")
    return out


def _coerce(value: Any, hint: Any, where: str) -> Any:
    """``value`` as type ``hint``: ints widen to float, a string is a one-item list; else error."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is bool:
        if isinstance(value, bool):
            return value
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif hint is str:
        if isinstance(value, str):
            return value
    elif origin is list:
        if isinstance(value, str):
            value = [value]
        if isinstance(value, (list, tuple)):
            return [_coerce(v, args[0], where) for v in value]
    elif origin is tuple:
        if isinstance(value, (list, tuple)) and len(value) == len(args):
            return tuple(_coerce(v, a, where) for v, a in zip(value, args))
    else:
        raise ConfigError(f"{where}: unsupported field type {hint}")
    raise ConfigError(f"{where} must be {_type_name(hint)}, got {value!r} ({type(value).__name__})")


def _type_name(hint: Any) -> str:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (list, tuple):
        count = f"{len(args)} " if origin is tuple else ""
        return f"a list of {count}{_PLURALS.get(args[0], str(args[0]))}"
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string"}.get(hint, str(hint))


_PLURALS = {bool: "booleans", int: "integers", float: "numbers", str: "strings"}


def _suggest(key: str, known: dict[str, Any]) -> str:
    if key == "lr" and "learning_rate" in known:
        return " (did you mean 'learning_rate'? lr means the low-resolution image in this code base)"
    close = difflib.get_close_matches(key, list(known), n=1)
    return f" (did you mean {close[0]!r}?)" if close else f"; known keys: {', '.join(known)}"
