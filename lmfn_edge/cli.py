"""What every command line shares: one error boundary, the same flags, quiet third-party output.

Each ``python -m lmfn_edge.<command>`` (and ``training.*`` / ``quantization.*``) is a thin face:
an argparse parser built from the helpers here, and one library call run by :func:`run`, which

* prints a known error (:class:`~lmfn_edge.errors.LmfnEdgeError`, or an ``OSError`` such as a
  full disk) as one line, ``error: <message>``, and exits 2 for a request that cannot be done
  as asked or 1 for a failure during the work; Ctrl-C prints ``interrupted`` and exits 130;
  any other exception is a bug and keeps its traceback;
* keeps the command's own lines and progress bars and drops third-party noise (warnings,
  library logging, native libraries' stderr chatter, other libraries' progress bars) unless
  ``--verbose`` is given (:mod:`lmfn_edge.console`).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from . import console
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


def add_random_init(p: argparse.ArgumentParser) -> None:
    p.add_argument("--random-init", action="store_true",
                   help="an untrained model, seeded (plumbing checks; latency does not depend on weights)")


def add_json(p: argparse.ArgumentParser, what: str = "the results") -> None:
    p.add_argument("--json", metavar="PATH", help=f"also write {what} as JSON to PATH")


def add_progress(p: argparse.ArgumentParser) -> None:
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def int_at_least(minimum: int) -> Callable[[str], int]:
    """An argparse type: an integer >= ``minimum`` (refused before any work otherwise)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
        return value

    parse.__name__ = f"integer >= {minimum}"
    return parse


def run(p: argparse.ArgumentParser, body: Callable[[argparse.Namespace], int | None],
        argv: list[str] | None = None) -> int:
    """Parse ``argv`` and run ``body(args)`` inside the error boundary; returns the exit code."""
    args = p.parse_args(argv)
    with console.quiet(not getattr(args, "verbose", False)):
        try:
            return body(args) or 0
        except LmfnEdgeError as exc:
            _error(str(exc))
            return exc.exit_code
        except OSError as exc:  # the environment (disk full, permissions), not a bug
            _error(f"{exc.strerror or exc}{f': {exc.filename}' if exc.filename else ''}")
            return 1
        except MemoryError:
            _error("out of memory; use a smaller --tile or a smaller image")
            return 1
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            return 130


def _error(message: str) -> None:
    print("error: " + message.replace("\n", " "), file=sys.stderr)
