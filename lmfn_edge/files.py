"""File writes that never leave half a file: every output is checked before any work starts
(:func:`check_output`: not a folder, not one of the inputs, in a folder that exists or can be
created and is writable) and written through :func:`atomic_write` or :func:`staged`, so a
failing or interrupted run never leaves a truncated image, checkpoint or sidecar behind nor
replaces an existing file."""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from . import interrupts
from .errors import UsageError

__all__ = ["OutputError", "atomic_write", "atomic_write_bytes", "atomic_write_text", "check_output", "same_path",
           "staged"]


class OutputError(UsageError):
    """An output path that cannot be written as asked; the message is one line."""


@contextlib.contextmanager
def atomic_write(
    path: str | os.PathLike, mode: str = "wb", encoding: str | None = None
) -> Iterator[IO]:
    """Opens a temporary file next to ``path`` that replaces ``path`` when the block succeeds.

    The data is flushed and fsynced before the rename, so after a crash ``path`` holds either
    the old content or the complete new one. If the block raises, the temporary file is
    removed and ``path`` is untouched.

    Args:
        path: Target file; missing parent folders are created.
        mode: "wb" (or "w+b") for bytes, "w" (or "wt", "w+") for text.
        encoding: Text encoding; defaults to UTF-8 in text mode.

    Yields:
        The open temporary file.

    Raises:
        ValueError: If ``mode`` is not a write mode.
        OSError: If the temporary file cannot be created or renamed.
    """
    if mode not in ("w", "wt", "w+", "w+t", "wb", "w+b"):
        raise ValueError(f"atomic_write needs a 'w' mode, got {mode!r}")
    binary = "b" in mode
    if not binary and encoding is None:
        encoding = "utf-8"
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp, fd = _create_temp(path)
    with interrupts.temporary(tmp):  # removed by an exit on a second Ctrl-C too
        try:
            with os.fdopen(fd, mode, encoding=encoding) as f:
                yield f
                f.flush()
                os.fsync(f.fileno())
            interrupts.check()  # a Ctrl-C that third-party code swallowed still replaces nothing
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
    _fsync_dir(path.parent)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Writes ``data`` to ``path`` atomically (see ``atomic_write``)."""
    with atomic_write(path, "wb") as f:
        f.write(data)


def atomic_write_text(path: str | os.PathLike, text: str, encoding: str = "utf-8") -> None:
    """Writes ``text`` to ``path`` atomically (see ``atomic_write``)."""
    with atomic_write(path, "w", encoding=encoding) as f:
        f.write(text)


def _create_temp(path: Path) -> tuple[Path, int]:
    # os.open with 0o666 lets the umask set the permissions, so the final file gets the same
    # ones a plain open() would give (tempfile.mkstemp would leave it private, 0o600).
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    while True:
        tmp = path.with_name(f".{_short(path.name)}.{secrets.token_hex(4)}.tmp")
        try:
            return tmp, os.open(tmp, flags, 0o666)
        except FileExistsError:
            continue


def _short(name: str) -> str:
    """A temporary file's stem: a name of the longest legal length plus ``.XXXXXXXX.tmp`` would
    exceed the file system's limit, so the temporary name keeps only the start of it."""
    return os.fsencode(name)[:TEMP_STEM].decode(errors="ignore") if len(os.fsencode(name)) > TEMP_STEM else name


TEMP_STEM = 96  # bytes


