"""The attribution view: `a` on the partitions screen shows each device's blocks with
their Shapley shares beside their layer sums; ←/→ changes device; escape goes back."""

from __future__ import annotations

import pytest
from textual.widgets import DataTable

from omdp_tui.app import Launch, OmdpApp
from omdp_tui.screens.attribution import AttributionScreen
from omdp_tui.screens.partitions import PartitionsScreen
from tui.helpers import screen_text, wait_for
from tui.test_partitions import open_partitions


async def test_attribution_view_per_device(fixed_workspace):
    app = OmdpApp(Launch("workspace", prepared=fixed_workspace))
    async with app.run_test(size=(80, 24)) as pilot:
        await open_partitions(pilot)
        await pilot.press("a")
        await wait_for(pilot, lambda: isinstance(app.screen, AttributionScreen))
        screen = app.screen
        table = screen.query_one("#attr-table", DataTable)
        found = fixed_workspace.attribution()
        glasses = found.devices[0]
        assert table.row_count == len(glasses.blocks) == 4  # candidates 2, 5, 7 on 10 nodes
        assert [str(table.get_row_at(i)[0]) for i in range(4)] == [
            "[0,2)",
            "[2,5)",
            "[5,7)",
            "[7,10)",
        ]
        shares = [float(str(table.get_row_at(i)[1])) for i in range(4)]
        # efficiency, as shown: the shares add up to the whole model's measured time
        whole = next(r for r in fixed_workspace.results().values() if r["device"] == "glasses"
                     and r["start"] == 0 and r["end"] == 10)["median_ms"]  # fmt: skip
        assert sum(shares) == pytest.approx(whole, abs=0.02)
        text = screen_text(app)
        assert "glasses (1/3)" in text and "exact" in text
        await pilot.press("right")
        assert "phone (2/3)" in screen_text(app)
        await pilot.press("left", "left")
        assert "cloud (3/3)" in screen_text(app)
        assert fixed_workspace.get_ui("attribution.device") == "cloud"
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, PartitionsScreen))


async def test_a_device_whose_node_times_miss_its_time_is_flagged(fixed_workspace):
    """Per-node times that add up to a sliver of the measured model (a runtime whose
    kernels did not map to nodes): the view says its layer sums are not meaningful."""
    n = fixed_workspace.analysis.n
    nodes = fixed_workspace.session.node_times_frame()
    phone = nodes[nodes["device"] == "phone"]
    sliver = {int(r.position): 0.01 * float(r.ms) for r in phone.itertuples()}
    fixed_workspace.session.record_node_times("phone", sliver, runtime="onnxruntime", runs=3)
    fixed_workspace.measurements_changed()
    app = OmdpApp(Launch("workspace", prepared=fixed_workspace))
    async with app.run_test(size=(80, 24)) as pilot:
        await open_partitions(pilot)
        await pilot.press("a")
        await wait_for(pilot, lambda: isinstance(app.screen, AttributionScreen))
        assert "not meaningful" not in screen_text(app)  # glasses: its own times are fine
        await pilot.press("right")
        text = screen_text(app)
        assert "phone (2/3)" in text and "layer sums are not meaningful" in text, text
        assert len(phone) == n


def test_attribution_snapshot(snap_compare, fixed_workspace):
    app = OmdpApp(Launch("workspace", prepared=fixed_workspace))

    async def ready(pilot):
        await open_partitions(pilot)
        await pilot.press("a")
        await wait_for(pilot, lambda: isinstance(app.screen, AttributionScreen))
        await pilot.press("right")  # the phone: a middle device, every run measured
        await pilot.pause(0.2)

    assert snap_compare(app, terminal_size=(80, 24), run_before=ready)
