"""What every command line shares: one error boundary, the same flags, quiet third-party output.

Each ``python -m lmfn_edge.<command>`` (and ``training.*`` / ``quantization.*``) is a thin face:
an argparse parser built from the helpers here, and one library call run by :func:`run`, which

* prints a known error (:class:`~lmfn_edge.errors.LmfnEdgeError`, or an ``OSError`` such as a
  full disk) as one line, ``error: <message>``, and exits 2 for a request that cannot be done
  as asked or 1 for a failure during the work; Ctrl-C prints ``interrupted`` and exits 130,
  however early or often it comes, also when third-party code swallowed it
  (:mod:`lmfn_edge.interrupts`); an allocation that fails is ``out of memory``, exit 1; any
  other exception is a bug and keeps its traceback;
* keeps the command's own lines and progress bars and drops third-party noise (warnings,
  library logging, native libraries' stderr chatter, other libraries' progress bars) unless
  ``--verbose`` is given (:mod:`lmfn_edge.console`).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from . import console, interrupts
from .checks import check_integer
from .errors import LmfnEdgeError

__all__ = [
    "add_json",
    "add_progress",
    "add_random_init",
    "add_scale",
    "add_verbose",
    "add_weights",
    "int_at_least",
    "parser",
    "run",
]

def parser(prog: str, description: str) -> argparse.ArgumentParser:
    """An ``ArgumentParser`` for ``python -m <prog>`` with ``-v/--verbose``."""
    p = argparse.ArgumentParser(prog=f"python -m {prog}", description=description)
    add_verbose(p)
    return p


def add_verbose(p: argparse.ArgumentParser) -> None:
    p.add_argument("-v", "--verbose", action="store_true",
                   help="also show third-party warnings and log lines (hidden by default)")


def add_scale(p: argparse.ArgumentParser, default: int | None = None, required: bool = False, help: str = "") -> None:
    p.add_argument("--scale", type=int, choices=(2, 3, 4), default=default, required=required,
                   help=help or "upscaling factor" + (f" (default {default})" if default else ""))


def add_weights(p: argparse.ArgumentParser, help: str = "safetensors weights (default: the weights the package "
                                                         "embeds)") -> None:
    p.add_argument("--weights", help=help)


def add_random_init(p: argparse.ArgumentParser, help: str = "an untrained model, seeded (plumbing checks; latency "
                                                             "does not depend on weights)") -> None:
    p.add_argument("--random-init", action="store_true", help=help)


def add_architecture(p: argparse.ArgumentParser) -> None:
    """``--kernel-size`` and ``--pattern``: the architecture of a ``--random-init`` model."""
    p.add_argument("--kernel-size", type=int_at_least(1), help="DSConv taps (with --random-init only)")
    p.add_argument("--pattern", help="cell pattern, e.g. LLLLLLLL (with --random-init only)")


def add_json(p: argparse.ArgumentParser, what: str = "the results") -> None:
    p.add_argument("--json", metavar="PATH", help=f"also write {what} as JSON to PATH")


def add_progress(p: argparse.ArgumentParser) -> None:
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def int_at_least(minimum: int, maximum: int | None = None) -> Callable[[str], int]:
    """An argparse type: an integer >= ``minimum`` (and <= ``maximum``), refused before any work
    otherwise."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        try:
            return check_integer(value, "it", minimum, maximum)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc).removeprefix("it ")) from None

    parse.__name__ = f"integer >= {minimum}" if maximum is None else f"integer in [{minimum}, {maximum}]"
    return parse


def run(p: argparse.ArgumentParser, body: Callable[[argparse.Namespace], int | None],
        argv: list[str] | None = None) -> int:
    """Parse ``argv`` and run ``body(args)`` inside the error boundary; returns the exit code."""
    try:
        with interrupts.handling():
            return _run(p, body, argv)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def _run(p: argparse.ArgumentParser, body: Callable[[argparse.Namespace], int | None],
         argv: list[str] | None) -> int:
    args = p.parse_args(argv)
    with console.quiet(not getattr(args, "verbose", False)):
        try:
            code = body(args) or 0
        except KeyboardInterrupt:
            raise
        except LmfnEdgeError as exc:
            interrupts.check()  # an error caused by a swallowed Ctrl-C is the Ctrl-C
            _error(str(exc))
            return exc.exit_code
        except OSError as exc:  # the environment (disk full, permissions), not a bug
            interrupts.check()
            _error(f"{exc.strerror or exc}{f': {exc.filename}' if exc.filename else ''}")
            return 1
        except MemoryError:
            _error(OUT_OF_MEMORY)
            return 1
        except Exception as exc:
            interrupts.check()  # a library half-imported when Ctrl-C was swallowed fails oddly
            if _allocation_failed(exc):
                _error(OUT_OF_MEMORY)
                return 1
            raise
        interrupts.check()  # a swallowed Ctrl-C: the run did not finish as asked
        return code


OUT_OF_MEMORY = "out of memory; use a smaller --tile, --shape, batch or image"


def _allocation_failed(exc: Exception) -> bool:
    """torch reports a failed CPU allocation as a ``RuntimeError`` (CUDA: ``OutOfMemoryError``)."""
    text = str(exc)
    return type(exc).__name__ == "OutOfMemoryError" or (
        isinstance(exc, RuntimeError) and ("can't allocate memory" in text or "not enough memory" in text))


def _error(message: str) -> None:
    print("error: " + message.replace("\n", " "), file=sys.stderr)
