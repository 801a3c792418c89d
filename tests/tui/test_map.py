"""The Map view of the partitions screen over fixed timings: regions, axes and legend,
the cursor's reading, the options that redraw it, a trace's path and the image export."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from textual.widgets import Input, Label

from omdp_tui.app import Launch, OmdpApp
from omdp_tui.screens.map import MapScreen
from omdp_tui.widgets.map_chart import MapChart
from omdp_tui.workspace import load_trace
from tui.helpers import screen_text, wait_for
from tui.test_partitions import open_partitions

BOX = {"links": ["glasses-phone", "phone-cloud"], "ranges": [[0.01, 10.0], [0.01, 10.0]]}


async def open_map(pilot) -> MapScreen:
    await open_partitions(pilot)
    await pilot.press("w")
    app = pilot.app
    await wait_for(pilot, lambda: isinstance(app.screen, MapScreen) and app.screen.view is not None)
    return app.screen


def readout(screen: MapScreen) -> str:
    return str(screen.query_one("#map-readout", Label).render())


async def redrawn(pilot, screen: MapScreen) -> None:
    """Until the newest map asked for is the one on screen."""
    await wait_for(pilot, lambda: screen.shown_generation == screen._generation)


async def test_map_regions_axes_legend_and_cursor(fixed_workspace):
    fixed_workspace.set_ui("map.view", BOX)
    app = OmdpApp(Launch("workspace", prepared=fixed_workspace))
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_map(pilot)
        view = screen.view
        text = screen_text(app)
        assert len(view.keys) >= 3  # several partitions win somewhere in this box
        for k, cuts in enumerate(view.keys):  # each has its glyph on the map and a legend line
            glyph = chr(65 + k)
            assert any(glyph in row for row in text.splitlines()[2:18])
            assert f"{glyph} {','.join(map(str, cuts))}" in text
        assert "x: glasses-phone Mbit/s" in text and "y: phone-cloud Mbit/s" in text
        assert "0.1" in text and "exact" in text
        # every cell shows the partition the ranker puts first at its centre
        ranker = fixed_workspace.ranker()
        lat = [x.latency_ms for x in fixed_workspace.links]
        for row in (0, len(view.ys) // 2, len(view.ys) - 1):
            for col in (0, len(view.xs) // 3, len(view.xs) - 1):
                best = ranker.rank([view.xs[col], view.ys[row]], lat, 1).partitions()[0]
                assert view.keys[view.labels[row][col]] == best.cuts
        # the cursor reads the partition and the runner-up's margin under it
        chart = screen.query_one(MapChart)
        await pilot.press(*["left"] * 60, *["down"] * 30)
        assert chart.cursor == (0, len(view.ys) - 1)
        corner = ranker.rank([view.xs[0], view.ys[-1]], lat, 2).partitions()
        shown = readout(screen)
        assert f"{corner[0].total_ms:.1f} ms" in shown
        assert f"runner-up {','.join(map(str, corner[1].cuts))}" in shown
        assert f"+{corner[1].total_ms - corner[0].total_ms:.2f} ms" in shown


async def test_options_and_fixed_links_redraw_the_map(fixed_workspace):
    fixed_workspace.set_ui("map.view", BOX)
    app = OmdpApp(Launch("workspace", prepared=fixed_workspace))
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_map(pilot)
        first = screen.view
        await pilot.press("o")  # throughput: a grid map, said so
        await redrawn(pilot, screen)
        assert not screen.view.map.exact and "grid (throughput)" in screen_text(app)
        await pilot.press("o", "c")  # back to latency, then the estimated cost model
        await redrawn(pilot, screen)
        assert fixed_workspace.cost_model == "estimated"
        assert screen.view.map.cost_model == "estimated" and screen.view.map.exact
        # a link latency typed on the partitions screen changes every partition's cost
        await pilot.press("c", "escape")
        fixed_workspace.set_link("phone-cloud", latency_ms=80.0)
        await pilot.press("w")
        screen = app.screen
        await wait_for(pilot, lambda: isinstance(screen, MapScreen) and screen.view is not None)
        before = {r.cuts: r.share for r in first.map.regions}
        after = {r.cuts: r.share for r in screen.view.map.regions}
        assert before != after


async def test_the_trace_path_and_operating_point(fixed_workspace, tmp_path: Path):
    fixed_workspace.set_ui("map.view", BOX)
    trace = tmp_path / "t.tsv"
    trace.write_text("".join(f"{t} {0.02 * 1.6**t:.4f}\n" for t in range(12)))
    app = OmdpApp(Launch("workspace", prepared=fixed_workspace))
    async with app.run_test(size=(80, 24)) as pilot:
        await open_partitions(pilot)
        fixed_workspace.set_link("glasses-phone", bandwidth_mbps=2.0)
        fixed_workspace.set_link("phone-cloud", bandwidth_mbps=0.5)
        playback = load_trace(fixed_workspace.trace_inputs(), str(trace), "glasses-phone")
        playback.step = 3
        screen = MapScreen(playback)
        await app.push_screen(screen)
        await wait_for(pilot, lambda: screen.view is not None)
        chart = screen.query_one(MapChart)
        # the path: the traced link's samples at the other link's value, one row
        assert len(chart.path) >= 8 and len({r for _, r in chart.path}) == 1
        assert chart.point in chart.path  # the operating point is the trace's current step
        assert chart.point == chart.cell((0.02 * 1.6**3, 0.5))
        assert "•" in screen_text(app) and "◆" in screen_text(app)
        await pilot.press("right", "n")
        assert chart.cursor == chart.point


async def test_export_writes_the_image(fixed_workspace, tmp_path: Path):
    fixed_workspace.set_ui("map.view", BOX)
    app = OmdpApp(Launch("workspace", prepared=fixed_workspace))
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_map(pilot)
        await pilot.press("e")
        await wait_for(pilot, lambda: bool(app.screen.query(Input)))
        field = app.screen.query_one(Input)
        assert field.value.endswith("-map-glasses-phone-phone-cloud.svg")
        target = tmp_path / "exported.svg"
        field.value = str(target)
        await pilot.press("enter")
        await wait_for(pilot, lambda: target.exists())
        root = ET.parse(target).getroot()
        regions = [e for e in root.iter() if e.get("class") == "region"]
        assert len(regions) == len(screen.view.map.regions)
        assert fixed_workspace.get_ui("map.image_path") == str(target)


def test_map_bindings_have_ids_and_descriptions():
    from textual.binding import Binding

    from omdp_tui.screens.partitions import PartitionsScreen

    ids = []
    for owner in (MapScreen, PartitionsScreen):
        for b in owner.BINDINGS:
            assert isinstance(b, Binding) and b.id and b.description, b
            ids.append(b.id)
    assert len(ids) == len(set(ids))


async def test_bad_ranges_in_the_form_are_refused(fixed_workspace):
    from omdp_tui.screens.form import FormDialog

    app = OmdpApp(Launch("workspace", prepared=fixed_workspace))
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_map(pilot)
        await pilot.press("l")
        await wait_for(pilot, lambda: isinstance(app.screen, FormDialog))
        form = app.screen
        inputs = list(form.query(Input))
        inputs[0].value = "0:100"  # the x range
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert app.screen is form  # refused, the form stays open with the reason
        assert "range must be LO:HI" in screen_text(app)
        inputs[0].value = "2:200"
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: app.screen is screen and screen.view is not None)
        await wait_for(pilot, lambda: screen.shown_generation == screen._generation)
        assert screen.view.map.ranges[0].lo == 2.0 and screen.view.map.ranges[0].hi == 200.0
        assert fixed_workspace.get_ui("map.view")["ranges"][0] == [2.0, 200.0]
