"""The graph screen: every node with its shape, bytes and compute, and the cut after it.

This is where the operator picks candidate positions: `m` toggles the cut after the
highlighted node, `a` lets the analysis pick k spread-out small cuts. The chart under
the table shows where the cheap cuts (valleys) sit along the compute.
"""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import DataTable, Input, Select

from backend import fit, units
from backend.model.analysis import ModelAnalysis
from omdp_tui.screens.base import WorkspaceScreen
from omdp_tui.screens.dialogs import NumberPrompt
from omdp_tui.widgets.cut_chart import CutChart
from omdp_tui.widgets.node_details import NodeDetails, describe_node

ALL_OPS = "*"
TABLE_ROOM = 78  # 80 columns − the vertical scrollbar
PADDING = 2  # each column's cell padding
MIN_NAME = 12
WANT_NAME = 16  # below this, the output's bytes leave the table (the details show them)
MAX_SHAPE = 18
MAX_OP = 10
# Columns whose width never changes: (key, label, width). Sizes fit their numbers in any
# magnitude (`units` shrinks precision to the width); name, op and output shape are sized
# from the model (`columns`).
FIXED = {
    "mark": ("    #", 5),
    "bytes": ("bytes", 7),
    "flops": ("FLOPs", 5),
    "params": ("param", 5),
    "cut": ("cut→", 7),
}


def columns(analysis: ModelAnalysis) -> list[tuple[str, str, int]]:
    """(key, label, width) of the node table: the output shape and the op get the room
    their longest value needs (up to a cap: longer ones are marked with …), the name
    gets the rest, so a model's shapes are shown whole at 80 columns. When names would
    get fewer than 16 cells, the output's bytes column makes room for them."""
    shapes = [units.shape(n.outputs[0].shape) if n.outputs else "?" for n in analysis.nodes]
    shape_w = min(MAX_SHAPE, max([6, *map(fit.cells, shapes)]))
    op_w = min(MAX_OP, max([2, *(fit.cells(n.op) for n in analysis.nodes)]))
    names = max([4, *(fit.cells(n.name) for n in analysis.nodes)])
    keys = list(FIXED)
    for drop in ((), ("bytes",)):
        keys = [k for k in FIXED if k not in drop]
        fixed = sum(FIXED[k][1] + PADDING for k in keys)
        name_w = TABLE_ROOM - fixed - (shape_w + op_w + 3 * PADDING)
        if name_w >= min(WANT_NAME, names):
            break
    name_w = min(max(MIN_NAME, name_w), names)
    cols = [("mark", *FIXED["mark"]), ("name", "name", name_w), ("op", "op", op_w)]
    cols.append(("shape", "output", shape_w))
    return cols + [(k, *FIXED[k]) for k in keys if k != "mark"]


class NodeTable(DataTable):
    """The node table keeps its cursor row in view when its size changes: a resumed
    session moves the cursor before the screen's layout gives the table its height."""

    def on_resize(self) -> None:
        self.call_after_refresh(self._scroll_cursor_into_view)


def _num(text: str) -> Text:
    return Text(text, justify="right")


