"""Sessions from the UI: the picker lists and resumes them, save-as copies and continues,
and a cancelled profile keeps what it measured."""

from __future__ import annotations

import json
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
        await pilot.press("down", "enter")  # to the list, then resume
        await wait_for(pilot, lambda: app.workspace is not None)
        assert app.workspace.session_path == path
        assert app.workspace.candidates == [2, 5]


async def test_picker_opens_a_new_session_on_a_model(isolated: Path, tiny_path: Path):
    app = OmdpApp(Launch())
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, PickerScreen))
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


async def test_typing_in_the_picker_goes_to_the_model_field(isolated: Path, tiny_path: Path):
    """With a recent session highlighted, typed text and Enter open the typed model,
    never the session; a key typed on the list lands in the field too."""
    fixed_session(isolated / "sessions" / "other.omdp", analyze(str(tiny_path)), [2]).close()
    app = OmdpApp(Launch())
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, PickerScreen))
        field = app.screen.query_one("#picker-model", Input)
        assert field.has_focus
        await pilot.press("down")  # the list
        assert app.screen.query_one("#picker-recent", DataTable).has_focus
        await pilot.press(*str(tiny_path))  # typed on the list: goes to the field
        assert field.has_focus and field.value == str(tiny_path)
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, GraphScreen))
        assert app.workspace.session_path == isolated / "sessions" / "tiny.omdp"
        notes = [n.message for n in app._notifications]
        assert any("new session on one local device ('local')" in n for n in notes)


def _devices_toml(path: Path, names: list[str]) -> Path:
    path.write_text("".join(f'[[device]]\nname = "{n}"\n' for n in names))
    return path


async def _open_model(model: Path, devices: Path | None):
    app = OmdpApp(Launch("model", str(model), devices=devices))
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: app.workspace is not None or app.screen.is_modal)
        await pilot.pause(0.1)
        ws = app.workspace
        said = [n.message for n in app._notifications]
        error = None if ws else screen_text(app)
        return (ws.session_path, ws.devices) if ws else None, said, error


async def test_tui_devices_uses_the_file_or_a_session_of_its_own(isolated: Path, tiny_path: Path):
    sessions = isolated / "sessions"
    lab = _devices_toml(isolated / "lab.toml", ["glasses", "phone"])
    (opened, devices), said, _ = await _open_model(tiny_path, lab)
    assert opened == sessions / "tiny.omdp" and devices == ["glasses", "phone"]
    assert any("new session on the devices in" in n for n in said)
    # the same chain again: the same session, and it says so
    (opened, devices), said, _ = await _open_model(tiny_path, lab)
    assert opened == sessions / "tiny.omdp"
    assert any("resuming tiny.omdp: its chain is the one in lab" in n for n in said)
    # another chain: a session of its own beside it, said plainly
    edge = _devices_toml(isolated / "edge.toml", ["cam", "edge", "cloud"])
    (opened, devices), said, _ = await _open_model(tiny_path, edge)
    assert opened == sessions / "tiny-edge.omdp" and devices == ["cam", "edge", "cloud"]
    assert any("tiny.omdp is for the chain glasses → phone" in n for n in said)
    # a third chain under a taken name: refused with what to do
    _devices_toml(edge, ["a", "b"])
    result, _, error = await _open_model(tiny_path, edge)
    assert result is None and "give --session NEW.omdp" in error


async def test_picker_finds_sessions_saved_anywhere(isolated: Path, tiny_path: Path, capsys):
    """A session opened from another folder is listed by the picker and `omdp sessions`
    (the recent index in the state folder)."""
    from backend.cli import main

    elsewhere = isolated / "elsewhere" / "s.omdp"
    elsewhere.parent.mkdir()
    app = OmdpApp(Launch("model", str(tiny_path), session=elsewhere))
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: app.workspace is not None)
    app = OmdpApp(Launch())
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, PickerScreen))
        table = app.screen.query_one("#picker-recent", DataTable)
        assert str(elsewhere.resolve()) in [k.value for k in table.rows]
    capsys.readouterr()
    assert main(["sessions", "--json"]) == 0
    listed = [row["path"] for row in json.loads(capsys.readouterr().out)]
    assert str(elsewhere.resolve()) in listed
