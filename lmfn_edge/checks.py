"""The one integer check every validator shares: a config field, a sidecar field, a tile, an
overlap, a command-line flag. ``True`` is not an integer here (``bool`` is an ``int`` to
Python), numpy's integers are. A leaf: the standard library only."""

from __future__ import annotations

import numbers
from typing import Any

__all__ = ["check_integer", "is_integer"]


def is_integer(value: Any) -> bool:
    """An integer of any kind (``int``, numpy's), not a ``bool``."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def check_integer(value: Any, name: str, minimum: int | None = None, maximum: int | None = None,
                  error: type[Exception] = ValueError) -> int:
    """``value`` as an ``int``, or ``error`` naming ``name``: "must be an integer", "must be >=
    minimum", "must be <= maximum", with the value given."""
    if not is_integer(value):
        raise error(f"{name} must be an integer, got {value!r}")
    if minimum is not None and value < minimum:
        raise error(f"{name} must be >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise error(f"{name} must be <= {maximum}, got {value}")
    return int(value)
