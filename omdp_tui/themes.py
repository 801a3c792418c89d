"""Colour themes as TOML data files, validated on load and turned into Textual `Theme`s.

Themes are data so an operator can add one without touching code (drop a file into
`themes/` or `$XDG_CONFIG_HOME/omdp/themes/`). A broken file must not crash the app:
`load_theme` raises `ThemeError` naming the file and the field, and `load_themes` collects
those errors so the app can show them as a toast and carry on with the others.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from textual.color import Color, ColorParseError
from textual.theme import Theme

from omdp_tui.settings import config_dir


def builtin_dir() -> Path:
    """Where the shipped themes live: the repository's `themes/` in a checkout, else the
    folder the installed distribution put them in (pyproject's data-files)."""
    checkout = Path(__file__).resolve().parent.parent / "themes"
    if checkout.is_dir():
        return checkout
    with contextlib.suppress(importlib.metadata.PackageNotFoundError):
        for item in importlib.metadata.files("omdp") or []:
            if item.suffix == ".toml" and item.parent.name == "themes":
                return Path(str(item.locate())).parent
    return checkout


BUILTIN_DIR = builtin_dir()
DEFAULT_THEME = "omdp-dark"

_COLOUR_FIELDS = (
    "primary",
    "secondary",
    "accent",
    "warning",
    "error",
    "success",
    "foreground",
    "background",
    "surface",
    "panel",
    "boost",
)
_FLOAT_FIELDS = {"luminosity_spread": (0.0, 1.0), "text_alpha": (0.0, 1.0)}
_BOOL_FIELDS = ("dark",)


class ThemeError(ValueError):
    """A theme file that cannot be used; the message names the file and the field."""


@dataclass
class ThemeSet:
    themes: dict[str, Theme] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)


def _check_colour(path: Path, key: str, value: object) -> str:
    if not isinstance(value, str):
        raise ThemeError(
            f"{path}: field '{key}' must be a colour string like \"#1e90ff\", "
            f"not {type(value).__name__}"
        )
    try:
        Color.parse(value)
    except ColorParseError as exc:
        raise ThemeError(
            f"{path}: field '{key}': '{value}' is not a colour "
            "(use #rrggbb, rgb(r,g,b) or a CSS colour name)"
        ) from exc
    return value


def parse_theme(data: dict, path: Path) -> Theme:
    """Validate one theme's TOML table and build the Theme."""
    known = {"name", "variables", *_COLOUR_FIELDS, *_FLOAT_FIELDS, *_BOOL_FIELDS}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ThemeError(
            f"{path}: unknown field '{unknown[0]}' (known: {', '.join(sorted(known))})"
        )
    name = data.get("name")
    if not isinstance(name, str) or not name.strip():
        raise ThemeError(f"{path}: field 'name' is missing or empty (give a theme name)")
    if "primary" not in data:
        raise ThemeError(f"{path}: field 'primary' is missing (every theme needs a primary colour)")
    kwargs: dict = {"name": name.strip()}
    for key in _COLOUR_FIELDS:
        if key in data:
            kwargs[key] = _check_colour(path, key, data[key])
    for key, (lo, hi) in _FLOAT_FIELDS.items():
        if key in data:
            value = data[key]
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not (lo <= value <= hi)
            ):
                raise ThemeError(f"{path}: field '{key}' must be a number from {lo} to {hi}")
            kwargs[key] = float(value)
    for key in _BOOL_FIELDS:
        if key in data:
            if not isinstance(data[key], bool):
                raise ThemeError(f"{path}: field '{key}' must be true or false")
            kwargs[key] = data[key]
    variables = data.get("variables", {})
    if not isinstance(variables, dict):
        raise ThemeError(f"{path}: field 'variables' must be a table of name = \"value\"")
    for key, value in variables.items():
        if not isinstance(value, str):
            raise ThemeError(f"{path}: field 'variables.{key}' must be a string")
    kwargs["variables"] = dict(variables)
    return Theme(**kwargs)


def load_theme(path: Path) -> Theme:
    """One theme file → Theme, or ThemeError naming the file and what is wrong."""
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as exc:
        raise ThemeError(f"{path}: cannot read ({exc.strerror})") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ThemeError(f"{path}: not valid TOML ({exc})") from exc
    return parse_theme(data, path)


def theme_dirs() -> list[Path]:
    """Shipped themes first, then the user's (which may override a shipped name)."""
    return [BUILTIN_DIR, config_dir() / "themes"]


def load_themes(dirs: list[Path] | None = None) -> ThemeSet:
    """Every `*.toml` theme in `dirs`; broken files are reported, not fatal."""
    found = ThemeSet()
    for directory in theme_dirs() if dirs is None else dirs:
        if not directory.is_dir():
            continue
        for path in sorted(directory.glob("*.toml")):
            try:
                theme = load_theme(path)
            except ThemeError as exc:
                found.errors.append(str(exc))
                continue
            found.themes[theme.name] = theme
    return found
