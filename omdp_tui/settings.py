"""The user's small settings file (the theme choice), kept apart from any session.

Location: `$OMDP_CONFIG_DIR` if set (tests point it at a temporary folder), else
`$XDG_CONFIG_HOME/omdp`, else `~/.config/omdp`; the file is `settings.json` in it.
A missing or unreadable file means defaults: settings must never stop the app starting.
"""

from __future__ import annotations

import json
import os
from pathlib import Path


def config_dir() -> Path:
    if os.environ.get("OMDP_CONFIG_DIR"):
        return Path(os.environ["OMDP_CONFIG_DIR"])
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "omdp"


def settings_path() -> Path:
    return config_dir() / "settings.json"


def load_settings() -> dict:
    try:
        data = json.loads(settings_path().read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def save_setting(key: str, value: object) -> str | None:
    """Store one setting; returns an error message instead of raising (read-only home)."""
    data = load_settings()
    data[key] = value
    path = settings_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
        tmp.replace(path)
    except OSError as exc:
        return f"cannot save settings to {path}: {exc.strerror}"
    return None
