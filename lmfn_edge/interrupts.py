"""Ctrl-C in a command line: exit 130 with ``interrupted`` and no partial file, however early or
often the signal comes.

Python's own SIGINT handling falls short in three ways for a command line:

* a SIGINT during start-up (the imports of torch and friends) ends in a traceback;
* some third-party code swallows the ``KeyboardInterrupt`` (coremltools and the imports it
  triggers wrap optional imports in a bare ``except:``), so the run goes on and exits 0 as if
  nothing happened;
* a second Ctrl-C during the clean-up of the first interrupts the clean-up, and the process
  dies by the signal (exit -2), leaving temporary files behind.

So a command installs its own SIGINT handler. The package arms it at import when the process
was started as one of this project's commands (``python -m lmfn_edge.*``, ``training.*``,
``quantization.*``), before torch is imported:

* **start-up** (before the error boundary, :func:`lmfn_edge.cli.run`, begins): the command has
  done no work, so a signal ends the process at once, ``interrupted``, exit 130;
* **work**: the first signal raises ``KeyboardInterrupt``; the boundary prints ``interrupted``
  and returns 130 once the clean-up (``finally`` blocks, temporary files) has run;
* a **swallowed** interrupt is raised again by :func:`check`, which runs before an output
  replaces a file (:func:`lmfn_edge.files.atomic_write`, :func:`lmfn_edge.files.staged`), after
  third-party calls and imports (:func:`lmfn_edge.console.third_party`, the coremltools import
  sites), per op of the numpy Core ML evaluator, and at the end of the boundary;
* if the boundary has not finished :data:`GRACE_SECONDS` after the first signal (the interrupt
  was swallowed inside a long third-party call), or on a **second** signal, the process exits
  at once: the temporary files of outputs in progress (registered by :func:`temporary`) are
  removed, ``interrupted`` is printed, exit 130. Finished outputs are whole files: every
  output is renamed into place complete, or not at all.

What remains uncovered is Python's own start-up before the package is imported.
Library callers (a Python program importing ``lmfn_edge``) keep Python's default behaviour
outside :func:`handling`, and never get a hard exit.

A leaf module: the standard library only.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

__all__ = ["GRACE_SECONDS", "arm_if_command", "check", "committing", "handling", "interrupted", "temporary"]

COMMAND_PACKAGES = ("lmfn_edge", "training", "quantization")
GRACE_SECONDS = 3.0  # unwinding (temporary files, DataLoader workers) takes well under a second

# mode: "idle": nothing installed (library use); "armed": start-up, before the boundary runs;
# "running": inside the boundary, the first signal raises; "stopping": an interrupt is being
# handled. command: this process is one of this project's command lines.
_state: dict = {"mode": "idle", "signals": 0, "command": False, "timer": None, "committing": 0,
                "exit_pending": False}
_temporaries: dict[Path, int] = {}  # path -> pid of the process that made it
# Re-entrant: the handler runs on the main thread, possibly inside a block that holds it.
_lock = threading.RLock()


def _handler(signum, frame) -> None:
    _state["signals"] += 1
    mode = _state["mode"]
    if mode == "armed" or (mode == "stopping" and _state["command"]):
        if _state["committing"]:  # an output is being renamed into place: right after that
            _state["exit_pending"] = True
            return
        _hard_exit()  # start-up (nothing to clean) or a second Ctrl-C: now, and clean
    if mode == "running":
        _state["mode"] = "stopping"
        if _state["command"]:
            _start_grace_timer()
        raise KeyboardInterrupt


def _start_grace_timer() -> None:
    timer = threading.Timer(GRACE_SECONDS, _hard_exit)
    timer.daemon = True
    _state["timer"] = timer
    timer.start()


def _hard_exit() -> None:
    """Remove this process's temporary outputs, say ``interrupted`` and exit 130, now (once an
    output being renamed into place is in place: the grace timer waits for the lock)."""
    with _lock:
        for path, pid in list(_temporaries.items()):
            if pid == os.getpid():
                with contextlib.suppress(OSError):
                    shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()
    with contextlib.suppress(Exception):
        # sys.stderr, not descriptor 2: quiet mode points descriptor 2 at the null device.
        sys.stderr.write("interrupted\n")
        sys.stderr.flush()
    os._exit(130)


def _install() -> object | None:
    """Install :func:`_handler`; returns the previous handler (``None`` off the main thread)."""
    if threading.current_thread() is not threading.main_thread():
        return None
    try:
        return signal.signal(signal.SIGINT, _handler)
    except (ValueError, OSError):  # embedded interpreters without signal support
        return None


def started_as_command(argv: list[str] | None = None) -> bool:
    """Whether this process runs ``python -m <one of this project's modules>``."""
    args = iter(list(getattr(sys, "orig_argv", []) if argv is None else argv)[1:])
    for arg in args:
        if arg == "-m":
            return next(args, "").split(".", 1)[0] in COMMAND_PACKAGES
        if arg in ("-X", "-W"):  # interpreter options that take a value
            next(args, None)
        elif arg == "-c" or not arg.startswith("-"):
            return False  # a -c program or a script: not a command of this project
    return False


