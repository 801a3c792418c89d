"""The validate action of the partitions screen: the selected partition runs as a chain of
real local stages, the screen shows progress, then predicted against measured as bars."""

from __future__ import annotations

from textual.widgets import DataTable, Static

from omdp_tui.app import Launch, OmdpApp
from omdp_tui.screens.validation import ValidationScreen, bar, render_bars
from tui.helpers import screen_text, wait_for
from tui.test_partitions import open_partitions


async def test_validate_the_selected_partition_live(fixed_workspace):
    app = OmdpApp(Launch("workspace", prepared=fixed_workspace))
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_partitions(pilot)
        table = screen.query_one("#topk-table", DataTable)
        await pilot.press("down")  # the second partition
        await pilot.pause()
        cuts = fixed_workspace.selected_cuts
        seen: list[str] = []

        def status() -> str:
            if not isinstance(app.screen, ValidationScreen):
                return ""
            cell = app.screen.query_one("#validation-table", DataTable).get_cell("2", "status")
            seen.append(str(cell))
            return str(cell)

        await pilot.press("v")
        await wait_for(pilot, lambda: status() == "done", timeout=120)
        assert any("/" in s for s in seen)  # frame progress was shown on the way
        text = screen_text(app)
        assert "end to end" in text and "predicted ms" in text and "measured ms" in text
        row = app.screen.query_one("#validation-table", DataTable).get_row("2")
        assert str(row[1]) == ",".join(map(str, cuts)) and str(row[6]) == "ok"
        (stored,) = fixed_workspace.session.validations()
        assert stored["positions"] == [0, *cuts, fixed_workspace.analysis.n]
        assert fixed_workspace.stored_validation(cuts) == stored["report"]
        await pilot.press("escape")
        await pilot.pause()
        assert app.screen is screen and table.row_count == 10


async def test_validate_the_whole_table(fixed_workspace):
    fixed_workspace.set_ranking_options(k=2)
    app = OmdpApp(Launch("workspace", prepared=fixed_workspace))
    async with app.run_test(size=(80, 24)) as pilot:
        await open_partitions(pilot)
        await pilot.press("V")
        await wait_for(pilot, lambda: isinstance(app.screen, ValidationScreen))
        table = app.screen.query_one("#validation-table", DataTable)
        assert table.row_count == 2
        await wait_for(
            pilot,
            lambda: [str(table.get_cell(k, "status")) for k in ("1", "2")] == ["done", "done"],
            timeout=120,
        )
    assert len(fixed_workspace.session.validations()) == 2


def test_bars_scale_and_the_verdict_is_shown():
    assert bar(5, 10, 4) == "██  " and bar(10, 10, 4) == "████" and bar(0, 10, 4) == "    "
    assert bar(1, 8, 1) == "▏"
    report = REPORT
    text = render_bars(report).plain
    assert "phone→cloud" in text and "+100%" in text and report["verdict"] in text


REPORT = {
    "cost_model": "measured",
    "objective": "latency",
    "stages": [
        {"device": "glasses", "measured": {"median": 12.0}, "predicted": {"measured": 10.0}},
        {"device": "phone", "measured": None, "predicted": {"measured": 0.0}},
        {"device": "cloud", "measured": {"median": 6.0}, "predicted": {"measured": 6.3}},
    ],
    "hops": [
        {
            "link": "glasses-phone",
            "loopback": False,
            "predicted_ms": 9.0,
            "measured": {"median": 10.0},
        },
        {
            "link": "phone-cloud",
            "loopback": False,
            "predicted_ms": 4.0,
            "measured": {"median": 2.0},
        },
    ],
    "handoff": {"median": 0.7},
    "latency": {"median": 30.7, "p10": 30.0, "p90": 32.0},
    "predicted": {"measured": 29.3, "estimated": 28.0},
    "error_pct": {"measured": -4.6, "estimated": -8.8},
    "measured_value": 30.7,
    "output": {"ok": True, "max_abs": 0.0, "max_rel": 0.0},
    "verdict": "predicted 29.30 ms, measured 30.70 ms (-4.6%): within 10%",
}


def test_stored_validation_snapshot(snap_compare, fixed_workspace):
    """A stored validation (fixed numbers) shown for the selected partition at 80×24."""
    ranking = fixed_workspace.rank()
    assert ranking is not None
    best = ranking.partitions()[1]
    links = [[x.bandwidth_mbps, x.latency_ms] for x in fixed_workspace.links]
    fixed_workspace.session.save_validation(
        {
            "positions": [0, *best.cuts, fixed_workspace.analysis.n],
            "configs": {},
            "links": links,
            "objective": "latency",
        },
        {
            "cost_model": "measured",
            "frames": 20,
            "measured": 30.7,
            "predicted": 29.3,
            "error_pct": -4.6,
            "output_ok": True,
            "report": REPORT,
        },
    )
    app = OmdpApp(Launch("workspace", prepared=fixed_workspace))

    async def ready(pilot):
        await open_partitions(pilot)
        await app.push_screen(ValidationScreen([best], run=False))
        await pilot.pause(0.2)
        assert isinstance(app.screen.query_one("#validation-bars", Static), Static)

    assert snap_compare(app, terminal_size=(80, 24), run_before=ready)
