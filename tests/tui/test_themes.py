"""Themes are data files: each shipped one loads, a broken one is named precisely, and
the choice persists in the user's settings file."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.color import Color

from omdp_tui import settings
from omdp_tui.app import Launch, OmdpApp
from omdp_tui.themes import BUILTIN_DIR, ThemeError, load_theme, load_themes


def test_shipped_themes_load_and_cover_dark_light_and_contrast():
    found = load_themes([BUILTIN_DIR])
    assert found.errors == []
    themes = found.themes
    assert {"omdp-dark", "omdp-light", "omdp-contrast"} <= set(themes)
    assert themes["omdp-dark"].dark and not themes["omdp-light"].dark


def test_contrast_theme_uses_only_xterm_256_colours():
    """Over SSH without COLORTERM Textual shows 256 colours: the high-contrast theme must
    use exact palette entries so nothing blurs into its neighbour."""
    cube = {0x00, 0x5F, 0x87, 0xAF, 0xD7, 0xFF}
    greys = {8 + 10 * i for i in range(24)}
    theme = load_theme(BUILTIN_DIR / "omdp-contrast.toml")
    colours = [
        getattr(theme, f)
        for f in (
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
        )
    ]
    for text in colours:
        c = Color.parse(text)
        assert {c.r, c.g, c.b} <= cube or c.r == c.g == c.b in greys, text


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ('name = "x"\nprimary = "#zzzzzz"\n', "'primary'"),
        ('primary = "#ffffff"\n', "'name'"),
        ('name = "x"\n', "'primary'"),
        ('name = "x"\nprimary = "red"\ndark = "yes"\n', "'dark'"),
        ('name = "x"\nprimary = "red"\ncolour = "blue"\n', "'colour'"),
        ('name = "x"\nprimary = "red"\ntext_alpha = 3\n', "'text_alpha'"),
        ('name = "x"\nprimary = \n', "not valid TOML"),
    ],
)
def test_broken_theme_names_file_and_field(tmp_path: Path, body: str, field: str):
    path = tmp_path / "broken.toml"
    path.write_text(body)
    with pytest.raises(ThemeError) as err:
        load_theme(path)
    assert str(path) in str(err.value) and field in str(err.value)


def test_broken_user_theme_is_reported_and_the_rest_load(tmp_path: Path):
    user = tmp_path / "themes"
    user.mkdir()
    (user / "bad.toml").write_text('name = "bad"\nprimary = "nope"\n')
    (user / "mine.toml").write_text('name = "mine"\nprimary = "#123456"\n')
    found = load_themes([BUILTIN_DIR, user])
    assert "mine" in found.themes and "bad" not in found.themes
    assert len(found.errors) == 1 and "bad.toml" in found.errors[0]


async def test_theme_choice_persists_across_runs():
    app = OmdpApp(Launch())
    async with app.run_test(size=(80, 24)) as pilot:
        assert app.theme == "omdp-dark"
        app.theme = "omdp-contrast"
        await pilot.pause()
    assert settings.load_settings()["theme"] == "omdp-contrast"
    again = OmdpApp(Launch())
    async with again.run_test(size=(80, 24)):
        assert again.theme == "omdp-contrast"


async def test_theme_is_switchable_from_the_command_palette():
    app = OmdpApp(Launch())
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("ctrl+p")
        await pilot.pause()
        for key in "omdp-light":
            await pilot.press(key)
        await pilot.pause(0.3)
        await pilot.press("enter")
        await pilot.pause(0.2)
        assert app.theme == "omdp-light"
