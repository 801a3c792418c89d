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


# -- 80×24 under stress: five devices with 20-character names, a 1×160×160×160 tensor,
# long node paths, a noisy measurement; each empty state; the help screen.


@pytest.mark.parametrize("screen", ["graph", "devices", "profile", "partitions"])
def test_long_names(snap_compare, long_workspace, screen):
    app = OmdpApp(Launch("workspace", prepared=long_workspace))
    assert snap_compare(app, terminal_size=SIZE, run_before=_on(screen))


def test_noisy_cell_on_the_profile_screen(snap_compare, tiny_path: Path, tmp_path: Path):
    from backend.model.analysis import analyze
    from omdp_tui.workspace import Workspace
    from tui.conftest import fixed_session

    analysis = analyze(str(tiny_path))
    session = fixed_session(
        tmp_path / "sessions" / "noisy.omdp", analysis, [2, 5, 7], noisy={("phone", 2, 5)}
    )
    app = OmdpApp(Launch("workspace", prepared=Workspace(analysis, str(tiny_path), session)))
    assert snap_compare(app, terminal_size=SIZE, run_before=_on("profile"))


@pytest.mark.parametrize("share", [0.0, 0.5])
@pytest.mark.parametrize("screen", ["profile", "partitions"])
def test_empty_states(snap_compare, tiny_path: Path, tmp_path: Path, share, screen):
    from backend.model.analysis import analyze
    from omdp_tui.workspace import Workspace
    from tui.conftest import fixed_session

    analysis = analyze(str(tiny_path))
    session = fixed_session(
        tmp_path / "sessions" / "empty.omdp", analysis, [2, 5, 7], measured=share
    )
    app = OmdpApp(Launch("workspace", prepared=Workspace(analysis, str(tiny_path), session)))
    assert snap_compare(app, terminal_size=SIZE, run_before=_on(screen))


def test_no_candidates_yet(snap_compare, tiny_path: Path):
    app = OmdpApp(Launch("model", str(tiny_path)))
    assert snap_compare(app, terminal_size=SIZE, run_before=_on("profile"))


@pytest.mark.parametrize("screen", ["graph", "partitions"])
def test_help(snap_compare, fixed_workspace, screen):
    app = OmdpApp(Launch("workspace", prepared=fixed_workspace))
    assert snap_compare(app, terminal_size=SIZE, run_before=_on(screen, ("question_mark",)))


def test_log_open(snap_compare, fixed_workspace):
    app = OmdpApp(Launch("workspace", prepared=fixed_workspace))
    assert snap_compare(app, terminal_size=SIZE, run_before=_on("profile", ("l",)))
