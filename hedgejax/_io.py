"""Atomic file output: write to a temporary file in the same folder, then rename over the
target, so a reader never sees a half-written result."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path


def normal_mode(path: str | os.PathLike, directory: bool = False) -> None:
    """Give a file (0666) or folder (0777) made by `tempfile` (0600 / 0700) the permissions
    an ordinary `open` or `mkdir` would, under the process umask."""
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(path, (0o777 if directory else 0o666) & ~mask)


def atomic_write(path: str | os.PathLike, write: Callable[[str], None]) -> Path:
    """Call `write(tmp_path)` to produce the file, then atomically move it to `path`. The file
    gets normal permissions (0644 under the usual umask 022)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    normal_mode(tmp)
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write `text` to `path` atomically (UTF-8)."""
    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
    return atomic_write(path, write)
