"""Other Python interpreters of this machine, for the tests that run what ships to devices
on the oldest Python a device may have."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path


def _reports(python: str, version: tuple[int, int]) -> bool:
    """True when `python` runs and is that major.minor (a pyenv shim may name a version
    that is not installed)."""
    try:
        out = subprocess.run(
            [python, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.returncode == 0 and out.stdout.strip() == "{}.{}".format(*version)


def _pyenv_root() -> Path | None:
    root = os.environ.get("PYENV_ROOT")
    if root:
        return Path(root)
    pyenv = shutil.which("pyenv")
    if pyenv is None:
        return None
    try:
        out = subprocess.run([pyenv, "root"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return Path(out.stdout.strip()) if out.returncode == 0 and out.stdout.strip() else None


def find_python(version: tuple[int, int]) -> tuple[str | None, str]:
    """(an interpreter of that version, where it was looked for): pyenv's versions first
    (`pyenv root`, or $PYENV_ROOT), then `pythonX.Y` on PATH."""
    tag = "{}.{}".format(*version)
    candidates: list[str] = []
    root = _pyenv_root()
    if root is not None:
        candidates += [
            str(p / "bin" / "python")
            for p in sorted((root / "versions").glob(f"{tag}.*"), reverse=True)
        ]
    on_path = shutil.which(f"python{tag}")
    if on_path:
        candidates.append(on_path)
    for python in candidates:
        if _reports(python, version):
            return python, ""
    where = f"pyenv versions under {root}" if root else "no pyenv"
    return None, f"no Python {tag} here ({where}, no working python{tag} on PATH)"
