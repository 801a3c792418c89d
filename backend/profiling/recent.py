"""The recent-sessions index: every session opened, wherever its file is.

Sessions live where the operator puts them (`--session lab/run1.omdp`), so listing one
folder misses most of them. Each open (CLI or TUI, never a dry run) puts the file's
absolute path at the head of a small JSON list in the user's state folder
(`$OMDP_STATE_DIR`, else `$XDG_STATE_HOME/omdp`, else `~/.local/state/omdp`);
`omdp sessions` and the picker read it. The index is a convenience: a file that cannot be
read or written is skipped, never an error, and entries whose file is gone are dropped.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

from backend.files import atomic_write

LIMIT = 50
INDEX = "recent-sessions.json"
MAX_BYTES = 1 << 20


def state_dir() -> Path:
    if os.environ.get("OMDP_STATE_DIR"):
        return Path(os.environ["OMDP_STATE_DIR"])
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "omdp"


def index_path() -> Path:
    return state_dir() / INDEX


def recent_paths() -> list[Path]:
    """Indexed sessions whose file still exists, most recently opened first."""
    try:
        with open(index_path(), "rb") as f:
            entries = json.loads(f.read(MAX_BYTES))
    except (OSError, ValueError):
        return []
    if not isinstance(entries, list):
        return []
    out = []
    for entry in entries:
        if isinstance(entry, str) and entry not in out and Path(entry).is_file():
            out.append(entry)
    return [Path(p) for p in out]


def remember(path: str | os.PathLike[str]) -> None:
    """Put `path` at the head of the index (best effort: never fails the caller)."""
    full = str(Path(path).resolve())
    entries = [str(p) for p in recent_paths() if str(p) != full]
    with contextlib.suppress(OSError):
        state_dir().mkdir(parents=True, exist_ok=True)
        atomic_write(index_path(), json.dumps([full, *entries][:LIMIT], indent=1) + "\n")