class GraphScreen(WorkspaceScreen):
    NAME = "graph"
    widths: dict[str, int]  # column key → width, set on mount

    def __init__(self) -> None:
        super().__init__()
        self.cleared: list[int] | None = None  # what x cleared, until u or another change

    BINDINGS: ClassVar = [
        Binding(
            "m",
            "toggle_candidate",
            "Mark cut",
            id="graph.mark",
            tooltip="mark or unmark the cut after the highlighted node as a candidate",
        ),
        Binding(
            "a",
            "auto_select",
            "Auto-pick k",
            id="graph.auto",
            tooltip="let the analysis pick k small, spread-out cuts",
        ),
        Binding(
            "x",
            "clear_candidates",
            "Clear",
            id="graph.clear",
            tooltip="clear every candidate (u undoes)",
        ),
        Binding(
            "u",
            "undo_clear",
            "Undo clear",
            id="graph.undo",
            tooltip="bring back the candidates x cleared",
        ),
        Binding(
            "slash",
            "focus_search",
            "Search",
            key_display="/",
            id="graph.search",
            tooltip="search nodes by name or op",
        ),
        Binding("o", "focus_op", "Op filter", id="graph.op", tooltip="show only nodes of one op"),
        Binding(
            "n",
            "next_candidate",
            "Next cand.",
            id="graph.next",
            tooltip="jump to the next candidate",
        ),
        Binding(
            "escape",
            "focus_table",
            "Table",
            show=False,
            id="graph.table",
            tooltip="back to the table",
        ),
    ]

    def compose(self) -> ComposeResult:
        yield from self.compose_title()
        ops = sorted({n.op for n in self.ws.analysis.nodes})
        with Horizontal(id="graph-filters"):
            yield Input(placeholder="search name / op  (/)", compact=True, id="graph-search")
            yield Select(
                [(op, op) for op in ops],
                prompt="all ops",
                allow_blank=True,
                compact=True,
                id="graph-op",
            )
        with Horizontal(id="graph-body"):
            yield NodeTable(id="node-table", cursor_type="row", zebra_stripes=True)
            with VerticalScroll(id="graph-details"):
                yield NodeDetails(id="node-details")
        with Vertical(id="graph-chart-box"):
            yield CutChart(id="cut-chart")
        yield from self.compose_footer()

    def on_mount(self) -> None:
        table = self.query_one("#node-table", DataTable)
        self.widths = {}
        for key, label, width in columns(self.ws.analysis):
            self.widths[key] = width
            table.add_column(label, key=key, width=width)
        analysis = self.ws.analysis
        chart = self.query_one(CutChart)
        chart.set_data([c.bytes for c in analysis.cuts], [n.flops or 0 for n in analysis.nodes])
        self._fill_table()
        self._sync_candidates()
        selected = self.ws.get_ui("graph.node", 0)
        if isinstance(selected, int) and 0 <= selected < analysis.n:
            self._move_to(selected)
        self._show_node(self._current_index())
        table.focus()

    # -- table -------------------------------------------------------------------------

    def _visible_nodes(self) -> list[int]:
        query = self.query_one("#graph-search", Input).value.strip().lower()
        op = self.query_one("#graph-op", Select).value
        out = []
        for node in self.ws.analysis.nodes:
            if op not in (Select.NULL, None, ALL_OPS) and node.op != op:
                continue
            if query and query not in node.name.lower() and query not in node.op.lower():
                continue
            out.append(node.index)
        return out

    def _row(self, i: int) -> tuple:
        a = self.ws.analysis
        node = a.nodes[i]
        out = node.outputs[0] if node.outputs else None
        w = self.widths
        row: list[str | Text] = [
            self._mark(i),
            fit.node_name(node.name, w["name"], node.op),
            fit.end(node.op, w["op"]),
            fit.middle(units.shape(out.shape if out else None), w["shape"]),
        ]
        if "bytes" in w:
            row.append(_num(units.size(sum(o.bytes or 0 for o in node.outputs), w["bytes"])))
        row += [
            _num(units.count(node.flops, w["flops"])),
            _num(units.count(node.params, w["params"])),
            _num(units.size(a.cuts[i + 1].bytes, w["cut"])),
        ]
        return tuple(row)

    def _mark(self, i: int) -> str:
        return f"{'◆' if (i + 1) in self.ws.candidates else ' '}{i:>4}"

    def _fill_table(self) -> None:
        table = self.query_one("#node-table", DataTable)
        keep = self._current_index()
        table.clear()
        for i in self._visible_nodes():
            table.add_row(*self._row(i), key=str(i))
        if keep is not None:
            self._move_to(keep)

    def _current_index(self) -> int | None:
        table = self.query_one("#node-table", DataTable)
        if table.row_count == 0:
            return None
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key
        return int(key.value) if key.value is not None else None

    def _move_to(self, index: int) -> None:
        table = self.query_one("#node-table", DataTable)
        try:
            row = table.get_row_index(str(index))
        except Exception:  # filtered out
            return
        table.move_cursor(row=row, animate=False)

    def _show_node(self, index: int | None) -> None:
        details = self.query_one(NodeDetails)
        chart = self.query_one(CutChart)
        if index is None:
            details.update("no node matches the filter")
            return
        details.update(describe_node(self.ws.analysis, index, (index + 1) in self.ws.candidates))
        chart.cursor = index + 1

    def _sync_candidates(self) -> None:
        self.query_one(CutChart).candidates = frozenset(self.ws.candidates)

    @on(DataTable.RowHighlighted, "#node-table")
    def _highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.row_key.value is None:
            return
        index = int(event.row_key.value)
        self._show_node(index)
        self.ws.set_ui("graph.node", index)

    @on(Input.Changed, "#graph-search")
    @on(Select.Changed, "#graph-op")
    def _filter(self) -> None:
        self._fill_table()
        self._show_node(self._current_index())

    @on(Input.Submitted, "#graph-search")
    def _search_done(self) -> None:
        self.action_focus_table()

    # -- actions -----------------------------------------------------------------------

    def action_focus_search(self) -> None:
        self.query_one("#graph-search", Input).focus()

    def action_focus_op(self) -> None:
        select = self.query_one("#graph-op", Select)
        select.focus()
        select.action_show_overlay()

    def action_focus_table(self) -> None:
        self.query_one("#node-table", DataTable).focus()

    def action_toggle_candidate(self) -> None:
        index = self._current_index()
        if index is None:
            return
        position = index + 1
        if position >= self.ws.analysis.n:
            self.notify(
                "the cut after the last node is the model's output: always available",
                severity="warning",
            )
            return
        if self.ws.analysis.nodes[index].static:
            self.notify(
                f"{self.ws.analysis.nodes[index].name} computes only constants: "
                "the cut after it is the same as an earlier one",
                severity="warning",
            )
        self.ws.toggle_candidate(position)
        self.cleared = None
        self._refresh_marks([index])
        self.refresh_bindings()

    def _refresh_marks(self, indices: list[int]) -> None:
        table = self.query_one("#node-table", DataTable)
        for i in indices:
            if 0 <= i < self.ws.analysis.n and str(i) in table.rows:
                table.update_cell(str(i), "mark", self._mark(i))
        self._sync_candidates()
        self._show_node(self._current_index())

    def action_auto_select(self) -> None:
        def chosen(k: int | None) -> None:
            if k is None:
                return
            before = set(self.ws.candidates)
            picked = self.ws.auto_candidates(k)
            self._refresh_marks([p - 1 for p in before | set(picked)])
            self.notify(f"{len(picked)} candidates: {', '.join(map(str, picked))}")

        default = len(self.ws.candidates) or 6
        self.app.push_screen(
            NumberPrompt(
                "Auto-pick candidates",
                "How many split points (k)?",
                default,
                1,
                max(1, self.ws.analysis.n - 1),
            ),
            chosen,
        )

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "undo_clear":
            return self.cleared is not None
        if action == "clear_candidates":
            return bool(self.ws.candidates)
        return True

    def action_clear_candidates(self) -> None:
        before = list(self.ws.candidates)
        if not before:
            return
        self.ws.set_candidates([])
        self.cleared = before
        self._refresh_marks([p - 1 for p in before])
        self.refresh_bindings()
        self.notify(f"cleared {len(before)} candidates: u brings them back", timeout=8)

    def action_undo_clear(self) -> None:
        if self.cleared is None:
            return
        restored, self.cleared = self.cleared, None
        self.ws.set_candidates(restored)
        self._refresh_marks([p - 1 for p in restored])
        self.refresh_bindings()
        self.notify(f"{len(restored)} candidates back")

    def action_next_candidate(self) -> None:
        cands = sorted(self.ws.candidates)
        if not cands:
            self.notify("no candidates yet: m marks one, a picks k", severity="warning")
            return
        current = self._current_index() or 0
        after = [p for p in cands if p - 1 > current]
        target = (after or cands)[0] - 1
        if self.query_one("#graph-search", Input).value or self.query_one(
            "#graph-op", Select
        ).value not in (Select.NULL, None):
            self.query_one("#graph-search", Input).value = ""
            self.query_one("#graph-op", Select).clear()
            self._fill_table()
        self._move_to(target)
