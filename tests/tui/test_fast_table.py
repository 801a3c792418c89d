"""FastTable draws exactly what DataTable draws (characters, colours, attributes and the
row/column each cell reports to the mouse), only faster."""

from __future__ import annotations

import pytest
from rich.text import Text
from textual.app import App, ComposeResult
from textual.coordinate import Coordinate
from textual.geometry import Region
from textual.widgets import DataTable
from textual.widgets.data_table import CellDoesNotExist

from omdp_tui.widgets.fast_table import FastTable

ROWS = [
    ["1", Text("12.5", justify="right"), "gl [0,24)", Text("3.1 MiB", style="bold red")],
    ["2", Text("7.25", justify="right"), "表示 wide", Text("", justify="center")],
    ["3", Text("100.0", justify="right"), "twelve cells", "x"],
    ["4", Text("0.5", justify="center"), "", Text("mixed", style="italic")],
]


class Pair(App):
    AUTO_FOCUS = None  # compared unfocused, then each focused in turn
    CSS = "DataTable { height: 7; width: 60; }"

    def compose(self) -> ComposeResult:
        yield DataTable(id="plain", cursor_type="row", zebra_stripes=True)
        yield FastTable(id="fast", cursor_type="row", zebra_stripes=True)

    def on_mount(self) -> None:
        for table in self.query(DataTable):
            table.add_column("#", width=3)
            table.add_column(Text("total", justify="right"), width=7)
            table.add_column("stage", width=12)
            table.add_column("size", width=9)
            for row in ROWS:
                table.add_row(*row)


def drawn(table: DataTable) -> list[list[tuple]]:
    lines = table.render_lines(Region(0, 0, table.size.width, table.size.height))
    out = []
    for strip in lines:
        line = []
        for seg in strip:
            style = seg.style
            look = (style.color, style.bgcolor, style.bold, style.italic, style.reverse)
            meta = {k: v for k, v in style.meta.items() if k in ("row", "column")}
            line += [(ch, look, tuple(sorted(meta.items()))) for ch in seg.text]
        out.append(line)
    return out


async def test_fast_table_draws_what_data_table_draws() -> None:
    app = Pair()
    async with app.run_test(size=(80, 24)) as pilot:
        plain = app.query_one("#plain", DataTable)
        fast = app.query_one("#fast", FastTable)
        for step in ("start", "cursor moved", "cell updated", "focused", "hovered"):
            if step == "cursor moved":
                for table in (plain, fast):
                    table.move_cursor(row=2, animate=False)
            elif step == "cell updated":  # one by one on DataTable, in one batch on ours
                changes = [
                    (Coordinate(1, 1), Text("99.9", justify="right")),
                    (Coordinate(3, 2), "z"),
                ]
                for coordinate, value in changes:
                    plain.update_cell_at(coordinate, value)
                fast.update_cells_at(changes)
            elif step in ("focused", "hovered"):
                shown = []
                for table in (plain, fast):
                    table.focus()
                    if step == "hovered":
                        await pilot.hover(table, offset=(5, 2))
                    await pilot.pause()
                    shown.append(drawn(table))
                assert shown[1] == shown[0], step
                continue
            await pilot.pause()
            assert drawn(fast) == drawn(plain), step
        text = "\n".join("".join(ch for ch, _, _ in line) for line in drawn(fast))
        assert "99.9" in text and "表示 wide" in text and "twelve cells" in text
        # Where DataTable cuts a cell silently, FastTable marks the cut.
        for table in (plain, fast):
            table.update_cell_at(Coordinate(2, 2), "a name far too long for it")
        await pilot.pause()
        shown = [
            "\n".join("".join(ch for ch, _, _ in line) for line in drawn(t)) for t in (plain, fast)
        ]
        assert "a name far t " in shown[0] and "a name far …" in shown[1]
        with pytest.raises(CellDoesNotExist):
            fast.update_cells_at([(Coordinate(9, 0), "no such row")])
