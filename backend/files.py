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
from collections.abc import Callable, Iterator
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


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike[str], mode: int = 0o644) -> Iterator[BinaryIO]:
    """Open a temporary file beside `path` for writing; rename it over `path` on success.

    The temporary name starts with a dot and ends with `.tmp`, so a crash leaves at most a
    hidden file that no reader mistakes for the real one.
    """
    target = Path(path)
    tmp = target.with_name(f".{target.name}.{secrets.token_hex(4)}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    except OSError as exc:
        raise os_error(exc, target, "write") from None
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise os_error(exc, target, "write") from None
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


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
