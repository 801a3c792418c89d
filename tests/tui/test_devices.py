"""The devices screen: a validated form (the engine's devices.toml rules), chain edits,
and checking a local device (its agent says hello)."""

from __future__ import annotations

from pathlib import Path

from textual.widgets import DataTable, Input

from backend import units
from backend.chain import Chain, DeviceSpec
from backend.model.analysis import analyze
from backend.profiling.session import Session
from omdp_tui.app import Launch, OmdpApp
from omdp_tui.screens.devices import DevicesScreen
from omdp_tui.workspace import Workspace
from tui.helpers import screen_text, wait_for


async def open_devices(pilot) -> DevicesScreen:
    app = pilot.app
    await wait_for(
        pilot,
        lambda: (
            app.workspace is not None
            and type(app.screen).__name__ not in ("LoadingScreen", "Screen")
        ),
    )
    await pilot.press("2")
    await wait_for(pilot, lambda: isinstance(app.screen, DevicesScreen))
    return app.screen


def fresh_workspace(tiny_path: Path, tmp_path: Path) -> Workspace:
    analysis = analyze(str(tiny_path))
    session = Session.create(
        tmp_path / "sessions" / "fresh.omdp",
        analysis,
        Chain.of([DeviceSpec("glasses", threads=1)]),
        [2, 5],
    )
    return Workspace(analysis, str(tiny_path), session)


async def fill_form(pilot, **values: str) -> None:
    screen = pilot.app.screen
    for key, value in values.items():
        screen.query_one(f"#field-{key}", Input).value = value
    await pilot.pause()


async def test_add_device_validates_then_extends_the_chain(tiny_path: Path, tmp_path: Path):
    ws = fresh_workspace(tiny_path, tmp_path)
    app = OmdpApp(Launch("workspace", prepared=ws))
    async with app.run_test(size=(80, 24)) as pilot:
        await open_devices(pilot)
        await pilot.press("a")
        await wait_for(pilot, lambda: app.screen.query("#field-name"))
        await fill_form(pilot, name="phone", threads="0")
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert "threads must be at least 1" in screen_text(app)  # the engine's words
        await fill_form(pilot, threads="1", cpus="99")
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert "cpu 99 is not available" in screen_text(app)
        await fill_form(pilot, name="glasses", cpus="")
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert "already exists" in screen_text(app)
        await fill_form(pilot, name="phone")
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: isinstance(app.screen, DevicesScreen))
        assert ws.devices == ["glasses", "phone"]
        assert [x.name for x in ws.links] == ["glasses-phone"]
        assert ws.session.chain().names == ["glasses", "phone"]  # saved at once
        table = app.screen.query_one("#link-table", DataTable)
        assert table.row_count == 1


async def test_measured_chain_cannot_change_but_options_can(fixed_workspace):
    ws = fixed_workspace
    app = OmdpApp(Launch("workspace", prepared=ws))
    async with app.run_test(size=(80, 24)) as pilot:
        await open_devices(pilot)
        await pilot.press("x")  # remove glasses: refused, it has measurements
        await wait_for(pilot, lambda: "Chain not changed" in screen_text(app))
        assert "can no longer change" in screen_text(app)
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, DevicesScreen))
        assert ws.devices == ["glasses", "phone", "cloud"]
        before = len(ws.missing())
        await pilot.press("e")
        await wait_for(pilot, lambda: app.screen.query("#field-threads"))
        await fill_form(pilot, threads="2")
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: isinstance(app.screen, DevicesScreen))
        assert ws.chain.device("glasses").threads == 2
        assert len(ws.missing()) == before + 4  # its 4 prefixes: measured under 1 thread


async def test_check_starts_the_local_agent(tiny_path: Path, tmp_path: Path):
    ws = fresh_workspace(tiny_path, tmp_path)
    app = OmdpApp(Launch("workspace", prepared=ws))
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_devices(pilot)
        await pilot.press("c")
        await wait_for(
            pilot, lambda: "said hello" in str(screen.status.get("glasses", "")), timeout=60
        )
        assert "onnxruntime" in str(screen.status["glasses"])


async def test_measured_link_values_appear_beside_the_typed_ones(tiny_path: Path, tmp_path: Path):
    analysis = analyze(str(tiny_path))
    session = Session.create(
        tmp_path / "sessions" / "links.omdp",
        analysis,
        Chain.of([DeviceSpec("glasses"), DeviceSpec("phone")]),
        [2],
    )
    ws = Workspace(analysis, str(tiny_path), session)
    app = OmdpApp(Launch("workspace", prepared=ws))
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_devices(pilot)
        await pilot.press("l")
        await wait_for(pilot, lambda: ws.links[0].measured_bandwidth_mbps is not None, timeout=60)
        table = screen.query_one("#link-table", DataTable)
        measured = str(table.get_cell("glasses-phone", "mbw"))
        assert measured == units.fixed(ws.links[0].measured_bandwidth_mbps, 3, True)
        assert "e+" not in measured and "e-" not in measured  # never scientific notation
        assert float(measured) > 0
    with Session.open(tmp_path / "sessions" / "links.omdp") as s:
        assert s.links_frame()["measured_bandwidth_mbps"].iloc[0] > 0  # saved as it came
