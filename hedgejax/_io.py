"""File output: atomic writes (a temporary file in the same folder, renamed over the target, so
a reader never sees a half-written result) that only ever replace regular files, and checks
that let a command refuse an output path before it computes anything.

A writer holds an exclusive `flock` on its temporary file `.NAME.XXXX.tmp` while it writes;
a process killed meanwhile leaves the file behind, unlocked, and the next write of NAME in
that folder removes it (a regular file, older than `STALE_SECONDS`, whose lock it can take).
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

try:
    import fcntl
except ImportError:     # Windows: no flock; stale temporary files are left alone
    fcntl = None

# A folder with less free space than this cannot hold even a plot: it is refused before
# the work that would fill it starts (a run folder takes a few hundred KB; a disk that fills
# during the write is reported then).
MIN_FREE_BYTES = 64 * 2**10
# A temporary file of an atomic write older than this, that no process holds locked, was
# left by a writer that died: the next write removes it.
STALE_SECONDS = 60.0


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
        if os.path.islink(path):
            raise ValueError(f"{os.fspath(path)} is a symbolic link to {os.readlink(path)}, "
                             "which does not exist; refusing to replace the link") from None
        return
    if not stat.S_ISREG(mode):
        raise ValueError(f"{os.fspath(path)} is {_kind(mode)}; an output must be a regular "
                         "file, refusing to replace it")


def _existing_ancestor(folder: Path) -> Path:
    while not os.path.lexists(folder) and folder != folder.parent:
        folder = folder.parent
    return folder


def check_writable_dir(folder: str | os.PathLike, need: int | None = None) -> None:
    """Raise ValueError, naming the folder, unless files can be created in `folder` (or in
    its nearest existing ancestor, when it does not exist yet): an ancestor that is a file,
    a folder that refuses a probe file (read-only, no permission), or one with less than
    `need` bytes (default `MIN_FREE_BYTES`) free."""
    need = MIN_FREE_BYTES if need is None else need
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
    if free < need:
        raise ValueError(f"no space left on the device holding {base} ({free:,} bytes free, "
                         f"{need:,} needed)")


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


# An experiment's run folder (results.json, summary.csv, report.md and a few PNGs) takes
# 0.2-0.5 MB; a folder with less room than this is refused before the experiment runs.
RUN_FOLDER_BYTES = 2**20


def check_output_dir(path: str | os.PathLike, need: int | None = None) -> Path:
    """`path` as a Path, after checking that it is (or can be created as) a writable folder
    with `need` bytes free (default `MIN_FREE_BYTES`). Raises ValueError naming it."""
    path = Path(path)
    if os.path.exists(path) and not path.is_dir():
        raise ValueError(f"{path} is not a folder")
    check_writable_dir(path, need)
    return path


def missing_folders(folder: Path) -> list[Path]:
    """The folders that `folder.mkdir(parents=True)` would create, deepest first."""
    missing = []
    while not os.path.lexists(folder) and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    return missing


def remove_empty(folders: list[Path]) -> None:
    """Remove `folders` (deepest first) while they are empty: what a failed write created."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:
            return


def _lock(fd: int, block: bool = True) -> bool:
    """An exclusive flock on `fd`; False when another process holds it (without `block`)."""
    if fcntl is None:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if block else fcntl.LOCK_NB))
    except OSError:
        return False
    return True


def clean_stale_temporaries(path: str | os.PathLike) -> list[str]:
    """Remove the temporary files `.NAME.*.tmp` beside `path` that writers killed while
    writing NAME left behind: regular files older than `STALE_SECONDS` whose lock no process
    holds. Returns the names removed."""
    path = Path(path)
    if fcntl is None:
        return []
    prefix, removed = f".{path.name}.", []
    try:
        entries = list(os.scandir(path.parent))
    except OSError:
        return []
    now = time.time()
    for entry in entries:
        if not (entry.name.startswith(prefix) and entry.name.endswith(".tmp")):
            continue
        try:
            info = entry.stat(follow_symlinks=False)
            if not stat.S_ISREG(info.st_mode) or info.st_mtime > now - STALE_SECONDS:
                continue
            fd = os.open(entry.path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        except OSError:
            continue
        try:
            if _lock(fd, block=False) and os.path.samestat(os.fstat(fd), info):
                os.unlink(entry.path)
                removed.append(entry.name)
        except OSError:
            pass
        finally:
            os.close(fd)
    return removed


def atomic_write(path: str | os.PathLike, write: Callable[[str], None]) -> Path:
    """Call `write(tmp_path)` to produce the file, then atomically move it to `path`. The file
    gets normal permissions (0644 under the usual umask 022). Raises ValueError, before
    writing anything, when `path` exists and is not a regular file (a folder, a device, a
    FIFO) or is a symbolic link to nothing: the rename would replace it; a link to a regular
    file is written through. The temporary file is locked while written; stale ones from
    killed writers are removed first; folders created for `path` are removed again when the
    write fails and leaves them empty."""
    path = Path(path)
    refuse_non_regular(path)
    if os.path.islink(path):
        path = Path(os.path.realpath(path))
    created = missing_folders(path.parent)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        clean_stale_temporaries(path)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except BaseException:
        remove_empty(created)
        raise
    try:
        _lock(fd)
        normal_mode(tmp)
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        remove_empty(created)
        raise
    finally:
        os.close(fd)    # releases the lock
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write `text` to `path` atomically (UTF-8)."""
    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
    return atomic_write(path, write)
