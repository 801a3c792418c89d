"""Finding one's way at 80×24: `?`/F1 help from the bindings, a footer that never cuts a
hint, empty states that name the real cause, the log that opens, undo for `x`, and the
graph scrolled to the remembered node."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.widgets import DataTable, RichLog

from backend.model.analysis import analyze
from omdp_tui.app import Launch, OmdpApp
from omdp_tui.screens.graph import GraphScreen
from omdp_tui.screens.help import HelpScreen
from omdp_tui.widgets.key_bar import KeyBar, fit_hints, hints
from omdp_tui.workspace import Workspace
from tui.conftest import fixed_session
from tui.helpers import screen_text, wait_for

SCREENS = ("graph", "devices", "profile", "partitions")


async def _open(app, pilot, screen):
    await wait_for(pilot, lambda: app.workspace is not None)
    await app.action_show(screen)
    await pilot.pause(0.1)


@pytest.mark.parametrize("key", ["question_mark", "f1"])
async def test_help_lists_every_key_of_the_screen(fixed_workspace, key):
    app = OmdpApp(Launch("workspace", prepared=fixed_workspace))
    async with app.run_test(size=(80, 24)) as pilot:
        for name in SCREENS:
            await _open(app, pilot, name)
            screen = app.screen
            own = [b for b in type(screen).BINDINGS if b.description]
            await pilot.press(key)
            await wait_for(pilot, lambda: isinstance(app.screen, HelpScreen))
            help_screen = app.screen
            assert [what for _, what, _ in help_screen.keys] == [
                b.tooltip or b.description for b in own
            ]
            assert f"Keys — {name.capitalize()}" in screen_text(app)
            await pilot.press("end")  # a long list scrolls; its end is the global keys
            await pilot.pause()
            assert "On every screen" in screen_text(app)
            await pilot.press("escape")
            await wait_for(pilot, lambda s=screen: app.screen is s)


async def test_footer_shows_whole_hints_and_points_to_help(long_workspace):
    app = OmdpApp(Launch("workspace", prepared=long_workspace))
    async with app.run_test(size=(80, 24)) as pilot:
        for name in SCREENS:
            await _open(app, pilot, name)
            bar = app.screen.query_one(KeyBar)
            line = screen_text(app).splitlines()[-1]
            shown, cut = fit_hints(hints(app.screen), 80)
            for key, desc in shown:
                assert f"{key} {desc}" in line
            assert ("? more keys" if cut else "? help") in line and "^p palette" in line
            assert bar.region.width == 80
        # the devices screen has more keys than fit: the rest are on ?
        await _open(app, pilot, "devices")
        assert "? more keys" in screen_text(app).splitlines()[-1]


def _partly_measured(tiny_path: Path, tmp_path: Path, share: float) -> Workspace:
    analysis = analyze(str(tiny_path))
    session = fixed_session(tmp_path / "sessions" / "p.omdp", analysis, [2, 5, 7], measured=share)
    return Workspace(analysis, str(tiny_path), session)


@pytest.mark.parametrize(
    "share, words",
    [
        (0.0, "nothing measured yet: s on the profile screen (3) measures the plan"),
        (0.5, "2 of ≤10 · only 9/18 measured"),
    ],
)
async def test_empty_partitions_say_the_real_cause(tiny_path, tmp_path, share, words):
    ws = _partly_measured(tiny_path, tmp_path, share)
    app = OmdpApp(Launch("workspace", prepared=ws))
    async with app.run_test(size=(80, 24)) as pilot:
        await _open(app, pilot, "partitions")
        assert words in screen_text(app)
        assert "no feasible partition" not in screen_text(app)
        if share == 0:
            await pilot.press("e")
            await pilot.pause(0.1)
            said = [n.message for n in app._notifications]
            assert said and said[-1].startswith("no partition to export: nothing measured yet")
            assert "robust" not in said[-1]


async def test_l_opens_the_log_and_escape_closes_it(fixed_workspace):
    app = OmdpApp(Launch("workspace", prepared=fixed_workspace))
    async with app.run_test(size=(80, 24)) as pilot:
        await _open(app, pilot, "profile")
        log = app.screen.query_one(RichLog)
        small = log.region.height
        await pilot.press("l")
        await pilot.pause(0.1)
        assert log.has_focus and log.region.height > 2 * small
        assert "Esc or l returns" in screen_text(app)
        await pilot.press("escape")
        await pilot.pause(0.1)
        assert log.region.height == small
        assert app.screen.query_one("#timing-table", DataTable).has_focus


async def test_x_clears_and_u_brings_the_candidates_back(fixed_workspace):
    app = OmdpApp(Launch("workspace", prepared=fixed_workspace))
    async with app.run_test(size=(80, 24)) as pilot:
        await _open(app, pilot, "graph")
        before = list(fixed_workspace.candidates)
        assert before
        await pilot.press("x")
        await pilot.pause(0.1)
        assert fixed_workspace.candidates == []
        assert any("u brings them back" in n.message for n in app._notifications)
        await pilot.press("u")
        await pilot.pause(0.1)
        assert fixed_workspace.candidates == before
        assert fixed_workspace.session.candidates() == before


async def test_resume_scrolls_the_graph_to_the_remembered_node(tiny_model_path, tmp_path):
    """A 20-node model at 80×24: the remembered last node is in view, not off screen."""
    analysis = analyze(str(tiny_model_path))
    session = fixed_session(tmp_path / "sessions" / "g.omdp", analysis, [4, 9])
    session.set_ui_state("graph.node", analysis.n - 1)
    ws = Workspace(analysis, str(tiny_model_path), session)
    app = OmdpApp(Launch("workspace", prepared=ws))
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, GraphScreen))
        await pilot.pause(0.2)
        table = app.screen.query_one("#node-table", DataTable)
        visible = table.scrollable_content_region.height - 1
        assert table.row_count > visible  # the row would be off screen without scrolling
        assert table.cursor_row == analysis.n - 1
        top = round(table.scroll_offset.y)
        assert top <= table.cursor_row < top + visible
