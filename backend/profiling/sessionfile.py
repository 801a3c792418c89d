"""The session's file on disk: named exactly, opened read-only or for writing, created
whole or not at all.

- A name is a path, never URI syntax: SQLite gets a percent-encoded `file:` URI built from
  the absolute path, so `#`, `?` and `%` in a name are characters of that name.
- A session at rest uses SQLite's rollback journal: one self-contained file that reads
  from a read-only filesystem or a write-protected file without creating anything beside
  it. A profiler switches it to WAL while it runs, so readers are never blocked.
- A new session is built in memory, written to a file in the target's folder that has no
  name yet (O_TMPFILE; a hidden temporary name where that is not available), fsynced, then
  hard-linked to its name, which fails if that name exists: the file appears whole or not
  at all, never replaces another, and a failure removes only what this process made.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import sqlite3
import stat
from pathlib import Path
from urllib.parse import urlencode

from backend.errors import OmdpError
from backend.files import os_error

HEADER = b"SQLite format 3\x00"
BUSY_MS = 10_000
FIX_OTHER = "give a session file written by `omdp profile` (`omdp sessions` lists them)"
FIX_DAMAGED = "restore it from a copy, or start a new session with --session"


class SessionExists(OmdpError):
    """The name is taken (possibly by a session another process created a moment ago)."""


def uri(path: Path, **params: str) -> str:
    """The SQLite URI naming exactly `path` (every special character percent-encoded)."""
    return Path(os.path.abspath(path)).as_uri() + "?" + urlencode(params)


def _wal(path: Path) -> Path:
    return path.with_name(path.name + "-wal")


def present(path: Path) -> bool:
    """Is something (even a dangling link) at `path`? OmdpError when the path itself is
    unusable (a name too long, a parent that cannot be searched)."""
    try:
        os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return False
    except OSError as exc:
        raise _create_error(exc, path) from None
    return True


def check_file(path: Path) -> None:
    """OmdpError unless `path` is a regular file that starts like a whole SQLite database."""
    if path.is_symlink() and not path.exists():
        raise OmdpError(
            f"{path} is a symbolic link to {os.readlink(path)}, which does not exist",
            "point it at a session file, or give another path",
        )
    try:
        st = path.stat()
    except FileNotFoundError:
        raise OmdpError(
            f"no session at {path}", "check the path (`omdp sessions` lists them)"
        ) from None
    except OSError as exc:
        raise os_error(exc, path, "read") from None
    if stat.S_ISDIR(st.st_mode):
        raise OmdpError(f"{path} is a directory, not a session file", "give a .omdp file")
    if not stat.S_ISREG(st.st_mode):
        raise OmdpError(f"{path} is not a regular file", FIX_OTHER)
    try:
        with open(path, "rb") as f:
            head = f.read(100)
    except OSError as exc:
        raise os_error(exc, path, "read") from None
    if not head:
        raise OmdpError(f"{path} is empty (0 bytes), not an OMDP session", FIX_OTHER)
    if len(head) < 100 or not head.startswith(HEADER):
        raise OmdpError(f"{path} is not an OMDP session (not an SQLite file)", FIX_OTHER)
    page = int.from_bytes(head[16:18], "big")
    page = 65536 if page == 1 else page
    if page < 512 or page & (page - 1):
        raise OmdpError(f"{path} is damaged: its header gives a page size of {page} B", FIX_DAMAGED)
    pages = int.from_bytes(head[28:32], "big")
    header_size_valid = head[24:28] == head[92:96] and pages > 0
    if st.st_size % page or (
        header_size_valid and not _wal(path).exists() and st.st_size < pages * page
    ):
        raise OmdpError(
            f"{path} is damaged: truncated ({st.st_size} bytes, "
            f"{'not whole pages' if st.st_size % page else f'{pages} pages expected'})",
            FIX_DAMAGED,
        )


def why_readonly(path: Path) -> str | None:
    """Why a writer cannot write `path` (None: it can). A file without write bits counts as
    write-protected even for root, like `rm` treats it."""
    try:
        if os.statvfs(path).f_flag & os.ST_RDONLY:
            return "the filesystem is read-only"
        mode = path.stat().st_mode
    except OSError as exc:
        return exc.strerror or str(exc)
    if not mode & 0o222 or not os.access(path, os.W_OK):
        return f"the file is write-protected (mode {stat.S_IMODE(mode):04o})"
    folder = path.parent
    if not os.access(folder, os.W_OK | os.X_OK):
        return f"its folder {folder} is not writable (SQLite writes its journal beside it)"
    return None


def connect(path: Path, *, write: bool) -> sqlite3.Connection:
    """A connection that names exactly `path` and never creates it. Reading never leaves a
    file behind when it can avoid it (see the module docstring)."""
    if write:
        conn = _open(uri(path, mode="rw"))
    elif _at_rest_in_wal(path):
        # An older session (or another program's file) left in WAL mode: a read-only
        # connection would create -wal/-shm beside it and leave them there.
        folder_writable = os.access(path.parent, os.W_OK | os.X_OK)
        if folder_writable and os.access(path, os.W_OK):
            conn = _open(uri(path, mode="rw"))
            conn.execute("PRAGMA query_only = 1")
        elif not folder_writable:  # nobody can be writing it here: read it as it is
            conn = _open(uri(path, mode="ro", immutable="1"))
        else:
            conn = _open(uri(path, mode="ro"))
    else:
        conn = _open(uri(path, mode="ro"))
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA foreign_keys = ON")
    return conn


def _open(target: str) -> sqlite3.Connection:
    conn = sqlite3.connect(target, uri=True, timeout=BUSY_MS / 1000)
    conn.execute(f"PRAGMA busy_timeout = {BUSY_MS}")
    return conn


def _at_rest_in_wal(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            head = f.read(20)
    except OSError:
        return False
    return len(head) == 20 and head[18] == 2 and not _wal(path).exists()


def sqlite_error(exc: sqlite3.Error, path: Path, doing: str) -> OmdpError:
    """One line for an SQLite failure on a session."""
    text = " ".join(str(exc).split())
    low = text.lower()
    if "disk is full" in low or "disk full" in low:
        return OmdpError(
            f"cannot {doing} in session {path}: the disk is full",
            "free some space and run the command again",
        )
    if "readonly" in low or "read-only" in low:
        return OmdpError(
            f"cannot {doing}: session {path} is read-only", "make it writable, or work on a copy"
        )
    if "locked" in low or "busy" in low:
        return OmdpError(
            f"cannot {doing}: session {path} is busy (another program holds a lock on it)",
            "try again when it is done",
        )
    if "malformed" in low or "not a database" in low or "corrupt" in low:
        return OmdpError(f"{path} is damaged ({text})", FIX_DAMAGED)
    if "unable to open" in low:
        journal = path.with_name(path.name + "-journal")
        if journal.exists() and journal.stat().st_size:
            return OmdpError(
                f"cannot read {path}: an interrupted write left {journal.name} "
                "beside it and this folder is read-only",
                "open it once where it can be written, to finish recovery",
            )
        return OmdpError(
            f"cannot open session {path} ({text})", "check that the file and its folder can be read"
        )
    return OmdpError(f"cannot {doing} in session {path} ({text})", FIX_DAMAGED)


def create_file(path: Path, data: bytes) -> None:
    """Put `data` at `path` whole, or raise; never replaces an existing file.

    Where the filesystem allows (Linux O_TMPFILE) the file has no name until it is whole,
    so even a kill leaves nothing behind; elsewhere it is written under a hidden temporary
    name first. Missing folders are made, and removed again if the session could not be
    put there."""
    made = _make_folders(path.parent)
    try:
        try:
            if not _create_unnamed(path, data):
                _create_named(path, data)
        except OSError as exc:
            raise _create_error(exc, path) from None
        _fsync_folder(path.parent)
    except BaseException:
        for folder in reversed(made):
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise


def _write_all(fd: int, data: bytes) -> None:
    with os.fdopen(fd, "wb", closefd=False) as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _create_unnamed(path: Path, data: bytes) -> bool:
    """Write an anonymous file in the target's folder and link it to its name; False
    where the filesystem or platform cannot."""
    flag = getattr(os, "O_TMPFILE", 0)
    if not flag or not os.path.isdir("/proc/self/fd"):
        return False
    try:
        fd = os.open(path.parent, flag | os.O_WRONLY, 0o644)
    except OSError as exc:
        if exc.errno in (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL, errno.ENOENT):
            return False
        raise
    try:
        _write_all(fd, data)
        try:
            os.link(f"/proc/self/fd/{fd}", path)
        except FileExistsError:
            raise exists_error(path) from None
        except OSError as exc:
            if exc.errno in (
                errno.EPERM,
                errno.ENOTSUP,
                errno.EOPNOTSUPP,
                errno.ENOSYS,
                errno.EMLINK,
                errno.ENOENT,
                errno.EXDEV,
            ):
                return False
            raise
    finally:
        os.close(fd)
    return True


def _create_named(path: Path, data: bytes) -> None:
    tmp = path.parent / f".omdp-new-{secrets.token_hex(8)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        try:
            _write_all(fd, data)
        finally:
            os.close(fd)
        _place(tmp, path)
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)


def _place(tmp: Path, path: Path) -> None:
    """Give the finished temporary file its name, unless the name exists."""
    try:
        os.link(tmp, path)
        return
    except FileExistsError:
        raise exists_error(path) from None
    except OSError as exc:
        if exc.errno not in (
            errno.EPERM,
            errno.ENOTSUP,
            errno.EOPNOTSUPP,
            errno.ENOSYS,
            errno.EMLINK,
        ):
            raise
    # A filesystem without hard links: reserve the name, then move the file over it.
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
    except FileExistsError:
        raise exists_error(path) from None
    os.replace(tmp, path)


def exists_error(path: Path) -> SessionExists:
    return SessionExists(
        f"{path} already exists", "open it to resume, or choose another --session name"
    )


def _create_error(exc: OSError, path: Path) -> OmdpError:
    if exc.errno == errno.ENAMETOOLONG:
        return OmdpError(
            f"cannot create session {path}: the name is too long for the filesystem",
            "choose a shorter name with --session",
        )
    return os_error(exc, path, "create session")


def _make_folders(folder: Path) -> list[Path]:
    """Create `folder` and missing parents; the ones made, outermost first."""
    missing = []
    f = folder
    while not f.exists() and f != f.parent:
        missing.append(f)
        f = f.parent
    made: list[Path] = []
    for m in reversed(missing):
        try:
            m.mkdir()
        except FileExistsError:
            continue
        except OSError as exc:
            for d in reversed(made):
                with contextlib.suppress(OSError):
                    d.rmdir()
            raise os_error(exc, m, "create the folder") from None
        made.append(m)
    return made


def _fsync_folder(folder: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
