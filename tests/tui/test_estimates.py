"""A new candidate on screen 1 is ranked at once on screen 4 with estimated times, marked
'~'; `m` there profiles just its segments, and the measurements replace the estimates."""

from __future__ import annotations

from textual.widgets import DataTable

from backend.device.protocol import TimingSettings
from omdp_tui.app import Launch, OmdpApp
from omdp_tui.screens.graph import GraphScreen
from omdp_tui.screens.partitions import PartitionsScreen
from omdp_tui.screens.profile import ProfileScreen
from omdp_tui.widgets.step_input import StepInput
from tui.helpers import screen_text, wait_for
from tui.test_partitions import open_partitions

FAST = {"warmup": 1, "min_runs": 3, "max_runs": 10, "max_seconds": 0.2}


def rows(screen: PartitionsScreen) -> list[list[str]]:
    table = screen.query_one("#topk-table", DataTable)
    return [[str(c) for c in table.get_row_at(i)] for i in range(table.row_count)]


async def test_new_candidate_ranks_with_estimates_until_profiled(fixed_workspace):
    ws = fixed_workspace
    ws.timing = TimingSettings.from_dict(FAST)
    app = OmdpApp(Launch("workspace", prepared=ws))
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_partitions(pilot)
        screen.query_one("#rank-k", StepInput).value = "100"
        await pilot.pause()
        assert rows(screen) and not screen.stand_ins
        assert not any("~" in cell for row in rows(screen) for cell in row)

        await pilot.press("1")
        await wait_for(pilot, lambda: isinstance(app.screen, GraphScreen))
        await pilot.press("down", "down", "down", "m")  # a new candidate after relu2
        assert 4 in ws.candidates
        await pilot.press("4")
        await wait_for(pilot, lambda: isinstance(app.screen, PartitionsScreen))
        shown = rows(screen)
        new = [i for i, p in enumerate(screen.partitions) if 4 in p.cuts]
        assert new, "the new candidate is ranked at once"
        for i, row in enumerate(shown):  # a total that is an estimate, and only those
            assert row[1].startswith("~") == (i in new), row
        assert screen.stand_ins and "m measures" in screen_text(app)
        flagged = [p for p in screen.partitions if 4 in p.cuts]
        assert all(p.has_stand_ins and p.measured_total_ms is None for p in flagged)
        missing = ws.missing()
        assert missing and all(4 in (it.start, it.end) for it in missing)

        await pilot.press("m")  # profile just what is missing
        await wait_for(pilot, lambda: isinstance(app.screen, ProfileScreen))
        profile = app.screen
        await wait_for(pilot, lambda: profile.profiler is None and not ws.missing(), timeout=90)
        assert "profiling finished" in screen_text(app)

        await pilot.press("4")
        await wait_for(pilot, lambda: isinstance(app.screen, PartitionsScreen))
        shown = rows(screen)
        assert [p for p in screen.partitions if 4 in p.cuts]
        assert not any("~" in cell for row in shown for cell in row)
        assert not screen.stand_ins
        measured = [p for p in screen.partitions if 4 in p.cuts]
        assert all(p.measured_total_ms == p.total_ms for p in measured)
