"""Noisy cells on screen and `r` on the Profile screen: real agents measure the chosen
cell again; the earlier result stays in the session's history."""

from __future__ import annotations

from pathlib import Path

from textual.widgets import DataTable, OptionList, RichLog

from backend import units
from backend.device.protocol import TimingSettings
from backend.model.analysis import analyze
from backend.profiling.jobs import Measured
from backend.usecases.remeasure import Target
from omdp_tui.app import Launch, OmdpApp
from omdp_tui.screens.dialogs import ChoiceDialog
from omdp_tui.screens.profile import ProfileBatch, ProfileScreen
from omdp_tui.workspace import Workspace
from tui.conftest import fixed_session
from tui.helpers import wait_for
from tui.test_partitions import open_partitions


def noisy_workspace(tiny_path: Path, tmp_path: Path, throttled=frozenset()) -> Workspace:
    """phone [2,5) noisy, and the (device, a, b) in `throttled` timed on a throttled CPU."""
    analysis = analyze(str(tiny_path))
    session = fixed_session(
        tmp_path / "sessions" / "noisy.omdp",
        analysis,
        [2, 5, 7],
        noisy={("phone", 2, 5)},
        throttled=throttled,
    )
    ws = Workspace(analysis, str(tiny_path), session)
    ws._save_links()
    ws.timing = TimingSettings(warmup=1, min_runs=3, max_runs=20, max_seconds=0.5)
    return ws


async def test_noisy_cell_is_marked_and_measured_again(tiny_path: Path, tmp_path: Path):
    ws = noisy_workspace(tiny_path, tmp_path)
    app = OmdpApp(Launch("workspace", prepared=ws))
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_partitions(pilot)
        marked = [r for r, cuts in enumerate(screen.row_cuts) if cuts == "2,5"]
        assert marked and screen._shown[marked[0]][0][0].endswith("!")
        await app.action_show("profile")
        await wait_for(pilot, lambda: isinstance(app.screen, ProfileScreen))
        screen = app.screen
        table = screen.query_one("#timing-table", DataTable)
        assert str(table.get_cell("2:5", "d1")).endswith("%!")
        table.move_cursor(row=table.get_row_index("2:5"), column=2)  # phone's column
        old = ws.results()[("phone", 2, 5)]["measurement_id"]
        await pilot.press("r")
        await wait_for(pilot, lambda: isinstance(app.screen, ChoiceDialog))
        options = app.screen.query_one(OptionList)
        labels = [str(options.get_option_at_index(i).prompt) for i in range(options.option_count)]
        assert labels == [
            "this cell: phone [2,5)",
            "segment [2,5) on every device",
            "every segment on phone",
            "all noisy measurements (1)",
        ]
        await pilot.press("enter")  # this cell
        await wait_for(pilot, lambda: screen.profiler is not None, timeout=10)
        await wait_for(pilot, lambda: screen.profiler is None, timeout=90)
        new = ws.results()[("phone", 2, 5)]
        assert new["status"] == "ok" and new["measurement_id"] != old
        history = ws.session.history_frame()
        assert list(history["reason"]) == ["cell"] and list(history["measurement"]) == [old]
        assert int(history["kept_samples"][0]) == 10
        log = " ".join(line.text for line in screen.query_one(RichLog).lines)
        assert "re-measuring 1: segment [2, 5) on phone" in log


async def test_a_throttled_cell_is_marked_and_offered_again(tiny_path: Path, tmp_path: Path):
    ws = noisy_workspace(tiny_path, tmp_path, throttled={("glasses", 0, 2)})
    app = OmdpApp(Launch("workspace", prepared=ws))
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_partitions(pilot)
        rows = [r for r, cuts in enumerate(screen.row_cuts) if cuts.startswith("2,5")]
        table = screen.query_one("#topk-table", DataTable)
        table.move_cursor(row=rows[0], animate=False)
        await pilot.pause()
        note = str(screen.query_one("#noise-note").render())
        assert "glasses [0,2) throttled" in note and "phone [2,5) noisy" in note, note
        await app.action_show("profile")
        await wait_for(pilot, lambda: isinstance(app.screen, ProfileScreen))
        table = app.screen.query_one("#timing-table", DataTable)
        assert str(table.get_cell("0:2", "d0")).endswith("%!")
        await pilot.press("r")
        await wait_for(pilot, lambda: isinstance(app.screen, ChoiceDialog))
        options = app.screen.query_one(OptionList)
        labels = [str(options.get_option_at_index(i).prompt) for i in range(options.option_count)]
        assert labels[-2:] == ["all noisy measurements (1)", "all timed on a throttled CPU (1)"]


async def test_a_device_sharing_cpus_says_whom_it_waits_for(tiny_path: Path, tmp_path: Path):
    """The cloud (no CPUs of its own) measures after glasses and phone: its row says so
    instead of a bare 0/N, and the plan line gives the time left as it goes."""
    analysis = analyze(str(tiny_path))
    session = fixed_session(tmp_path / "sessions" / "w.omdp", analysis, [2, 5, 7], measured=0.0)
    ws = Workspace(analysis, str(tiny_path), session)
    ws.timing = TimingSettings(warmup=1, min_runs=3, max_runs=5, max_seconds=0.3)
    ws.node_times_runs = 0
    app = OmdpApp(Launch("workspace", prepared=ws))
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: app.workspace is not None)
        await app.action_show("profile")
        await wait_for(pilot, lambda: isinstance(app.screen, ProfileScreen))
        screen = app.screen
        await pilot.press("s")
        await pilot.pause(0.05)
        state = str(screen.query_one("#state-2").render())
        assert "waiting for glasses and phone (same CPUs)" in state
        await wait_for(pilot, lambda: screen.profiler is None, timeout=120)
        assert ws.missing() == []


async def test_a_new_result_marks_the_earlier_one_it_contradicts(tiny_path: Path, tmp_path: Path):
    """A result timed at a busy moment makes both it and the fastest segment containing
    it noisy: the earlier cell is marked when the new one arrives, not at a redraw."""
    ws = noisy_workspace(tiny_path, tmp_path)  # glasses runs [0,2) [0,5) [0,7) [0,n)
    app = OmdpApp(Launch("workspace", prepared=ws))
    async with app.run_test(size=(80, 24)) as pilot:
        await app.action_show("profile")
        await wait_for(pilot, lambda: isinstance(app.screen, ProfileScreen))
        screen = app.screen
        table = screen.query_one("#timing-table", DataTable)
        assert not str(table.get_cell("0:5", "d0")).endswith("!")
        ws.remeasure(Target("cell", "glasses", (0, 2)))
        shorter = ws.results()[("glasses", 0, 5)]["median_ms"]
        busy = 2 * shorter  # slower than every segment containing it, [0,5) the fastest
        stats = {"median": busy, "p10": busy, "p90": busy, "mean": busy, "std": 0.0}
        ws.session.record_result(
            "glasses", (0, 2), load_ms=1.0, samples=[busy] * 3, stats=stats | {"rel_ci": 0.0}
        )
        screen.post_message(ProfileBatch([Measured("glasses", (0, 2), "ok", busy, 3)]))
        await wait_for(pilot, lambda: str(table.get_cell("0:2", "d0")).endswith("!"))
        assert str(table.get_cell("0:5", "d0")).endswith("%!")
        assert not str(table.get_cell("0:7", "d0")).endswith("!")
        why = ws.results()[("glasses", 0, 2)]["contradicts"]
        assert why == f"slower than [0,5) ({units.ms_unit(shorter)}), which contains it"
