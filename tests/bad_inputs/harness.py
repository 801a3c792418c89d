"""The promise every bad input must keep: exit 2, one line on stderr, no traceback, and
no file changed (nothing created, modified or removed under the watched folders).

Cases run in-process through `backend.cli.main` so hundreds of them stay fast; an
exception escaping `main` fails the case just as a traceback would.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from pathlib import Path

from backend.cli import main


def tree_state(folders: Iterable[Path]) -> dict[str, tuple[int, str]]:
    """Every file under `folders` (and the files themselves) → (mode, sha256)."""
    state: dict[str, tuple[int, str]] = {}
    for folder in folders:
        folder = Path(folder)
        if folder.is_file():
            paths = [folder]
        else:
            paths = sorted(folder.rglob("*")) if folder.exists() else []
        for p in paths:
            if p.is_file():
                state[str(p)] = (p.stat().st_mode, hashlib.sha256(p.read_bytes()).hexdigest())
            elif p.is_dir():
                state[str(p) + "/"] = (p.stat().st_mode, "")
    return state


def expect_rejected(
    capsys, args: Sequence[object], *, watch: Iterable[Path] = (), contains: str | None = None
) -> str:
    """Run `omdp ARGS`; assert the bad-input promise; return the one stderr line."""
    watch = list(watch)
    before = tree_state(watch)
    try:
        code = main([str(a) for a in args])
    except SystemExit as exc:  # argparse
        code = exc.code
    out, err = capsys.readouterr()
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, f"exit {code} for {args}; stderr={err!r} stdout={out[:300]!r}"
    assert len(lines) == 1, f"expected one line on stderr for {args}, got {err!r}"
    assert "Traceback" not in err, err
    assert lines[0].startswith("omdp: error: "), lines[0]
    if contains is not None:
        assert contains.lower() in lines[0].lower(), f"{contains!r} not in {lines[0]!r}"
    assert tree_state(watch) == before, f"files changed by a rejected command: {args}"
    return lines[0]
