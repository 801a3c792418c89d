"""The Map view at 80×24 as an SVG snapshot (regenerate with `--snapshot-update`), over
the fixed session (`fixed_workspace`) and a box where several partitions win."""

from __future__ import annotations

from omdp_tui.app import Launch, OmdpApp
from omdp_tui.screens.map import MapScreen
from tui.helpers import wait_for
from tui.test_map import BOX


def test_map_view(snap_compare, fixed_workspace):
    fixed_workspace.set_ui("map.view", BOX)
    fixed_workspace.set_link("glasses-phone", bandwidth_mbps=2.0)  # the operating point, inside
    fixed_workspace.set_link("phone-cloud", bandwidth_mbps=0.05)
    app = OmdpApp(Launch("workspace", prepared=fixed_workspace))

    async def ready(pilot):
        await wait_for(
            pilot,
            lambda: (
                app.workspace is not None
                and type(app.screen).__name__.endswith("Screen")
                and type(app.screen).__name__ != "LoadingScreen"
            ),
        )
        await app.action_show("partitions")
        await pilot.pause()
        await pilot.press("w")
        await wait_for(pilot, lambda: isinstance(app.screen, MapScreen) and app.screen.view)
        await pilot.press("left", "left", "up")
        await pilot.pause(0.2)

    assert snap_compare(app, terminal_size=(80, 24), run_before=ready)
