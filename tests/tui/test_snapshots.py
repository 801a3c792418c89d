"""Each screen at 80×24 as an SVG snapshot (regenerate with `--snapshot-update`).

Snapshots are deterministic: the model is built in code, sessions and settings live in
fixed-name files under a temporary folder, and nothing time- or machine-dependent is on
screen: the profile and partitions screens show a session filled with fixed timings
(`fixed_session`), never a live run.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from omdp_tui.app import Launch, OmdpApp
from omdp_tui.screens.graph import GraphScreen
from tui.helpers import wait_for

SIZE = (80, 24)


def test_picker(snap_compare, tmp_path: Path):
    assert snap_compare(OmdpApp(Launch()), terminal_size=SIZE)


def test_graph(snap_compare, tiny_path: Path):
    app = OmdpApp(Launch("model", str(tiny_path)))

    async def ready(pilot):
        await wait_for(pilot, lambda: isinstance(app.screen, GraphScreen))
        await pilot.press("down", "down", "down", "m")  # a candidate after relu2
        await pilot.pause()

    assert snap_compare(app, terminal_size=SIZE, run_before=ready)


def _on(screen: str, keys: tuple[str, ...] = ()):
    async def ready(pilot):
        app = pilot.app
        await wait_for(
            pilot,
            lambda: (
                app.workspace is not None
                and type(app.screen).__name__.endswith("Screen")
                and type(app.screen).__name__ != "LoadingScreen"
            ),
        )
        await app.action_show(screen)
        await pilot.pause()
        if keys:
            await pilot.press(*keys)
        await pilot.pause(0.2)

    return ready


def test_devices(snap_compare, fixed_workspace):
    app = OmdpApp(Launch("workspace", prepared=fixed_workspace))
    assert snap_compare(app, terminal_size=SIZE, run_before=_on("devices"))


def test_device_form(snap_compare, fixed_workspace):
    app = OmdpApp(Launch("workspace", prepared=fixed_workspace))
    assert snap_compare(app, terminal_size=SIZE, run_before=_on("devices", ("e",)))


def test_profile(snap_compare, fixed_workspace):
    app = OmdpApp(Launch("workspace", prepared=fixed_workspace))
    assert snap_compare(app, terminal_size=SIZE, run_before=_on("profile"))


def test_partitions(snap_compare, fixed_workspace):
    app = OmdpApp(Launch("workspace", prepared=fixed_workspace))
    assert snap_compare(app, terminal_size=SIZE, run_before=_on("partitions", ("down",)))


@pytest.mark.parametrize("theme", ["omdp-light", "omdp-contrast"])
def test_partitions_in_other_themes(snap_compare, fixed_workspace, theme):
    app = OmdpApp(Launch("workspace", prepared=fixed_workspace))
    app.theme = theme
    assert snap_compare(app, terminal_size=SIZE, run_before=_on("partitions"))
