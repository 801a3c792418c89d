"""End-to-end flows at 80×24, keyboard only, with real profiling (agents as subprocesses)
on a tiny model: demo → profile → partitions → bandwidth → export; and resume."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from textual.widgets import DataTable, Input

from omdp_tui.app import Launch, OmdpApp
from omdp_tui.screens.graph import GraphScreen
from omdp_tui.screens.partitions import PartitionsScreen
from omdp_tui.screens.profile import ProfileScreen
from omdp_tui.widgets.step_input import StepInput
from tui.helpers import screen_text, wait_for

FAST = {"warmup": 1, "min_runs": 3, "max_runs": 10, "max_seconds": 0.2}


def demo_app(session: Path, **options) -> OmdpApp:
    return OmdpApp(Launch("demo", session=session, demo_options=options))


def top_cuts(screen: PartitionsScreen) -> list[str]:
    """The cuts of each row shown, best first ('3,7')."""
    table = screen.query_one("#topk-table", DataTable)
    assert table.row_count == len(screen.row_cuts)
    return list(screen.row_cuts)


async def profile_everything(pilot) -> ProfileScreen:
    app = pilot.app
    await wait_for(pilot, lambda: isinstance(app.screen, ProfileScreen))
    screen = app.screen
    await pilot.press("s")
    await wait_for(pilot, lambda: screen.profiler is not None, timeout=5)
    await wait_for(pilot, lambda: screen.profiler is None, timeout=60)
    return screen


async def test_demo_profile_rank_bandwidth_export(tmp_path: Path, tiny_path: Path):
    session = tmp_path / "sessions" / "demo.omdp"
    app = demo_app(session, model=str(tiny_path), candidates=3, timing=FAST, node_times_runs=2)
    async with app.run_test(size=(80, 24)) as pilot:
        profile = await profile_everything(pilot)
        ws = app.workspace
        planned = len(ws.plan())
        assert planned > 0 and not ws.missing()
        assert {row["status"] for row in ws.results().values()} == {"ok"}
        assert "profiling finished" in screen_text(app)
        assert "✗" not in screen_text(app)
        assert profile.query_one("#timing-table", DataTable).row_count > 0

        await pilot.press("4")
        await wait_for(pilot, lambda: isinstance(app.screen, PartitionsScreen))
        screen = app.screen
        before = top_cuts(screen)
        assert before, "profiled sessions must rank"
        await pilot.press("b")  # first bandwidth field: glasses-phone
        field = screen.query_one("#bw-0", StepInput)
        field.value = "0.01"  # 10 kbit/s: sending anything off the glasses is hopeless
        await pilot.pause()
        after = top_cuts(screen)
        assert after != before
        n = ws.analysis.n
        assert after[0] == f"{n},{n}"  # everything stays on the glasses

        await pilot.press("escape", "down")  # back to the table, pick the second one
        chosen = ws.selected_cuts
        await pilot.press("e")
        await wait_for(pilot, lambda: app.screen.query("#prompt-input"))
        out = tmp_path / "chosen.json"
        app.screen.query_one("#prompt-input", Input).value = str(out)
        await pilot.press("enter")
        await wait_for(pilot, out.exists)
        doc = json.loads(out.read_text())
        from backend.export import read_export

        read_export(out)  # the engine's validation: schema, segments tile 0..N in order
        assert [d["name"] for d in doc["devices"]] == ["glasses", "phone", "cloud"]
        assert doc["model"]["sha256"] == ws.analysis.sha256
        (part,) = doc["partitions"]
        assert [s["end"] for s in part["segments"][:-1]] == list(chosen)
        assert doc["links"][0]["bandwidth_mbps"] == 0.01


async def test_resume_restores_the_same_state(tmp_path: Path, tiny_path: Path):
    session = tmp_path / "sessions" / "demo.omdp"
    app = demo_app(session, model=str(tiny_path), candidates=3, timing=FAST, node_times_runs=0)
    async with app.run_test(size=(80, 24)) as pilot:
        await profile_everything(pilot)
        ws = app.workspace
        await pilot.press("1")
        await wait_for(pilot, lambda: isinstance(app.screen, GraphScreen))
        await pilot.press("down", "down", "down", "m")  # one more candidate: after relu2
        await pilot.press("4")
        await wait_for(pilot, lambda: isinstance(app.screen, PartitionsScreen))
        await pilot.press("b")
        app.screen.query_one("#bw-1", StepInput).value = "42.5"
        await pilot.press("escape", "down", "o")
        saved = {
            "candidates": list(ws.candidates),
            "links": [(x.bandwidth_mbps, x.latency_ms) for x in ws.links],
            "selected": ws.selected_cuts,
            "objective": ws.objective,
            "results": ws.results(),
        }
        assert 4 in saved["candidates"] and saved["objective"] == "throughput"

    again = OmdpApp(Launch("session", session=session))
    async with again.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: isinstance(again.screen, PartitionsScreen))
        ws = again.workspace
        assert ws.candidates == saved["candidates"]
        assert [(x.bandwidth_mbps, x.latency_ms) for x in ws.links] == saved["links"]
        assert ws.selected_cuts == saved["selected"]
        assert ws.objective == "throughput"
        assert ws.results().keys() == saved["results"].keys()
        screen = again.screen
        assert screen.query_one("#bw-1", StepInput).value == "42.5"
        table = screen.query_one("#topk-table", DataTable)
        assert screen.row_cuts[table.cursor_row] == ",".join(map(str, saved["selected"]))
        # the new candidate's segments are what is left to profile
        await pilot.press("3")
        await wait_for(pilot, lambda: isinstance(again.screen, ProfileScreen))
        assert ws.missing()
        assert "measured" in screen_text(again)


async def test_demo_session_is_resumed_not_recreated(tmp_path: Path, tiny_path: Path):
    session = tmp_path / "sessions" / "demo.omdp"
    app = demo_app(session, model=str(tiny_path), candidates=2, timing=FAST)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, ProfileScreen))
        app.workspace.set_candidates([3])
    again = demo_app(session, model=str(tiny_path), candidates=2, timing=FAST)
    async with again.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: isinstance(again.screen, ProfileScreen))
        assert again.workspace.candidates == [3]


@pytest.mark.slow
async def test_real_demo_on_yolov5n_profiles_and_ranks(tmp_path: Path):
    """`omdp demo` as shipped: YOLOv5n, 6 candidates, three local devices (~30-60 s)."""
    app = demo_app(tmp_path / "sessions" / "demo.omdp")
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, ProfileScreen), timeout=60)
        screen = app.screen
        await pilot.press("s")
        await wait_for(pilot, lambda: screen.profiler is not None, timeout=5)
        await wait_for(pilot, lambda: screen.profiler is None, timeout=240)
        ws = app.workspace
        assert not ws.missing()
        await pilot.press("4")
        await wait_for(pilot, lambda: isinstance(app.screen, PartitionsScreen))
        assert len(top_cuts(app.screen)) == 10
