"""Atomic file writes: a temporary file in the target folder, fsync, then ``os.replace``.

A crash, a kill or a full disk while writing leaves the previous file (or nothing) under the
final name, never a truncated one.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO


def new_file_mode() -> int:
    """``0o666`` minus the process umask: the permissions ``open(path, "w")`` would give.

    ``mkstemp`` creates files 0600; outputs meant for users (audio, models) get the usual mode.
    """
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask


def temp_beside(path: Path) -> tuple[int, Path]:
    """A new empty file to write ``path``'s content into: ``(open fd, its path)``.

    In ``path``'s folder, so the final ``os.replace`` stays on one filesystem (atomic); hidden
    (``.NAME.XXXXXXXX.part``), so folder scans skip it; with :func:`new_file_mode`. Every
    atomic writer here (one-shot, audio blocks, AAC) starts from it.
    """
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        os.fchmod(fd, new_file_mode())
    except OSError:
        os.close(fd)
        Path(tmp).unlink(missing_ok=True)
        raise
    return fd, Path(tmp)


def fsync_path(path: Path) -> None:
    """Flush a closed file's data to disk (before ``os.replace`` publishes it: without it a
    crash can leave the final name pointing at an empty file on some filesystems)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: str | os.PathLike, write: Callable[[BinaryIO], None]) -> Path:
    """Create ``path`` (and its folder) by calling ``write(handle)`` on a temporary file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = temp_beside(path)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """:func:`write_atomic` for UTF-8 text (JSON summaries, CSV tables)."""
    data = text.encode("utf-8")
    return write_atomic(path, lambda handle: handle.write(data))
