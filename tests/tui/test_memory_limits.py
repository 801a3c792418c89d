"""Memory limits in the TUI: M on the Partitions screen or the Map view sets a limit per
device; segments that do not fit are not ranked or mapped; the limits are kept with the
session and the empty state names them."""

from __future__ import annotations

from textual.widgets import Input

from omdp_tui.app import Launch, OmdpApp
from omdp_tui.screens.form import FormDialog
from omdp_tui.screens.map import MapScreen
from omdp_tui.workspace import Workspace
from tui.helpers import screen_text, wait_for
from tui.test_map import BOX, open_map, redrawn
from tui.test_partitions import open_partitions, top_cuts

TINY = "0.001"  # MiB: no segment of the tiny model fits


async def set_limits(pilot, closes: bool = True, **mib: str) -> None:
    await pilot.press("M")
    await wait_for(pilot, lambda: isinstance(pilot.app.screen, FormDialog))
    dialog = pilot.app.screen
    for i, name in enumerate(("glasses", "phone", "cloud")):
        dialog.query_one(f"#field-d{i}", Input).value = mib.get(name, "")
    await pilot.press("ctrl+s")
    if closes:
        await wait_for(pilot, lambda: not isinstance(pilot.app.screen, FormDialog))


async def test_a_memory_limit_keeps_segments_off_a_device(fixed_workspace):
    app = OmdpApp(Launch("workspace", prepared=fixed_workspace))
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_partitions(pilot)
        assert any(not c.startswith("0,") for c in top_cuts(screen))  # glasses computes
        await set_limits(pilot, glasses=TINY)
        cuts = top_cuts(screen)
        assert cuts and all(c.startswith("0,") for c in cuts)  # nothing runs on glasses
        assert "mem glasses ≤ 1.02 KiB" in screen_text(app)
        await set_limits(pilot, glasses=TINY, phone=TINY, cloud=TINY)
        assert top_cuts(screen) == []
        assert "no partition fits these memory limits" in screen_text(app)
        await set_limits(pilot, closes=False, phone="abc")  # refused: the dialog stays, says why
        await pilot.pause()
        assert isinstance(app.screen, FormDialog) and "is not a number" in screen_text(app)
        await pilot.press("escape")
    path = fixed_workspace.session.path
    fixed_workspace.flush()
    fixed_workspace.session.close()
    from backend.model.analysis import analyze
    from backend.profiling.session import Session

    with Session.open(path, check_model=False) as again:
        ws = Workspace(analyze(fixed_workspace.model_ref), fixed_workspace.model_ref, again)
        assert ws.memory_limits == {"glasses": 0.001, "phone": 0.001, "cloud": 0.001}
        fixed_workspace.session = Session.open(path, check_model=False)  # for the fixture


async def test_the_map_follows_the_memory_limits(fixed_workspace):
    fixed_workspace.set_ui("map.view", BOX)
    app = OmdpApp(Launch("workspace", prepared=fixed_workspace))
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_map(pilot)
        assert any(cuts[0] > 0 for cuts in screen.view.keys)  # glasses wins somewhere
        await set_limits(pilot, glasses=TINY)
        assert isinstance(app.screen, MapScreen)
        await redrawn(pilot, screen)
        assert screen.view.keys and all(cuts[0] == 0 for cuts in screen.view.keys)
        assert "mem glasses ≤ 1.02 KiB" in screen_text(app)
