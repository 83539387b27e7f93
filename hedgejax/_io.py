"""File output: atomic writes (a temporary file in the same folder, renamed over the target, so
a reader never sees a half-written result) that only ever replace regular files, and checks
that let a command refuse an output path before it computes anything."""

from __future__ import annotations

import os
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path

# A plot or a run folder's files take well under this; a folder with less free space is
# reported as full before the work that would fill it starts.
MIN_FREE_BYTES = 2**20


def normal_mode(path: str | os.PathLike, directory: bool = False) -> None:
    """Give a file (0666) or folder (0777) made by `tempfile` (0600 / 0700) the permissions
    an ordinary `open` or `mkdir` would, under the process umask."""
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(path, (0o777 if directory else 0o666) & ~mask)


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a folder"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISFIFO, "a FIFO"),
                       (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a regular file"


def refuse_non_regular(path: str | os.PathLike) -> None:
    """Raise ValueError, naming `path`, when it exists and is not a regular file (a folder, a
    device such as /dev/null, a FIFO, a socket; symbolic links are followed): an atomic
    write renames over its target, which would replace the device with a file."""
    try:
        mode = os.stat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        return
    if not stat.S_ISREG(mode):
        raise ValueError(f"{os.fspath(path)} is {_kind(mode)}; an output must be a regular "
                         "file, refusing to replace it")


def _existing_ancestor(folder: Path) -> Path:
    while not os.path.lexists(folder) and folder != folder.parent:
        folder = folder.parent
    return folder


def check_writable_dir(folder: str | os.PathLike) -> None:
    """Raise ValueError, naming the folder, unless files can be created in `folder` (or in
    its nearest existing ancestor, when it does not exist yet): an ancestor that is a file,
    a folder that refuses a probe file (read-only, no permission), or one with less than
    `MIN_FREE_BYTES` free."""
    folder = Path(folder)
    base = _existing_ancestor(folder)
    if not base.is_dir():
        raise ValueError(f"{base} is a file, not a folder")
    try:
        fd, probe = tempfile.mkstemp(dir=base, prefix=".hedgejax-probe-")
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise ValueError(f"cannot write in {base}: {err.strerror or err}") from None
    try:
        fs = os.statvfs(base)
    except (OSError, AttributeError):  # no statvfs (Windows): the write itself will tell
        return
    free = fs.f_bavail * fs.f_frsize
    if free < MIN_FREE_BYTES:
        raise ValueError(f"{base} is full ({free:,} bytes free)")


def check_output_file(path: str | os.PathLike, what: str = "an output path") -> Path:
    """`path` as a Path, after checking, before any work, that a file can be written there:
    it names a file (no trailing slash, not an existing folder), is a regular file if it
    exists, and its folder is writable with space left. Raises ValueError naming `path`."""
    text = os.fspath(path)
    if not text or text.endswith(("/", os.sep)) or Path(text).name in ("", ".", ".."):
        raise ValueError(f"{text!r} names a folder; {what} must name a file")
    path = Path(text)
    if path.is_dir():
        raise ValueError(f"{text} is a folder; {what} must name a file")
    refuse_non_regular(path)
    check_writable_dir(path.parent)
    return path


def check_output_dir(path: str | os.PathLike) -> Path:
    """`path` as a Path, after checking that it is (or can be created as) a writable folder
    with space left. Raises ValueError naming it."""
    path = Path(path)
    if os.path.exists(path) and not path.is_dir():
        raise ValueError(f"{path} is not a folder")
    check_writable_dir(path)
    return path


def atomic_write(path: str | os.PathLike, write: Callable[[str], None]) -> Path:
    """Call `write(tmp_path)` to produce the file, then atomically move it to `path`. The file
    gets normal permissions (0644 under the usual umask 022). Raises ValueError, before
    writing anything, when `path` exists and is not a regular file (a folder, a device, a
    FIFO): the rename would replace it."""
    path = Path(path)
    refuse_non_regular(path)
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
