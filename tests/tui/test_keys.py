"""Keyboard only: every action is a binding with an id, and the command palette has it."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.binding import Binding

from omdp_tui.app import Launch, OmdpApp
from omdp_tui.screens.devices import DevicesScreen
from omdp_tui.screens.graph import GraphScreen
from omdp_tui.screens.partitions import PartitionsScreen
from omdp_tui.screens.picker import PickerScreen
from omdp_tui.screens.profile import ProfileScreen
from tui.helpers import screen_text, wait_for

OWNERS = [OmdpApp, PickerScreen, GraphScreen, DevicesScreen, ProfileScreen, PartitionsScreen]


@pytest.mark.parametrize("owner", OWNERS, ids=lambda c: c.__name__)
def test_every_binding_has_an_id_and_a_description(owner):
    bindings = [b for b in owner.BINDINGS if isinstance(b, Binding)]
    assert bindings and len(bindings) == len(owner.BINDINGS)
    for b in bindings:
        assert b.id and b.description, b


def test_binding_ids_are_unique():
    ids = [b.id for owner in OWNERS for b in owner.BINDINGS]
    assert len(ids) == len(set(ids))


async def test_palette_lists_screen_actions_and_runs_them(tiny_path: Path):
    app = OmdpApp(Launch("model", str(tiny_path)))
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, GraphScreen))
        titles = [c.title for c in app.get_system_commands(app.screen)]
        for wanted in (
            "Mark cut",
            "Auto-pick k",
            "Devices",
            "Partitions",
            "Save as",
            "Theme: omdp-contrast",
        ):
            assert wanted in titles
        await pilot.press("down", "ctrl+p")
        await pilot.press(*"Mark cut")
        await wait_for(pilot, lambda: "graph.mark — key m" in screen_text(app))
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.workspace.candidates == [2])
        await pilot.press("ctrl+p")
        await pilot.press(*"Partitions")
        await wait_for(pilot, lambda: "screen.partitions — key 4" in screen_text(app))
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, PartitionsScreen))
