"""The bandwidth map in characters: one letter and colour per partition over log axes,
the operating point, a replayed trace's path and a cursor.

Cells are sampled at their centres (`backend.usecases.maps.view_map`); the letters are
the map's region keys, the same as the CLI's and the image's legend (A = largest share).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import ClassVar

from rich.text import Text
from textual.widget import Widget

from backend.map_image import letter
from backend.usecases.maps import MapView

Y_LABEL = 6  # characters for the y tick labels
LEGEND = 24  # characters for the legend column
# background colours far apart in hue and lightness (dark text on each stays readable)
COLOURS = (
    "#56b4e9",
    "#e69f00",
    "#66c2a5",
    "#cc79a7",
    "#f0e442",
    "#fc8d62",
    "#b3b3b3",
    "#8da0cb",
    "#a6d854",
    "#e5c494",
    "#d9d9d9",
    "#ffd92f",
)
POINT, TRACE = "◆", "•"


def glyph(k: int) -> str:
    """One character per partition: A–Z as in the CLI's and the image's keys, then a–z."""
    if k < 26:
        return letter(k)
    return chr(97 + k - 26) if k < 52 else "?"


def tick_text(v: float) -> str:
    if v >= 1000:
        return f"{v / 1000:g}G" if v >= 1e6 else f"{v / 1000:g}k"
    return f"{v:g}"


def log_ticks(lo: float, hi: float) -> list[float]:
    """1-2-5 values inside [lo, hi]; decades only when there are many."""
    values = []
    for e in range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1):
        for m in (1, 2, 5):
            v = m * 10.0**e
            if lo <= v <= hi:
                values.append(v)
    decades = [v for v in values if math.log10(v).is_integer()]
    return decades if len(decades) >= 3 else values


def cell_of(value: float, lo: float, hi: float, n: int) -> int:
    """The column (or row from the bottom) whose band of [lo, hi] on a log axis holds value."""
    t = math.log(value / lo) / math.log(hi / lo)
    return min(n - 1, max(0, math.floor(t * n)))


class MapChart(Widget):
    """Shows a `MapView` (or a message while there is none)."""

    COMPONENT_CLASSES: ClassVar = {"map-chart--axis", "map-chart--cursor"}
    DEFAULT_CSS = """
    MapChart { height: 1fr; min-height: 6; }
    MapChart > .map-chart--axis { color: $text-muted; }
    MapChart > .map-chart--cursor { text-style: bold reverse; }
    """

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.view: MapView | None = None
        self.message = "computing the map…"
        self.cursor = (0, 0)  # (column, row from the top)
        self.point: tuple[int, int] | None = None
        self.path: set[tuple[int, int]] = set()

    def show(self, view: MapView | None, message: str = "") -> None:
        self.view = view
        self.message = message
        self.refresh()

    def place(self, point: tuple[int, int] | None, path: Iterable[tuple[int, int]]) -> None:
        self.point = point
        self.path = set(path)
        self.refresh()

    def move(self, dx: int, dy: int) -> None:
        if self.view is None:
            return
        cols, rows = len(self.view.xs), len(self.view.labels)
        x, y = self.cursor
        self.cursor = (min(cols - 1, max(0, x + dx)), min(rows - 1, max(0, y + dy)))
        self.refresh()

    def cell(self, mbps: tuple[float, ...]) -> tuple[int, int] | None:
        """The cell of a point in Mbit/s (None outside the map's box)."""
        view = self.view
        if view is None:
            return None
        ranges = view.map.ranges
        if any(not r.lo <= v <= r.hi for r, v in zip(ranges, mbps, strict=False)):
            return None
        cols, rows = len(view.xs), len(view.labels)
        col = cell_of(mbps[0], ranges[0].lo, ranges[0].hi, cols)
        if len(ranges) < 2:
            return col, rows // 2
        return col, rows - 1 - cell_of(mbps[1], ranges[1].lo, ranges[1].hi, rows)

    def render(self) -> Text:
        view = self.view
        if view is None:
            return Text(self.message)
        axis = self.get_component_rich_style("map-chart--axis")
        cursor = self.get_component_rich_style("map-chart--cursor")
        ranges = view.map.ranges
        rows, cols = len(view.labels), len(view.xs)
        y_ticks: dict[int, str] = {}
        if len(ranges) == 2:
            ry = ranges[1]
            for v in log_ticks(ry.lo, ry.hi):
                y_ticks.setdefault(rows - 1 - cell_of(v, ry.lo, ry.hi, rows), tick_text(v))
        legend = self._legend()
        out = Text(no_wrap=True, overflow="crop")
        for r in range(rows):
            out.append(y_ticks.get(r, "").rjust(Y_LABEL - 1), axis)
            out.append("┤" if r in y_ticks else "│", axis)
            for c in range(cols):
                k = view.labels[r][c]
                char = glyph(k) if k >= 0 else " "
                style = f"black on {COLOURS[k % len(COLOURS)]}" if k >= 0 else ""
                if (c, r) in self.path:
                    char = TRACE
                if self.point == (c, r):
                    char, style = POINT, f"bold {style}"
                out.append(char, cursor if self.cursor == (c, r) else style)
            out.append("  ")
            for text, style in legend[r] if r < len(legend) else []:
                out.append(text, style)
            out.append("\n")
        rx = ranges[0]
        ticks = {cell_of(v, rx.lo, rx.hi, cols): tick_text(v) for v in log_ticks(rx.lo, rx.hi)}
        line = "".join("┬" if c in ticks else "─" for c in range(cols))
        out.append(" " * (Y_LABEL - 1) + "└" + line + "\n", axis)
        labels = [" "] * (cols + 8)
        last = -2
        for c in sorted(ticks):
            text = ticks[c]
            start = max(c - len(text) // 2, 0)
            if start <= last + 1:
                continue
            labels[start : start + len(text)] = list(text)
            last = start + len(text) - 1
        out.append(" " * Y_LABEL + "".join(labels).rstrip() + "\n", axis)
        names = f"x: {rx.link} Mbit/s"
        if len(ranges) == 2:
            names += f"   y: {ranges[1].link} Mbit/s"
        out.append(" " * Y_LABEL + names, axis)
        return out

    def _legend(self) -> list[list[tuple[str, str]]]:
        """One line per partition (its glyph in its colour, its cuts, its share), then
        the marks."""
        view = self.view
        assert view is not None
        shares = {r.cuts: r.share for r in view.map.regions}
        if not shares and view.map.bands:
            rx = view.map.ranges[0]
            total = math.log(rx.hi / rx.lo)
            for b in view.map.bands:
                shares[b.cuts] = shares.get(b.cuts, 0.0) + math.log(b.hi / b.lo) / total
        lines: list[list[tuple[str, str]]] = []
        for k, cuts in enumerate(view.keys):
            share = shares.get(cuts)
            pct = "<0.1%" if share is None or share < 0.001 else f"{100 * share:.1f}%"
            colour = f"black on {COLOURS[k % len(COLOURS)]}"
            lines.append([(glyph(k), colour), (f" {','.join(map(str, cuts)):<12} {pct:>6}", "")])
        lines += [[]]
        lines += [[(f"{POINT} now  {TRACE} trace", "")]]
        return lines
