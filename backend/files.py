"""Every file the lab side writes goes through here: whole or not at all.

A file is written under a temporary name in its own folder, flushed to disk, then renamed
over the target; on any failure the temporary file is removed and the target is left as it
was. "Disk full" and "read-only" become one-line `OmdpError`s naming the file. Also the one
home of file hashing and of the lab's cache folder.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import secrets
import stat
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import BinaryIO

from backend.errors import OmdpError

CHUNK = 1 << 20


def file_sha256(path: str | os.PathLike[str]) -> str:
    """sha256 of a file's bytes, read in chunks (models can be gigabytes)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def cache_root() -> Path:
    """The lab's cache folder (`$XDG_CACHE_HOME/omdp`, else `~/.cache/omdp`)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "omdp"


def os_error(exc: OSError, path: str | os.PathLike[str], doing: str) -> OmdpError:
    """One line for an OS error while `doing` something to `path`, with the fix."""
    fixes = {
        errno.ENOSPC: ("the disk is full", "free some space and run the command again"),
        errno.EDQUOT: ("the disk quota is exhausted", "free some space and run it again"),
        errno.EFBIG: ("the file is too large for this filesystem or limit", "write elsewhere"),
        errno.EROFS: ("the filesystem is read-only", "choose a writable folder"),
        errno.EACCES: ("permission denied", "choose a folder you can write to"),
        errno.EPERM: ("permission denied", "choose a folder you can write to"),
        errno.ENOENT: ("the folder does not exist", "create it first or choose another"),
        errno.ENOTDIR: ("a part of the path is not a folder", "check the path"),
        errno.EISDIR: ("it is a folder", "give a file name"),
    }
    what, fix = fixes.get(exc.errno or 0, (exc.strerror or str(exc), "check the path"))
    return OmdpError(f"cannot {doing} {os.fspath(path)}: {what}", fix)


def _temp_name(target: Path) -> Path:
    """A hidden name beside `target`, short enough for any filesystem's name limit."""
    return target.with_name(f".{target.name[:200]}.{secrets.token_hex(4)}.tmp")


@contextlib.contextmanager
def atomic_open_all(
    paths: Sequence[str | os.PathLike[str]], mode: int = 0o644
) -> Iterator[list[BinaryIO]]:
    """Open a temporary file beside each of `paths`; rename them all into place only once
    every one is written and synced (a model and its external data appear together).

    The temporary names start with a dot and end with `.tmp`, so a crash leaves at most
    hidden files that no reader mistakes for real ones; on any failure they are removed
    and the targets are left as they were. An OS error inside the block is reported
    against the first path.
    """
    targets = [Path(p) for p in paths]
    temps: list[Path] = []
    files: list[BinaryIO] = []
    current = targets[0]
    try:
        for target in targets:
            current = target
            tmp = _temp_name(target)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
            temps.append(tmp)
            files.append(os.fdopen(fd, "wb"))
        current = targets[0]
        yield files
        for target, f in zip(targets, files, strict=True):
            current = target
            f.flush()
            os.fsync(f.fileno())
            f.close()
        for target, tmp in zip(targets, temps, strict=True):
            current = target
            os.replace(tmp, target)
    except OSError as exc:
        _discard(files, temps)
        raise os_error(exc, current, "write") from None
    except BaseException:
        _discard(files, temps)
        raise


def _discard(files: list[BinaryIO], temps: list[Path]) -> None:
    """Close (a full disk may refuse the last flush) and remove the temporary files."""
    for f in files:
        with contextlib.suppress(OSError):
            f.close()
    for tmp in temps:
        with contextlib.suppress(OSError):
            os.unlink(tmp)


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike[str], mode: int = 0o644) -> Iterator[BinaryIO]:
    """Open a temporary file beside `path` for writing; rename it over `path` on success
    (see `atomic_open_all`)."""
    with atomic_open_all([path], mode) as (f,):
        yield f


def atomic_write(path: str | os.PathLike[str], data: bytes | str, mode: int = 0o644) -> None:
    """Write `data` to `path` whole or not at all."""
    with atomic_open(path, mode) as f:
        f.write(data.encode() if isinstance(data, str) else data)


def atomic_write_with(
    path: str | os.PathLike[str], write: Callable[[BinaryIO], object], mode: int = 0o644
) -> None:
    """Let `write(f)` fill the file (e.g. a serialiser that streams); whole or not at all."""
    with atomic_open(path, mode) as f:
        write(f)


def check_writable(path: str | os.PathLike[str], example: str = "out.json") -> Path:
    """Fail before any work when `path` cannot become a file: it is a folder, or its folder
    is missing, not a folder, or not writable (read-only filesystem or permissions)."""
    target = Path(path)
    if target.is_dir():
        raise OmdpError(
            f"cannot write {target}: it is a directory",
            f"give a file name, e.g. {target / example}",
        )
    folder = target.parent
    if not folder.exists():
        raise OmdpError(
            f"cannot write {target}: folder {folder} does not exist",
            "create it first or choose another path",
        )
    if not folder.is_dir():
        raise OmdpError(f"cannot write {target}: {folder} is not a folder", "check the path")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OmdpError(
            f"cannot write {target}: folder {folder} is read-only",
            "choose a folder you can write to",
        )
    return target


def read_text(path: str | os.PathLike[str], what: str, limit: int, fix: str) -> str:
    """A small text file the user gives (devices, instance, trace): `read_bytes`, UTF-8."""
    data = read_bytes(path, what, limit, fix)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise OmdpError(f"{path} is not a text file (byte {exc.start} is not UTF-8)", fix) from None


def read_bytes(path: str | os.PathLike[str], what: str, limit: int, fix: str) -> bytes:
    """A file the user gives: a regular file, at most `limit` bytes (read no further: a
    FIFO or /dev/zero cannot hang us). Every problem is one OmdpError naming the file as
    `what` and saying `fix`."""
    p = Path(path)
    try:
        mode = os.stat(p).st_mode
    except FileNotFoundError:
        raise OmdpError(f"no {what} at {p}", fix) from None
    except OSError as exc:
        raise os_error(exc, p, f"read the {what}") from None
    if stat.S_ISDIR(mode):
        raise OmdpError(f"{p} is a directory, not a {what}", fix)
    if not stat.S_ISREG(mode):
        raise OmdpError(f"{p} is not a regular file, so not a {what}", fix)
    try:
        with open(p, "rb") as f:
            data = f.read(limit + 1)
    except OSError as exc:
        raise os_error(exc, p, f"read the {what}") from None
    if len(data) > limit:
        raise OmdpError(f"{p} is larger than {limit >> 20} MiB, the limit for a {what}", fix)
    return data
