"""Nothing on screen is cut without a mark: every table cell, header and one-line label
of every screen at 80×24 fits its room or shows `…` (`helpers.cut_cells`), with five
devices named in 20 characters, a 1×160×160×160 tensor and long node paths."""

from __future__ import annotations

import pytest

from omdp_tui.app import Launch, OmdpApp
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
