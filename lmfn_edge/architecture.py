"""The LMFN architecture as data: :class:`LMFNConfig`, validated field by field, and the configs
of the named variants ``lmfn_x2``, ``lmfn_x3``, ``lmfn_x4`` (their names: :mod:`lmfn_edge.registry`).

A config is read from users' files in many places: the ``lmfn_config`` of a weights file or of
int8 parameters, a sidecar, a ``.pt2`` program, a training checkpoint, ``--set
model_overrides.*``. Every one of them builds an ``LMFNConfig``, so one constructor refuses
what cannot be built (``channels = -8``, ``num_blocks = 0``, a scale of 8, a string where a
number belongs) with a ``ValueError`` naming the field, before any layer is allocated. The
upper bounds keep a crafted file from asking for a network that cannot be allocated; they are
far above every model this project trains (docs/architecture.md, "Limits").

A leaf module: the standard library only, so the sidecar contract (:mod:`lmfn_edge.manifest`)
validates configs without importing torch.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from .checks import check_integer
from .registry import SCALES, model_name, scale_of

__all__ = ["CELLS", "LIMITS", "LMFNConfig", "SCALES", "config_for", "model_name"]

CELLS = "LMI"
# Inclusive ranges of the integer fields. The paper's model is channels 56, 8 blocks, K = 9,
# num_in 4; at the upper bounds an LMFN has about 20M parameters (80 MB of float32).
LIMITS = {"channels": (4, 256), "num_blocks": (1, 32), "kernel_size": (1, 31), "num_in": (1, 16)}
MAX_EXTEND_SCOPE = 4.0  # DSConv's reach, hence its deploy form's unfold, grows with it


def _integer(name: str, value: Any) -> int:
    return check_integer(value, name)


@dataclass(frozen=True)
class LMFNConfig:
    """Architecture of one LMFN variant; saved inside every weights file and checkpoint.

    Attributes:
        scale: Upscaling factor (2, 3 or 4).
        channels: Feature channels (must split into 4 MSM parts, also inside IFF halves).
        num_blocks: Building modules in series.
        pattern: One cell letter per module: L (LKA), M (MSM) or I (IFM). "LLLLLLLL" is LKDN.
        kernel_size: DSConv taps (odd).
        extend_scope: DSConv offset scale, in (0, 4].
        num_in: Input repeats along channels (LKDN's ``num_in``).

    Raises:
        ValueError: Naming the field, for a wrong type or a value out of range.
    """

    scale: int = 4
    channels: int = 56
    num_blocks: int = 8
    pattern: str = "LMILMILM"
    kernel_size: int = 9
    extend_scope: float = 1.0
    num_in: int = 4

    def __post_init__(self) -> None:
        if self.pattern == "":
            raise ValueError(f"pattern must name at least one building module (letters from {CELLS!r})")
        if _integer("scale", self.scale) not in SCALES:
            raise ValueError(f"scale must be one of {', '.join(map(str, SCALES))}, got {self.scale}")
        for name, (lo, hi) in LIMITS.items():
            value = _integer(name, getattr(self, name))
            if not lo <= value <= hi:
                raise ValueError(f"{name} must be in [{lo}, {hi}], got {value}")
        if not isinstance(self.pattern, str):
            raise ValueError(f"pattern must be a string, got {self.pattern!r}")
        if len(self.pattern) != self.num_blocks or set(self.pattern) - set(CELLS):
            raise ValueError(
                f"pattern must have num_blocks={self.num_blocks} letters from {CELLS!r}, "
                f"got {self.pattern!r}"
            )
        if "M" in self.pattern and self.channels % 4:
            raise ValueError(f"MSM needs channels divisible by 4, got {self.channels}")
        if "I" in self.pattern and self.channels % 8:
            raise ValueError(f"IFM needs channels divisible by 8, got {self.channels}")
        if self.kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd, got {self.kernel_size}")
        scope = self.extend_scope
        if isinstance(scope, bool) or not isinstance(scope, (int, float)) or not math.isfinite(scope) \
                or not 0 < scope <= MAX_EXTEND_SCOPE:
            raise ValueError(f"extend_scope must be a number in (0, {MAX_EXTEND_SCOPE:g}], got {scope!r}")
        object.__setattr__(self, "extend_scope", float(scope))

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> "LMFNConfig":
        """Build from a parsed ``dict``; unknown fields and wrong types are a ``ValueError``."""
        if not isinstance(data, dict):
            raise ValueError(f"an LMFN config must be an object, got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown LMFNConfig fields: {sorted(map(str, unknown))}")
        return cls(**data)


def config_for(name: str, **overrides: Any) -> LMFNConfig:
    """The config of a named variant (``lmfn_x2``, ``lmfn_x3``, ``lmfn_x4``) with overrides.

    A ``pattern`` without ``num_blocks`` sets the number of blocks to its length.
    """
    scale = scale_of(name)
    if "scale" in overrides and overrides["scale"] != scale:
        raise ValueError(f"{name} has scale {scale}, not {overrides['scale']}")
    if isinstance(overrides.get("pattern"), str) and "num_blocks" not in overrides:
        overrides = {**overrides, "num_blocks": len(overrides["pattern"])}  # the pattern names every block
    return LMFNConfig(**{"scale": scale, **overrides})
