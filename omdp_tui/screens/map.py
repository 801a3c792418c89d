"""The Map view of the partitions screen: which partition is best over a box of two links'
bandwidths, as a character map with log axes, the operating point, the replayed trace's
path and a cursor that reads the best partition and its margin at any point.

The map is computed by the engine (`backend.usecases.maps.view_map`, exact regions for
the latency objective) in a worker over the workspace's ranker; the worker posts the
result, and the screen draws it. Changing the cost model or objective here, or K and the
fixed links on the partitions screen, redraws it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.message import Message
from textual.widgets import Label

from backend import units
from backend.errors import OmdpError
from backend.solver.bandwidth_map import MAX_BANDWIDTH_MBPS, MIN_BANDWIDTH_MBPS, LinkRange
from backend.solver.costs import COST_MODELS, OBJECTIVES
from backend.usecases.maps import MapView, default_image_path, export_image, view_map
from omdp_tui.screens.base import WorkspaceScreen
from omdp_tui.screens.dialogs import ErrorDialog, TextPrompt
from omdp_tui.screens.form import Field, FormDialog
from omdp_tui.screens.memory import limits_from, memory_dialog, memory_note
from omdp_tui.widgets.map_chart import LEGEND, Y_LABEL, MapChart, glyph
from omdp_tui.workspace import Playback, TraceInputs

DEFAULT_RANGE = (1.0, 1000.0)  # Mbit/s, each varying link
RESERVED_ROWS = 8  # title, options, x axis (3 lines), readout (2), footer


@dataclass
class MapComputed(Message):
    """A map the worker computed (or why it could not), for request `generation`."""

    view: MapView | None
    error: str | None
    generation: int


def parse_range(text: str) -> tuple[float, float] | None:
    """`LO:HI` in Mbit/s within the map's limits, or None."""
    lo_text, sep, hi_text = text.partition(":")
    try:
        lo, hi = float(lo_text), float(hi_text)
    except ValueError:
        return None
    finite = math.isfinite(lo) and math.isfinite(hi)
    if not sep or not (finite and MIN_BANDWIDTH_MBPS <= lo < hi <= MAX_BANDWIDTH_MBPS):
        return None
    return lo, hi


