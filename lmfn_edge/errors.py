"""The errors every LMFN Edge command knows how to report.

Library code raises a specific subclass (``WeightsError``, ``ImageError``, ``ManifestError``,
...) whose message is one line naming the file or value at fault. The command lines share one
error boundary (:mod:`lmfn_edge.cli`) that prints such an error as ``error: <message>`` and
exits with :attr:`LmfnEdgeError.exit_code`: 2 for a request that cannot be done as asked (bad
flags, unusable inputs; checked before any work starts), 1 for a failure during the work. Any
other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

__all__ = ["LmfnEdgeError", "UsageError", "first_line"]


class LmfnEdgeError(Exception):
    """A failure while doing the work (exit code 1); the message is one line."""

    exit_code = 1


class UsageError(LmfnEdgeError):
    """A request that cannot be done as asked: bad flags or unusable inputs (exit code 2)."""

    exit_code = 2


def first_line(exc: BaseException, limit: int = 200) -> str:
    """What a one-line error quotes of ``exc``: the first line of its message, at most ``limit``
    characters, or its class name when the message is empty (``KeyError()``)."""
    text = str(exc).strip()
    return text.splitlines()[0].strip()[:limit] if text else type(exc).__name__
