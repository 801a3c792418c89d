"""The content-hash model cache on a device (and the lab's, which is the local device's).

`<cache>/<sha256>.onnx` holds a model whose bytes hash to its name; the folder is 0700 and
the files 0600 (a model can be someone's work). A file is trusted by its name only while
it is provably the one that was checked: beside it, `.<sha256>.onnx.ok` records the size
and modification time it had when its hash was last verified. Reading compares those
(one stat); if they differ or the record is missing (an upload, a copy, an edit) the file
is hashed in full, and a file that fails is removed rather than used.

Stdlib only: it ships with the agent; the lab uses it to check what it reads back.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import secrets
from pathlib import Path

CHUNK = 1 << 20
SHA256 = re.compile(r"[0-9a-f]{64}")


class CacheDamaged(ValueError):
    """A cached file no longer matches its hash (it was removed)."""


def sha256_of(path: str | os.PathLike[str]) -> str:
    """sha256 of a file, read in chunks (the device's own copy of the lab's helper)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def private_dir(path: str | os.PathLike[str]) -> Path:
    """Create `path` (and parents) and make it 0700."""
    folder = Path(path)
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(folder, 0o700)
    return folder


def model_path(cache: str | os.PathLike[str], sha256: str) -> Path:
    if not SHA256.fullmatch(sha256):
        raise ValueError(f"bad model hash {sha256!r}")
    return Path(cache) / f"{sha256}.onnx"


def _stamp(path: Path) -> Path:
    return path.with_name(f".{path.name}.ok")


def _identity(path: Path) -> str:
    st = path.stat()
    return f"{st.st_size} {st.st_mtime_ns}"


def record_verified(path: Path) -> None:
    """Note that `path`, as it is now, hashes to its name."""
    stamp = _stamp(path)
    tmp = stamp.with_name(f"{stamp.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(_identity(path))
    os.replace(tmp, stamp)


def verified(path: Path, sha256: str) -> bool:
    """Does the file at `path` hold bytes hashing to `sha256`? One stat when it is unchanged
    since last verified, a full hash otherwise. A file that fails is removed."""
    try:
        if _stamp(path).read_text() == _identity(path):
            return True
    except OSError:
        pass
    if sha256_of(path) == sha256:
        with contextlib.suppress(OSError):
            record_verified(path)
        return True
    forget(path)
    return False


def forget(path: Path) -> None:
    for p in (path, _stamp(path)):
        with contextlib.suppress(FileNotFoundError):
            p.unlink()


def cached_model(
    cache: str | os.PathLike[str], sha256: str, source: str | os.PathLike[str] | None = None
) -> Path:
    """The verified `<cache>/<sha256>.onnx`, copied in from `source` if it is missing or
    damaged. The copy is hashed as it is made and renamed into place only if it matches."""
    target = model_path(cache, sha256)
    if target.exists():
        if verified(target, sha256):
            return target
        if not source or Path(source) == target:
            raise CacheDamaged(
                f"the cached model {sha256[:12]}… no longer matched its hash and was removed; "
                "run again to put it back"
            )
    elif not source:
        raise FileNotFoundError(
            f"model {sha256[:12]} is not in the cache {cache} and no path was given"
        )
    assert source is not None
    private_dir(cache)
    tmp = target.with_name(f".{target.name}.{secrets.token_hex(4)}.tmp")
    try:
        h = hashlib.sha256()
        with open(source, "rb") as src:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as dst:
                for chunk in iter(lambda: src.read(CHUNK), b""):
                    h.update(chunk)
                    dst.write(chunk)
                dst.flush()
                os.fsync(dst.fileno())
        got = h.hexdigest()
        if got != sha256:
            raise ValueError(f"{source} has sha256 {got[:12]}…, the job expects {sha256[:12]}…")
        os.replace(tmp, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    record_verified(target)
    return target


def check_cached_input(path: str | os.PathLike[str]) -> None:
    """A file the lab uploaded under its hash (`<sha256>.npy`) must still hash to its
    name; a file named otherwise (a local path) is the user's own and is read as it is."""
    name = Path(path).name
    sha = name.rsplit(".", 1)[0]
    if SHA256.fullmatch(sha) and not verified(Path(path), sha):
        raise CacheDamaged(f"the uploaded input {name} no longer matched its hash and was removed")
