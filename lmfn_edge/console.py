"""What a command shows: its own lines and progress bars, and third-party output only when asked.

:func:`quiet` (entered by every command line unless ``--verbose``) hides warnings, the log lines
of the libraries this SDK drives, and what native code writes to file descriptor 2 (ExecuTorch's
runtime, XNNPACK's cpuinfo). Library code wraps calls into chatty third-party code (coremltools'
converter and its progress bars, ExecuTorch's runtime, ``torch.onnx``) in :func:`third_party`,
which drops their Python-level stderr output while quiet. Outside a quiet command (a Python
caller of the library) nothing is hidden.

A leaf module: the standard library only (and :mod:`lmfn_edge.interrupts`, below it).
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import sys
import warnings
from collections.abc import Iterator

from . import interrupts

__all__ = ["is_quiet", "quiet", "third_party"]

# Loggers of the libraries this SDK drives; quiet mode keeps their errors only.
_LIBRARY_LOGGERS = ("torch", "torchao", "executorch", "coremltools", "onnxscript", "onnx_ir", "PIL", "root")
_state = {"quiet": False}


def is_quiet() -> bool:
    return _state["quiet"]


@contextlib.contextmanager
def third_party() -> Iterator[None]:
    """Around a call into a third-party library: its stderr output is dropped while quiet."""
    if not _state["quiet"]:
        yield
    else:
        with contextlib.redirect_stderr(io.StringIO()):
            yield
    interrupts.check()  # third-party code may have swallowed a Ctrl-C


@contextlib.contextmanager
def quiet(enabled: bool = True) -> Iterator[None]:
    """Hide third-party warnings, library log lines and native stderr output while ``enabled``.

    Python-level writes to ``sys.stderr`` (the command's own lines, tqdm bars, errors) still
    show: when ``sys.stderr`` is the process's file descriptor 2, it is reopened on a copy of
    that descriptor while descriptor 2 itself points at the null device.
    """
    if not enabled:
        yield
        return
    loggers = {name: logging.getLogger(None if name == "root" else name) for name in _LIBRARY_LOGGERS}
    levels = {name: logger.level for name, logger in loggers.items()}
    before = _state["quiet"]
    with warnings.catch_warnings(), _native_stderr_silenced():
        warnings.simplefilter("ignore")
        for logger in loggers.values():
            logger.setLevel(logging.ERROR)
        _state["quiet"] = True
        try:
            yield
        finally:
            _state["quiet"] = before
            for name, logger in loggers.items():
                logger.setLevel(levels[name])


@contextlib.contextmanager
def _native_stderr_silenced() -> Iterator[None]:
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):  # no descriptor 2 (embedded interpreters)
        yield
        return
    try:
        is_fd2 = sys.stderr.fileno() == 2
    except (OSError, ValueError, AttributeError, io.UnsupportedOperation):
        is_fd2 = False  # e.g. pytest's capsys: Python-level writes are captured already
    stream = None
    if is_fd2:
        stream = open(os.dup(saved), "w", buffering=1, encoding=sys.stderr.encoding or "utf-8",
                      errors="backslashreplace")
    devnull = os.open(os.devnull, os.O_WRONLY)
    original = sys.stderr
    os.dup2(devnull, 2)
    os.close(devnull)
    if stream is not None:
        sys.stderr = stream
    try:
        yield
    finally:
        try:
            sys.stderr.flush()
        except (OSError, ValueError):
            pass
        os.dup2(saved, 2)
        os.close(saved)
        if stream is not None:
            sys.stderr = original
            stream.close()