def arm_if_command() -> None:
    """At package import: handle SIGINT from now on if this process is one of our commands."""
    if _state["mode"] == "idle" and started_as_command() and _install() is not None:
        _state["mode"], _state["command"] = "armed", True


def interrupted() -> bool:
    """Whether a SIGINT arrived since the command started."""
    return _state["signals"] > 0


def check() -> None:
    """Raise ``KeyboardInterrupt`` if a recorded interrupt has not stopped the work yet (third-
    party code swallowed it). Cheap: call it before committing an output and in long loops."""
    if _state["signals"] and _state["mode"] in ("running", "stopping"):
        _state["mode"] = "stopping"
        raise KeyboardInterrupt


@contextlib.contextmanager
def temporary(path: str | os.PathLike) -> Iterator[Path]:
    """Register a temporary file or folder an output is built in, so that an exit on a second
    Ctrl-C removes it; the caller still removes it itself on every normal path."""
    path = Path(path)
    with _lock:
        _temporaries[path] = os.getpid()
    try:
        yield path
    finally:
        with _lock:
            _temporaries.pop(path, None)


@contextlib.contextmanager
def committing() -> Iterator[None]:
    """Around the renames that put a finished output in place of an old one: a hard exit waits
    until they are done, so an exit never leaves the old output moved away and the new one not
    yet in place."""
    with _lock:
        _state["committing"] += 1
        try:
            yield
        finally:
            _state["committing"] -= 1
    if _state["exit_pending"] and not _state["committing"]:
        _hard_exit()


@contextlib.contextmanager
def handling() -> Iterator[None]:
    """The error boundary's scope: the first signal inside it raises ``KeyboardInterrupt``; one
    recorded before it (a library caller's) is raised on entry.

    On exit a library caller gets its previous handler back. A command ignores SIGINT from
    then on: its work is over, and Python's finalization restores the default handler of any
    signal with a Python handler, so a late Ctrl-C would kill the exiting process by the signal
    (exit -2) instead of letting it exit with the boundary's code.
    """
    previous = _install() if _state["mode"] == "idle" else None
    outer = _state["mode"]
    _state["mode"] = "running"
    try:
        if _state["signals"]:
            _state["mode"] = "stopping"
            raise KeyboardInterrupt
        yield
    finally:
        timer = _state["timer"]
        if timer is not None:
            timer.cancel()  # the boundary finished the clean-up itself
        if _state["command"]:
            _state["mode"] = "stopping"
            with contextlib.suppress(ValueError, OSError):
                signal.signal(signal.SIGINT, signal.SIG_IGN)
        else:
            _state["mode"], _state["signals"] = outer, 0
            if previous is not None:
                signal.signal(signal.SIGINT, previous)
