"""Nothing on screen is cut without a mark: every table cell, header and one-line label
of every screen at 80×24 fits its room or shows `…` (`helpers.cut_cells`), with five
devices named in 20 characters, a 1×160×160×160 tensor and long node paths."""

from __future__ import annotations

import pytest

from omdp_tui.app import Launch, OmdpApp
from omdp_tui.workspace import LONGEST_S, QUIET_S
from tui.helpers import cut_cells, screen_text, wait_for

SCREENS = ("graph", "devices", "profile", "partitions")


async def _check_all(app: OmdpApp) -> dict[str, str]:
    shown = {}
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: app.workspace is not None)
        for screen in SCREENS:
            await app.action_show(screen)
            await pilot.pause(0.1)
            assert cut_cells(app) == [], screen
            shown[screen] = screen_text(app)
    return shown


@pytest.mark.asyncio
async def test_long_names_and_wide_tensors_fit(long_workspace):
    shown = await _check_all(OmdpApp(Launch("workspace", prepared=long_workspace)))
    assert "1×160×160×160" in shown["graph"]
    assert "…/m/m.0/cv1/conv" in shown["graph"]  # the ends that tell nodes apart
    assert "Identity" in shown["graph"]


@pytest.mark.asyncio
async def test_three_devices_fit(fixed_workspace):
    await _check_all(OmdpApp(Launch("workspace", prepared=fixed_workspace)))


def test_the_check_catches_a_silent_cut():
    """The checker itself: a cell wider than its column is reported."""
    import asyncio

    from textual.app import App
    from textual.widgets import DataTable

    class One(App):
        def compose(self):
            yield DataTable()

        def on_mount(self):
            t = self.query_one(DataTable)
            t.add_column("x", width=4)
            t.add_row("123456")

    async def run():
        app = One()
        async with app.run_test(size=(80, 24)):
            return cut_cells(app)

    assert asyncio.run(run()) == ["table cell '123456' in 4"]


@pytest.mark.asyncio
async def test_five_devices_every_ranked_row_is_reachable(long_workspace):
    """K=10 partitions of five devices at 80×24: each row reachable with ↓ and shown in
    view; each device's segment in its own column; the legend names every device."""
    from textual.widgets import DataTable

    app = OmdpApp(Launch("workspace", prepared=long_workspace))
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: app.workspace is not None)
        await app.action_show("partitions")
        await pilot.pause(0.1)
        screen = app.screen
        table = screen.query_one("#topk-table", DataTable)
        assert table.row_count == 10
        text = screen_text(app)
        for name in long_workspace.devices:
            assert name in text  # the legend
        assert "[0,2)" in text and "[2,10)" in text  # per-device segments, not cut lists
        for row in range(1, 10):
            await pilot.press("down")
            top = round(table.scroll_offset.y)
            visible = table.scrollable_content_region.height - 1
            assert table.cursor_row == row and top <= row < top + visible
            assert long_workspace.selected_cuts == screen.partitions[row].cuts


@pytest.mark.asyncio
async def test_typed_values_are_saved_on_quit_and_within_a_second(fixed_workspace):
    from omdp_tui.widgets.step_input import StepInput

    ws = fixed_workspace
    app = OmdpApp(Launch("workspace", prepared=ws))
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: app.workspace is not None)
        await app.action_show("partitions")
        await pilot.pause(0.1)
        await pilot.press("b", "up")
        typed = float(app.screen.query_one("#bw-0", StepInput).value)
        assert typed != 20.0 and ws.links[0].bandwidth_mbps == typed
        # written once the keys stop (QUIET_S), long before any quit; a busy machine only
        # delays the timer, so a few intervals are allowed
        await wait_for(pilot, lambda: ws.session.bandwidths()[0][0] == typed, timeout=5)
        await pilot.press("up", "up")
        last = ws.links[0].bandwidth_mbps
        await pilot.press("escape", "q")  # quit at once: flushed on the way out
    assert ws.session.bandwidths()[0][0] == last != typed


def test_keystroke_state_is_saved_once_the_keys_stop(fixed_workspace):
    """A held-down key (25 steps a second) commits nothing while it repeats: the write
    waits for QUIET_S without a key, or LONGEST_S at most."""
    ws = fixed_workspace
    now = [100.0]
    ws.clock = lambda: now[0]
    for step in range(100):  # four seconds of a held-down ↑
        ws.set_link("glasses-phone", bandwidth_mbps=21.0 + step)
        assert not ws.flush_due()
        now[0] += 0.04
    now[0] += QUIET_S - 0.05
    assert not ws.flush_due()
    now[0] += 0.02
    assert ws.flush_due()
    ws.flush()
    assert not ws.flush_due() and ws.session.bandwidths()[0][0] == 120.0
    first = now[0]
    while not ws.flush_due():  # a key held for longer still saves every LONGEST_S
        ws.set_link("glasses-phone", bandwidth_mbps=20.0 + now[0] - first)
        now[0] += 0.04
    assert now[0] - first == pytest.approx(LONGEST_S, abs=0.05)


def test_keystroke_state_waits_for_the_flush(fixed_workspace):
    """A link value, a ranking option and the selection are written on flush, not per key."""
    ws = fixed_workspace
    ws.set_link("glasses-phone", bandwidth_mbps=33.0)
    ws.set_ranking_options(k=4)
    ws.select_partition((0, 5))
    assert ws.unsaved and ws.session.bandwidths()[0][0] == 20.0
    ws.flush()
    assert not ws.unsaved and ws.session.bandwidths()[0][0] == 33.0
    assert ws.session.get_ui_state("partitions.options")["k"] == 4
    assert [p["positions"] for p in ws.session.partitions()] == [[0, 0, 5, ws.analysis.n]]
