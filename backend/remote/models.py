"""The lab's model cache: where a profiled model is put once, under its content hash.

`<cache>/<sha256>.onnx` (default `$OMDP_CACHE_DIR`, else `models/` in the lab's cache
folder) is what local agents read and what SSH uploads are made from. It follows the
device cache's rules (backend/device/cache.py, the same code): folder 0700, files 0600,
written whole or not at all (backend.files), and a file found there is used only after
its size and time (or, when those changed, its hash) prove it is the one written.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import onnx

from backend.device import cache as model_cache
from backend.files import atomic_write, cache_root, os_error


def model_cache_dir() -> Path:
    """`$OMDP_CACHE_DIR`, else `<cache_root>/models`."""
    env = os.environ.get("OMDP_CACHE_DIR")
    return Path(env) if env else cache_root() / "models"


def put_model(
    model: onnx.ModelProto | bytes, cache: str | os.PathLike[str] | None = None
) -> tuple[Path, str]:
    """The model's verified path in the cache (written if missing or damaged), and its
    sha256."""
    data = model if isinstance(model, bytes) else model.SerializeToString()
    sha = hashlib.sha256(data).hexdigest()
    folder = Path(cache) if cache is not None else model_cache_dir()
    target = model_cache.model_path(folder, sha)
    try:
        model_cache.private_dir(folder)
        if target.exists() and model_cache.verified(target, sha):
            return target, sha
        atomic_write(target, data, mode=0o600)
        model_cache.record_verified(target)
    except OSError as exc:
        raise os_error(exc, target, "write the model cache file") from None
    return target, sha
