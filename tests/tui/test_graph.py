"""The graph screen on a real (tiny) model: table, details, search/filter, candidates."""

from __future__ import annotations

from pathlib import Path

from textual.widgets import DataTable, Input, Select

from omdp_tui.app import Launch, OmdpApp
from omdp_tui.screens.graph import GraphScreen
from tui.helpers import screen_text, wait_for


def graph_app(model: Path, session: Path | None = None) -> OmdpApp:
    return OmdpApp(Launch("model", str(model), session=session))


async def open_graph(pilot) -> GraphScreen:
    await wait_for(pilot, lambda: isinstance(pilot.app.screen, GraphScreen))
    return pilot.app.screen


async def test_table_lists_every_node_with_cut_bytes(tiny_path: Path):
    app = graph_app(tiny_path)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_graph(pilot)
        table = screen.query_one("#node-table", DataTable)
        assert table.row_count == 10
        text = screen_text(app)
        assert "conv1" in text and "8×16×16" in text  # output shape of conv1
        assert "cut after p=1" in text  # details of the highlighted node


async def test_search_and_op_filter(tiny_path: Path):
    app = graph_app(tiny_path)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_graph(pilot)
        table = screen.query_one("#node-table", DataTable)
        await pilot.press("slash", *"relu")
        await pilot.pause()
        assert table.row_count == 3
        await pilot.press("enter")  # back to the table
        assert app.focused is table
        screen.query_one("#graph-search", Input).value = ""
        screen.query_one("#graph-op", Select).value = "Conv"
        await pilot.pause()
        assert [table.get_row_at(i)[1] for i in range(table.row_count)] == [
            "conv1",
            "conv2",
            "conv3",
        ]


async def test_mark_and_auto_select_candidates(tiny_path: Path):
    app = graph_app(tiny_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await open_graph(pilot)
        await pilot.press("down", "m")  # cut after relu1 = position 2
        assert app.workspace.candidates == [2]
        assert "◆" in screen_text(app)
        await pilot.press("m")
        assert app.workspace.candidates == []
        await pilot.press("a")
        await pilot.pause()
        await pilot.press("backspace", "3", "enter")
        await pilot.pause()
        assert app.workspace.candidates == app.workspace.analysis.candidates(3)
        assert len(app.workspace.candidates) == 3
        await pilot.press("a")
        await pilot.pause()
        await pilot.press("backspace", *"abc", "enter")  # invalid: stays open
        await pilot.pause()
        assert "not a whole number" in screen_text(app)
        await pilot.press("escape")
        await pilot.pause()
        assert isinstance(app.screen, GraphScreen)


async def test_bad_model_shows_the_cause_and_returns_to_the_picker(tmp_path: Path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"this is not onnx")
    app = graph_app(bad)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: "Cannot open" in screen_text(app))
        assert "not a readable ONNX model" in screen_text(app)
        await pilot.press("enter")
        await wait_for(pilot, lambda: type(app.screen).__name__ == "PickerScreen")
