"""The Map view of a two-device chain: one link, drawn as a strip over its range."""

from __future__ import annotations

from pathlib import Path

from backend.chain import Chain, DeviceSpec, LinkSpec
from backend.model.analysis import analyze
from backend.profiling.plan import build_plan
from backend.profiling.session import Session
from omdp_tui.app import Launch, OmdpApp
from omdp_tui.screens.map import MapScreen
from omdp_tui.widgets.map_chart import MapChart
from omdp_tui.workspace import Workspace
from tui.helpers import screen_text, wait_for
from tui.test_partitions import open_partitions

SPEED = {"glasses": 3.0, "cloud": 0.5}  # ms per position


async def test_one_link_map(tiny_path: Path, tmp_path: Path):
    analysis = analyze(str(tiny_path))
    chain = Chain([DeviceSpec(d) for d in SPEED], [LinkSpec("glasses", "cloud", 20.0, 5.0)])
    session = Session.create(tmp_path / "sessions" / "two.omdp", analysis, chain, [2, 5])
    plan = build_plan(analysis.n, [2, 5], chain.names)
    session.save_plan(plan)
    for it in plan.items:
        ms = SPEED[it.device] * (it.end - it.start)
        stats = {"median": ms, "p10": ms, "p90": ms, "mean": ms, "std": 0.0, "rel_ci": 0.0}
        session.record_result(it.device, it.segment, load_ms=1.0, samples=[ms] * 5, stats=stats)
    ws = Workspace(analysis, str(tiny_path), session)
    ws._save_links()
    ws.set_ui("map.view", {"links": ["glasses-cloud"], "ranges": [[0.01, 100.0]]})
    app = OmdpApp(Launch("workspace", prepared=ws))
    async with app.run_test(size=(80, 24)) as pilot:
        await open_partitions(pilot)
        await pilot.press("w")
        await wait_for(pilot, lambda: isinstance(app.screen, MapScreen) and app.screen.view)
        screen = app.screen
        view = screen.view
        assert len(view.map.ranges) == 1 and len(view.map.bands) >= 2
        assert all(row == view.labels[0] for row in view.labels)  # a strip
        text = screen_text(app)
        assert "x: glasses-cloud Mbit/s" in text and "y:" not in text
        chart = screen.query_one(MapChart)
        await pilot.press(*["left"] * 60)
        assert chart.cursor[0] == 0
        low = view.mapper.read((view.xs[0],))
        assert view.map.describe(low.best) in str(screen.query_one("#map-readout").render())
    session.close()