class MapScreen(WorkspaceScreen):
    NAME = "partitions"
    BINDINGS: ClassVar = [
        Binding("l", "pick_links", "Links", id="map.links"),
        Binding("c", "cycle_cost_model", "Cost", id="map.cost_model"),
        Binding("o", "cycle_objective", "Objective", id="map.objective"),
        Binding("M", "memory_limits", "Memory", show=False, id="map.memory"),
        Binding("e", "export", "Image", id="map.export"),
        Binding("n", "to_point", "Now", id="map.now"),
        Binding("escape,m", "close", "Back", id="map.close"),
        Binding("up", "move(0, -1)", "Up", show=False, id="map.up"),
        Binding("down", "move(0, 1)", "Down", show=False, id="map.down"),
        Binding("left", "move(-1, 0)", "Left", show=False, id="map.left"),
        Binding("right", "move(1, 0)", "Right", show=False, id="map.right"),
    ]

    def __init__(self, playback: Playback | None = None) -> None:
        super().__init__()
        self.playback = playback
        self.view: MapView | None = None
        self._generation = 0  # the newest map asked for
        self.shown_generation = 0  # the map on screen
        self._cursor_placed = False

    def compose(self) -> ComposeResult:
        yield from self.compose_title()
        yield Label("", id="map-options")
        yield MapChart(id="map-chart")
        yield Label("", id="map-readout")
        yield from self.compose_footer()

    def on_mount(self) -> None:
        self.recompute()

    def on_screen_resume(self) -> None:
        super().on_screen_resume()
        self.recompute()

    def on_resize(self) -> None:
        """The map has one cell per character: a new size needs new samples."""
        if self.view is not None and self._grid_size() != (
            len(self.view.xs),
            len(self.view.labels),
        ):
            self.recompute()

    def _grid_size(self) -> tuple[int, int]:
        cols = max(10, self.size.width - Y_LABEL - LEGEND - 3)
        return cols, max(4, self.size.height - RESERVED_ROWS)

    # -- which links, over which ranges ------------------------------------------------------

    def _setting(self) -> dict[str, Any]:
        """The links and ranges shown: the operator's last choice, else the first two."""
        names = [x.name for x in self.ws.links]
        saved = self.ws.get_ui("map.view") or {}
        links = [n for n in saved.get("links", []) if n in names][:2]
        if len(links) < min(2, len(names)) or len(set(links)) != len(links):
            links = names[:2]
        ranges = saved.get("ranges") or []
        out = []
        for i, _ in enumerate(links):
            r = ranges[i] if i < len(ranges) else None
            ok = isinstance(r, list) and len(r) == 2 and parse_range(f"{r[0]}:{r[1]}")
            out.append(tuple(r) if ok else DEFAULT_RANGE)
        return {"links": links, "ranges": out}

    def _ranges(self) -> list[LinkRange]:
        s = self._setting()
        names = [x.name for x in self.ws.links]
        return [
            LinkRange(n, names.index(n), float(lo), float(hi))
            for n, (lo, hi) in zip(s["links"], s["ranges"], strict=True)
        ]

    # -- computing -------------------------------------------------------------------------

    def recompute(self) -> None:
        chart = self.query_one(MapChart)
        ws = self.ws
        self.query_one("#map-options", Label).update(self._options_text())
        if not ws.links:
            chart.show(None, "one device, no link: add a device to map a link")
            return
        try:
            inputs = ws.trace_inputs()  # the ranker and the fixed links, on the UI thread
        except OmdpError as exc:
            chart.show(None, str(exc))
            return
        cols, rows = self._grid_size()
        self._generation += 1
        if self.view is None:
            chart.show(None, "computing the map…")
        self._compute(inputs, self._ranges(), cols, rows, self._generation)

    @work(thread=True, exclusive=True, group="map", exit_on_error=False)
    def _compute(
        self, inputs: TraceInputs, ranges: list[LinkRange], cols: int, rows: int, gen: int
    ) -> None:
        try:
            view = view_map(
                inputs.ranker,
                inputs.names,
                inputs.bandwidths,
                inputs.latencies,
                ranges,
                cols,
                rows,
            )
        except OmdpError as exc:
            self.post_message(MapComputed(None, str(exc), gen))
        else:
            self.post_message(MapComputed(view, None, gen))

    @on(MapComputed)
    def _computed(self, message: MapComputed) -> None:
        if message.generation != self._generation:
            return  # an older request finished after a newer one was made
        chart = self.query_one(MapChart)
        self.view = message.view
        self.shown_generation = message.generation
        if message.view is None:
            chart.show(None, f"cannot map: {message.error}")
            self.query_one("#map-readout", Label).update("")
            return
        chart.show(message.view)
        self.query_one("#map-options", Label).update(self._options_text())
        here = tuple(self._now())
        chart.place(chart.cell(here), self._trace_cells(chart))
        if not self._cursor_placed:
            self._cursor_placed = True
            chart.cursor = chart.point or (len(message.view.xs) // 2, len(message.view.labels) // 2)
        chart.move(0, 0)
        self._read()

    def _now(self) -> list[float]:
        pb = self.playback
        bw = pb.bandwidths() if pb else [x.bandwidth_mbps for x in self.ws.links]
        return [bw[r.index] for r in self._ranges()]

    def _trace_cells(self, chart: MapChart) -> list[tuple[int, int]]:
        pb = self.playback
        if pb is None:
            return []
        idx = [r.index for r in self._ranges()]
        cells = (
            chart.cell(tuple(float(row[i]) for i in idx)) for row in pb.timeline.bandwidth_mbps
        )
        return [c for c in cells if c is not None]

    def _options_text(self) -> str:
        ws = self.ws
        how = ""
        if self.view is not None:
            how = " · exact" if self.view.map.exact else " · grid (throughput)"
        fixed = [x for x in ws.links if x.name not in self._setting()["links"]]
        rest = "".join(f" · {x.name} {x.bandwidth_mbps:g} Mbit/s" for x in fixed)
        return f"{ws.cost_model} · {ws.objective}{how}{rest}{memory_note(ws)} · K {ws.k}"

    # -- the cursor --------------------------------------------------------------------------

    def _read(self) -> None:
        """The best partition under the cursor, the runner-up's margin, and its share."""
        view, label = self.view, self.query_one("#map-readout", Label)
        if view is None:
            return
        chart = self.query_one(MapChart)
        col, row = chart.cursor
        point = (view.xs[col],) if len(view.map.ranges) == 1 else (view.xs[col], view.ys[row])
        try:
            reading = view.mapper.read(point)
        except OmdpError as exc:
            label.update(str(exc))
            return
        where = " · ".join(
            f"{r.link} {units.fixed(v, 3, True)}"
            for r, v in zip(view.map.ranges, point, strict=True)
        )
        k = view.keys.index(reading.best) if reading.best in view.keys else -1
        key = glyph(k) if k >= 0 else "?"
        margin = (
            "the only feasible partition"
            if reading.margin_ms is None
            else f"runner-up {','.join(map(str, reading.runner_up or ()))} "
            f"+{reading.margin_ms:.2f} ms"
        )
        label.update(
            f"cursor {where} Mbit/s\n{key} {view.map.describe(reading.best)} "
            f"{reading.best_ms:.1f} ms · {margin}"
        )

    def action_move(self, dx: int, dy: int) -> None:
        self.query_one(MapChart).move(dx, dy)
        self._read()

    def action_to_point(self) -> None:
        chart = self.query_one(MapChart)
        if chart.point is None:
            self.notify("the operating point is outside the map's box", severity="warning")
            return
        chart.cursor = chart.point
        chart.move(0, 0)
        self._read()

    # -- options -----------------------------------------------------------------------------

    def action_memory_limits(self) -> None:
        def chosen(values: dict[str, Any] | None) -> None:
            if values is not None:
                self.ws.set_memory_limits(limits_from(self.ws, values))
                self.recompute()

        self.app.push_screen(memory_dialog(self.ws), chosen)

    def action_cycle_cost_model(self) -> None:
        models = list(COST_MODELS)
        nxt = models[(models.index(self.ws.cost_model) + 1) % len(models)]
        instance = self.ws.current_instance()
        if nxt == "estimated" and (instance is None or instance.estimated_ms is None):
            self.notify("no per-node estimates in this session", severity="warning")
            return
        self.ws.set_ranking_options(cost_model=nxt)
        self.recompute()

    def action_cycle_objective(self) -> None:
        objs = list(OBJECTIVES)
        self.ws.set_ranking_options(objective=objs[(objs.index(self.ws.objective) + 1) % len(objs)])
        self.recompute()

    def action_pick_links(self) -> None:
        names = [x.name for x in self.ws.links]
        if not names:
            return
        s = self._setting()
        fields = []
        for i, axis in enumerate(("x", "y")[: min(2, len(names))]):
            lo, hi = s["ranges"][i]
            fields += [
                Field(f"{axis}_link", f"{axis} link:", s["links"][i], options=names),
                Field(f"{axis}_range", f"{axis} Mbit/s:", f"{lo:g}:{hi:g}", required=True),
            ]

        def check(values: dict[str, Any]) -> str | None:
            if len(names) > 1 and values.get("x_link") == values.get("y_link"):
                return "pick two different links"
            for key in ("x_range", "y_range"):
                if key in values and parse_range(str(values[key])) is None:
                    return (
                        f"{key[0]} range must be LO:HI with {MIN_BANDWIDTH_MBPS:g} ≤ LO < HI "
                        f"≤ {MAX_BANDWIDTH_MBPS:g} Mbit/s, e.g. 1:1000"
                    )
            return None

        self.app.push_screen(FormDialog("Map: links and ranges", fields, check), self._picked)

    def _picked(self, values: dict[str, Any] | None) -> None:
        if not values:
            return
        axes = [a for a in ("x", "y") if f"{a}_link" in values]
        self.ws.set_ui(
            "map.view",
            {
                "links": [values[f"{a}_link"] for a in axes],
                "ranges": [
                    list(parse_range(str(values[f"{a}_range"])) or DEFAULT_RANGE) for a in axes
                ],
            },
        )
        self._cursor_placed = False
        self.view = None
        self.recompute()

    def action_export(self) -> None:
        view = self.view
        if view is None:
            self.notify("no map yet", severity="warning")
            return
        links = [r.link for r in view.map.ranges]

        def write(path: str | None) -> None:
            if not path:
                return
            title = f"{self.ws.title}: best partition by bandwidth"
            try:
                written = export_image(view.map, Path(path), title, self._now())
            except (OSError, OmdpError) as exc:
                self.app.push_screen(ErrorDialog("Image not written", str(exc)))
                return
            self.ws.set_ui("map.image_path", str(written))
            self.notify(f"map written to {written}")

        default = str(default_image_path(self.ws.session_path, links))
        self.app.push_screen(TextPrompt("Export the map", "SVG file:", default), write)

    def action_close(self) -> None:
        self.app.pop_screen()