def _fsync_dir(folder: Path) -> None:
    # Makes the rename itself durable on POSIX; Windows cannot open folders, hence best effort.
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def same_path(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Whether two paths name the same file or folder (links and spellings resolved)."""
    a, b = Path(a), Path(b)
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
    except OSError:
        pass
    return a.resolve() == b.resolve()


def check_output(
    path: str | os.PathLike,
    inputs: tuple[str | os.PathLike | None, ...] = (),
    folder: bool = False,
    flag: str = "output",
    inside_inputs: bool = True,
) -> Path:
    """Refuses, before any work, an output that cannot be written as asked.

    Args:
        path: Where the command will write.
        inputs: Files or folders the command reads; the output may not be one of them.
        folder: The output is a folder (of images); else a file or a package folder
            (.mlpackage) that replaces what is there.
        flag: How the command line calls the output, for the message.
        inside_inputs: Whether the output may lie inside an input folder (an upscaled copy of
            a photo folder in a subfolder of it may; a training run's folder inside its data
            may not).

    Returns:
        ``path`` as a ``Path``. Missing parent folders are created when the output is written.

    Raises:
        OutputError: If ``path`` is an existing folder where a file is expected (or a file
            where a folder is), equals an input or an existing file of an input folder (or lies
            inside an input folder, unless ``inside_inputs``), has a name the file system cannot
            hold, or lies in a folder that is a file or is not writable.
    """
    path = Path(path)
    _check_name_lengths(path, flag)
    if folder:
        if path.exists() and not path.is_dir():
            raise OutputError(f"{flag} {path} is a file, but a folder is needed")
    elif path.is_dir() and path.suffix.lower() != ".mlpackage":
        raise OutputError(f"{flag} {path} is a folder; give a file path")
    for source in inputs:
        if source is None:
            continue
        if same_path(path, source):
            raise OutputError(f"{flag} {path} is also an input; choose another path")
        if Path(source).is_dir() and path.resolve().is_relative_to(Path(source).resolve()):
            if not inside_inputs:
                raise OutputError(f"{flag} {path} is inside the input folder {source}; choose a folder outside it")
            if path.exists():
                raise OutputError(f"{flag} {path} would replace a file of the input folder {source}; choose another "
                                  "path")
    parent = path if folder else path.parent
    existing = parent
    while not existing.exists():
        if existing.parent == existing:
            break
        existing = existing.parent
    if not existing.is_dir():
        raise OutputError(f"cannot create {parent}: {existing} is a file")
    if not os.access(existing, os.W_OK | os.X_OK) or not _can_create_in(existing):
        raise OutputError(f"cannot write to {existing}: permission denied")
    return path


def _check_name_lengths(path: Path, flag: str) -> None:
    """A name too long for the file system would fail only when the finished output is renamed."""
    existing = path.absolute()
    while not os.path.exists(existing) and existing.parent != existing:  # os.path: no error on long names
        existing = existing.parent
    try:
        name_max = os.pathconf(existing, "PC_NAME_MAX")
        path_max = os.pathconf(existing, "PC_PATH_MAX")
    except (OSError, ValueError, AttributeError):  # no pathconf (Windows): the common limits
        name_max, path_max = 255, 4096
    for part in path.absolute().parts:
        if len(os.fsencode(part)) > name_max:
            raise OutputError(f"{flag}: the name {part[:32]}... is {len(os.fsencode(part))} bytes long, more than "
                              f"the {name_max} the file system allows")
    if len(os.fsencode(str(path.absolute()))) >= path_max:
        raise OutputError(f"{flag} {path}: the path is longer than the {path_max} bytes the file system allows")


def _can_create_in(folder: Path) -> bool:
    """Whether a file can be created in ``folder`` (read-only mounts and immutable folders pass
    ``os.access`` for root)."""
    try:
        tmp, fd = _create_temp(folder / "lmfn-edge-write-check")
    except OSError:
        return False
    os.close(fd)
    with contextlib.suppress(OSError):
        os.unlink(tmp)
    return True


@contextlib.contextmanager
def staged(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary path next to ``path`` that replaces ``path`` when the block succeeds.

    For outputs written by other libraries (an .mlpackage folder, a file saved by name). The
    parent folder is created if missing. If the block raises, the temporary file or folder is
    removed and ``path`` is untouched; a folder at ``path`` is replaced only after the new one
    is complete.
    """
    import shutil
    import tempfile

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{_short(path.name)}.", suffix=".tmp", dir=path.parent))
    try:
        with interrupts.temporary(tmp):  # removed by an exit on a second Ctrl-C too
            staging = tmp / path.name
            yield staging
            interrupts.check()  # a Ctrl-C that third-party code swallowed still replaces nothing
            with interrupts.committing():  # the old folder moves aside only for the new one
                if path.is_dir() and not path.is_symlink():
                    os.replace(path, tmp / ".previous")
                os.replace(staging, path)
            _fsync_dir(path.parent)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
