"""Sessions from the UI: the picker lists and resumes them, save-as copies and continues,
and a cancelled profile keeps what it measured."""

from __future__ import annotations

from pathlib import Path

from textual.widgets import DataTable, Input

from backend.model.analysis import analyze
from backend.profiling.session import Session
from omdp_tui.app import Launch, OmdpApp
from omdp_tui.screens.graph import GraphScreen
from omdp_tui.screens.picker import PickerScreen
from omdp_tui.screens.profile import ProfileScreen
from tui.conftest import fixed_session
from tui.helpers import screen_text, wait_for


async def test_picker_lists_and_resumes_a_session(isolated: Path, tiny_path: Path):
    path = isolated / "sessions" / "lab.omdp"
    fixed_session(path, analyze(str(tiny_path)), [2, 5]).close()
    app = OmdpApp(Launch())
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, PickerScreen))
        table = app.screen.query_one("#picker-recent", DataTable)
        assert table.row_count == 1
        assert "lab.omdp" in screen_text(app) and "12/12" in screen_text(app)
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.workspace is not None)
        assert app.workspace.session_path == path
        assert app.workspace.candidates == [2, 5]


async def test_picker_opens_a_new_session_on_a_model(isolated: Path, tiny_path: Path):
    app = OmdpApp(Launch())
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, PickerScreen))
        await pilot.press("n")
        app.screen.query_one("#picker-model", Input).value = str(tiny_path)
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, GraphScreen))
        assert app.workspace.session_path == isolated / "sessions" / "tiny.omdp"
        assert (isolated / "sessions" / "tiny.omdp").exists()


async def test_save_as_copies_and_continues_in_the_copy(fixed_workspace, tmp_path: Path):
    ws = fixed_workspace
    app = OmdpApp(Launch("workspace", prepared=ws))
    target = tmp_path / "copy.omdp"
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, GraphScreen))
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: app.screen.query("#prompt-input"))
        app.screen.query_one("#prompt-input", Input).value = str(target)
        await pilot.press("enter")
        await wait_for(pilot, lambda: ws.session_path == target)
        assert "copy.omdp" in screen_text(app)
        await pilot.press("m")  # a change after save-as lands in the copy only
    with Session.open(target) as copy:
        assert copy.progress() == (18, 18)
        assert 1 in copy.candidates()
    with Session.open(tmp_path / "sessions" / "fixed.omdp") as original:
        assert 1 not in original.candidates()


async def test_cancelled_profile_keeps_what_it_measured(tmp_path: Path, tiny_path: Path):
    slow = {"warmup": 1, "min_runs": 100000, "max_runs": 100000, "max_seconds": 1.0}
    app = OmdpApp(
        Launch(
            "demo",
            session=tmp_path / "sessions" / "demo.omdp",
            demo_options={
                "model": str(tiny_path),
                "candidates": 3,
                "timing": slow,
                "node_times_runs": 0,
            },
        )
    )
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, ProfileScreen))
        screen = app.screen
        await pilot.press("s")
        await wait_for(pilot, lambda: len(app.workspace.results()) >= 2, timeout=30)
        await pilot.press("p")
        assert screen.paused
        await pilot.press("p", "x")
        await wait_for(pilot, lambda: screen.profiler is None, timeout=30)
        assert "profiling cancelled" in screen_text(app)
        measured = len(app.workspace.results())
        assert 2 <= measured < len(app.workspace.plan())
        assert app.workspace.missing()  # a resume does only what is left
