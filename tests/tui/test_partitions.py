"""The partitions screen over fixed timings: typing link values re-ranks at once."""

from __future__ import annotations

from pathlib import Path

from textual.widgets import DataTable, Input

from omdp_tui.app import Launch, OmdpApp
from omdp_tui.screens.partitions import PartitionsScreen
from omdp_tui.widgets.step_input import StepInput
from tui.helpers import screen_text, wait_for


async def open_partitions(pilot) -> PartitionsScreen:
    app = pilot.app
    await wait_for(
        pilot,
        lambda: (
            app.workspace is not None
            and app.screen.id != "_default"
            and type(app.screen).__name__ != "LoadingScreen"
        ),
    )
    await pilot.press("4")
    await wait_for(pilot, lambda: isinstance(app.screen, PartitionsScreen))
    return app.screen


def top_cuts(screen: PartitionsScreen) -> list[str]:
    """The cuts of each row shown, best first ('3,7')."""
    table = screen.query_one("#topk-table", DataTable)
    assert table.row_count == len(screen.row_cuts)
    return list(screen.row_cuts)


async def test_bandwidth_change_reranks(fixed_workspace):
    app = OmdpApp(Launch("workspace", prepared=fixed_workspace))
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_partitions(pilot)
        before = top_cuts(screen)
        assert len(before) == 10
        # A fast first link makes offloading early (cut 0 on the glasses) cheaper still,
        # a slow one makes computing more on the glasses worth it.
        await pilot.press("b")
        field = screen.query_one("#bw-0", StepInput)
        assert app.focused is field
        field.value = "0.05"
        await pilot.pause()
        after = top_cuts(screen)
        assert after != before
        assert fixed_workspace.links[0].bandwidth_mbps == 0.05
        assert after[0] == "10,10"  # nothing crosses the slow link: all on the glasses
        # the highlighted partition is still the one selected before the change
        assert fixed_workspace.selected_cuts == (0, 0)
        table = screen.query_one("#topk-table", DataTable)
        assert screen.row_cuts[table.cursor_row] == "0,0"


async def test_arrow_keys_step_and_invalid_values_are_refused(fixed_workspace):
    app = OmdpApp(Launch("workspace", prepared=fixed_workspace))
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_partitions(pilot)
        await pilot.press("b", "up")
        assert fixed_workspace.links[0].bandwidth_mbps == 25.0
        await pilot.press("shift+down")
        assert fixed_workspace.links[0].bandwidth_mbps == 12.5
        field = screen.query_one("#bw-0", StepInput)
        for bad, reason in (("abc", "not a number"), ("0", "between")):
            field.value = bad
            await pilot.pause()
            assert reason in screen_text(app)
            assert fixed_workspace.links[0].bandwidth_mbps == 12.5
        field.value = "12.5"  # the value in use again: the reason goes, the ranking is back
        await pilot.pause()
        assert "between" not in screen_text(app)
        assert top_cuts(screen)


async def test_a_step_reranks_before_the_next_frame(fixed_workspace):
    """↑ re-ranks inside the key's own handler, so the field and the table change in the
    same frame (waiting for the field's Changed message costs a screen update period)."""
    app = OmdpApp(Launch("workspace", prepared=fixed_workspace))
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_partitions(pilot)
        await pilot.press("b")
        field = screen.query_one("#bw-0", StepInput)
        ranked = []
        original = screen.rerank
        screen.rerank = lambda: (ranked.append(field.value), original())
        field.action_step(-40)  # its Changed message is only queued when this returns
        assert ranked == [field.value] and fixed_workspace.links[0].bandwidth_mbps < 20
        await pilot.pause()
        assert ranked == [field.value]  # the Changed message that follows ranks nothing again


async def test_options_cycle_and_k(fixed_workspace):
    app = OmdpApp(Launch("workspace", prepared=fixed_workspace))
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_partitions(pilot)
        await pilot.press("o")
        assert fixed_workspace.objective == "throughput"
        await pilot.press("c")
        assert fixed_workspace.cost_model == "estimated"
        assert "estimated · throughput" in screen_text(app)
        await pilot.press("k")
        screen.query_one("#rank-k", StepInput).value = "3"
        await pilot.pause()
        assert len(top_cuts(screen)) == 3


def write_trace(path: Path) -> Path:
    """A made-up trace on the first link: fast, then nearly dead, then fast again."""
    lines = [f"{t} {bw}" for t, bw in enumerate([200.0] * 5 + [0.02] * 5 + [200.0] * 5)]
    path.write_text("\n".join(lines) + "\n")
    return path


async def test_trace_playback_steps_and_robust_choice(fixed_workspace, tmp_path: Path):
    trace = write_trace(tmp_path / "walk.tsv")
    app = OmdpApp(Launch("workspace", prepared=fixed_workspace))
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_partitions(pilot)
        typed = top_cuts(screen)
        await pilot.press("t")
        await wait_for(pilot, lambda: app.screen.query("#field-path"))
        app.screen.query_one("#field-path", Input).value = str(trace)
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: screen.playback is not None)
        assert "best now" in screen_text(app) and "robust" in screen_text(app)
        fast = top_cuts(screen)
        for _ in range(6):
            await pilot.press("right_square_bracket")
        assert screen.playback.step == 6
        slow = top_cuts(screen)
        assert slow != fast and slow[0] == "10,10"  # link nearly dead: all on the glasses
        assert "0.0 Mbit/s" in screen_text(app)
        await pilot.press("r")  # the robust choice is highlighted when in the top K
        robust = screen.playback.analysis.best_mean
        assert fixed_workspace.selected_cuts == robust.cuts
        await pilot.press("p")
        assert screen.playback.playing
        await wait_for(pilot, lambda: screen.playback.step == 14, timeout=30)  # idle: 1.6 s
        await wait_for(pilot, lambda: not screen.playback.playing)
        await pilot.press("x")
        assert screen.playback is None
        assert top_cuts(screen) == typed  # the typed link values rank again
        assert fixed_workspace.get_ui("partitions.trace")["path"] == str(trace)


async def test_bad_trace_file_is_a_dialog_not_a_crash(fixed_workspace, tmp_path: Path):
    bad = tmp_path / "bad.tsv"
    bad.write_text("0 10\n1 abc\n")
    app = OmdpApp(Launch("workspace", prepared=fixed_workspace))
    async with app.run_test(size=(80, 24)) as pilot:
        await open_partitions(pilot)
        await pilot.press("t")
        await wait_for(pilot, lambda: app.screen.query("#field-path"))
        app.screen.query_one("#field-path", Input).value = str(bad)
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: "Cannot replay the trace" in screen_text(app))
        assert "got '1 abc'" in screen_text(app)  # the engine's line-precise message
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, PartitionsScreen))
