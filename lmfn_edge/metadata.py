"""Metadata from a user's file, bounded before it is parsed: JSON and TOML with limits.

Python's ``json`` and ``tomllib`` parsers recurse once per nesting level, so a sidecar, a
safetensors header, a ``.pt2`` member or a training config holding ``[[[[...]]]]`` a few
thousand levels deep ends in a ``RecursionError`` inside the parser. Every reader of metadata
that comes from a user's file parses it through :func:`parse_json` or :func:`parse_toml`, which
refuse, before the parser runs, text larger than ``max_bytes`` or nested deeper than
``max_depth``. The depth is counted by one linear scan: strings (and TOML comments) are cut out
with a regular expression, and the running count of the remaining brackets gives the depth.

What the parsed value must hold is then checked field by field by the reader that knows (the
sidecar's :class:`~lmfn_edge.manifest.Manifest`, :class:`~lmfn_edge.architecture.LMFNConfig`,
the checkpoint validator, ...). The limits are documented in docs/architecture.md ("Limits").

A leaf module: the standard library only.
"""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from typing import Any

from .errors import UsageError

__all__ = [
    "MAX_DEPTH",
    "MAX_METADATA_BYTES",
    "MetadataError",
    "check_bounds",
    "nesting_depth",
    "parse_json",
    "parse_toml",
    "read_json_file",
    "read_toml_file",
]

MAX_METADATA_BYTES = 1 << 20  # 1 MiB: a sidecar or a config is a few kB
MAX_DEPTH = 32  # the deepest metadata this SDK writes nests 6 levels; the .pt2 graph JSON about 12

_JSON_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_TOML_STRINGS_AND_COMMENTS = re.compile(
    r'"""[\s\S]*?"""|\'\'\'[\s\S]*?\'\'\'|"(?:[^"\\\n]|\\.)*"|\'[^\'\n]*\'|#[^\n]*'
)
_NOT_BRACKETS = re.compile(r"[^\[\]{}]+")
_INNERMOST_PAIRS = re.compile(r"\[\]|\{\}")


class MetadataError(UsageError, ValueError):
    """Metadata that is too large, too deeply nested or not valid JSON/TOML; one line."""


def _brackets(text: str, toml: bool) -> str:
    pattern = _TOML_STRINGS_AND_COMMENTS if toml else _JSON_STRINGS
    return _NOT_BRACKETS.sub("", pattern.sub("", text))


def nesting_depth(text: str, toml: bool = False) -> int:
    """The deepest bracket nesting of JSON (or TOML) ``text``, outside strings and comments.

    Unbalanced text gives a depth anyway (the parser refuses it afterwards): an unterminated
    string's brackets are counted, which can only overstate the depth.
    """
    return _depth_of_brackets(_brackets(text, toml))


def _depth_of_brackets(brackets: str) -> int:
    depth = deepest = 0
    # Runs of the same bracket kind are counted at once: a run of n openers adds n.
    for run in re.finditer(r"[\[{]+|[\]}]+", brackets):
        token = run.group()
        if token[0] in "[{":
            depth += len(token)
            deepest = max(deepest, depth)
        else:
            depth = max(0, depth - len(token))
    return deepest


def _text(data: bytes | str, source: str, max_bytes: int) -> str:
    size = len(data)
    if size > max_bytes:
        raise MetadataError(f"{source}: {size} bytes of metadata, more than the limit of {max_bytes}")
    if isinstance(data, bytes):
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            raise MetadataError(f"{source}: metadata is not UTF-8 text") from None
    return data


def check_bounds(data: bytes | str, source: str, toml: bool = False, max_bytes: int = MAX_METADATA_BYTES,
                 max_depth: int = MAX_DEPTH) -> str:
    """``data`` as text, once it is known to be at most ``max_bytes`` long and ``max_depth`` deep
    (for a caller that parses it itself).

    Raises:
        MetadataError: Naming ``source``.
    """
    text = _text(data, source, max_bytes)
    _check_depth(text, source, max_depth, toml)
    return text


def _check_depth(text: str, source: str, max_depth: int, toml: bool) -> None:
    # Each pass deletes the innermost bracket pairs at C speed, so text no deeper than the
    # limit is empty after ``max_depth`` passes; what is left is deeper (or unbalanced).
    brackets = _brackets(text, toml)
    for passes in range(max_depth):
        reduced = _INNERMOST_PAIRS.sub("", brackets)
        if reduced == brackets:
            break
        brackets = reduced
    else:
        passes = max_depth
    if brackets:
        depth = passes + _depth_of_brackets(brackets)
        if depth > max_depth:
            raise MetadataError(f"{source}: metadata nests {depth} levels deep, more than the limit of {max_depth}")


def parse_json(data: bytes | str, source: str, max_bytes: int = MAX_METADATA_BYTES,
               max_depth: int = MAX_DEPTH) -> Any:
    """``json.loads`` of ``data`` once it is known to be at most ``max_bytes`` long and
    ``max_depth`` deep; ``NaN`` and ``Infinity`` (not JSON) are refused.

    Raises:
        MetadataError: Naming ``source``.
    """
    text = check_bounds(data, source, False, max_bytes, max_depth)
    try:
        return json.loads(text, parse_constant=_refuse_constant)
    except json.JSONDecodeError as exc:
        raise MetadataError(f"{source} is not valid JSON ({exc})") from None
    except ValueError as exc:  # _refuse_constant
        raise MetadataError(f"{source}: {exc}") from None


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def parse_toml(data: bytes | str, source: str, max_bytes: int = MAX_METADATA_BYTES,
               max_depth: int = MAX_DEPTH) -> dict[str, Any]:
    """``tomllib.loads`` of ``data`` once it is known to be at most ``max_bytes`` long and
    ``max_depth`` deep.

    Raises:
        MetadataError: Naming ``source``.
    """
    text = check_bounds(data, source, True, max_bytes, max_depth)
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise MetadataError(f"{source} is not valid TOML ({exc})") from None


def read_json_file(path: str | Path, max_bytes: int = MAX_METADATA_BYTES, max_depth: int = MAX_DEPTH) -> Any:
    """The bounded JSON content of the file at ``path`` (its size is checked before reading).

    Raises:
        MetadataError: If the file is missing, unreadable, too large, too deep or not JSON.
    """
    return parse_json(_read(Path(path), max_bytes), str(path), max_bytes, max_depth)


def read_toml_file(path: str | Path, max_bytes: int = MAX_METADATA_BYTES, max_depth: int = MAX_DEPTH) -> dict:
    """The bounded TOML content of the file at ``path`` (its size is checked before reading).

    Raises:
        MetadataError: If the file is missing, unreadable, too large, too deep or not TOML.
    """
    return parse_toml(_read(Path(path), max_bytes), str(path), max_bytes, max_depth)


def _read(path: Path, max_bytes: int) -> bytes:
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise MetadataError(f"{path}: {size} bytes of metadata, more than the limit of {max_bytes}")
        with open(path, "rb") as f:
            return f.read(max_bytes + 1)  # a file that grew after stat is refused by the parser
    except FileNotFoundError:
        raise MetadataError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise MetadataError(f"{path}: is a folder, not a file") from None
    except OSError as exc:
        raise MetadataError(f"{path}: cannot read ({exc.strerror or exc})") from None
