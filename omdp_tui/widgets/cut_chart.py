"""Cut bytes and cumulative FLOPs along positions, as block-character bars.

A model has hundreds of positions and the terminal may be 80 columns wide, so positions
are bucketed into columns. Each column shows the *smallest* cut in its bucket: the
operator looks for valleys (cheap places to split), and a max would hide them.
Candidates are marked under the bars, the selected position with a caret.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from rich.text import Text
from textual.reactive import reactive
from textual.widget import Widget

from backend import units

BLOCKS = " ▁▂▃▄▅▆▇█"
GUTTER = 7  # label column width


def buckets(n: int, width: int) -> list[range]:
    """Positions 0..n-1 per column: near-equal contiguous ranges when there are more
    positions than columns, else each position stretched over several columns."""
    width = max(1, width)
    if n <= 0:
        return []
    if n < width:
        return [range(c * n // width, c * n // width + 1) for c in range(width)]
    return [range(n * i // width, n * (i + 1) // width) for i in range(width)]


def bars(values: Sequence[float], height: int) -> list[str]:
    """Vertical bars (one value per column) `height` rows tall, top row first."""
    top = max(values, default=0) or 1
    levels = [round(v / top * height * 8) for v in values]
    rows = []
    for row in range(height - 1, -1, -1):
        base = row * 8
        rows.append("".join(BLOCKS[max(0, min(8, lv - base))] for lv in levels))
    return rows


class CutChart(Widget):
    """Two-row cut-bytes chart, a one-row cumulative FLOPs line and a candidate ruler."""

    COMPONENT_CLASSES: ClassVar = {
        "cut-chart--bytes",
        "cut-chart--flops",
        "cut-chart--label",
        "cut-chart--cursor",
    }
    DEFAULT_CSS = """
    CutChart { height: 4; }
    CutChart > .cut-chart--bytes { color: $chart-bytes; }
    CutChart > .cut-chart--flops { color: $chart-flops; }
    CutChart > .cut-chart--label { color: $text-muted; }
    CutChart > .cut-chart--cursor { color: $accent; text-style: bold reverse; }
    """

    cursor: reactive[int] = reactive(0)
    candidates: reactive[frozenset[int]] = reactive(frozenset)

    def __init__(self, cut_bytes: Sequence[int] = (), flops: Sequence[int] = (), **kwargs) -> None:
        super().__init__(**kwargs)
        self.cut_bytes = list(cut_bytes)
        self.node_flops = list(flops)

    def set_data(self, cut_bytes: Sequence[int], flops: Sequence[int]) -> None:
        self.cut_bytes = list(cut_bytes)
        self.node_flops = list(flops)
        self.refresh()

    def render(self) -> Text:
        width = max(1, self.size.width - GUTTER)
        n = len(self.cut_bytes)
        text = Text(no_wrap=True, overflow="crop")
        if n == 0:
            return text
        cols = buckets(n, width)
        mins = [min(self.cut_bytes[p] for p in r) for r in cols]
        cum, total = [], 0
        for f in [0, *self.node_flops]:
            total += max(f or 0, 0)
            cum.append(total)
        cum_cols = [cum[min(r.stop, len(cum)) - 1] for r in cols]
        bytes_style = self.get_component_rich_style("cut-chart--bytes")
        flops_style = self.get_component_rich_style("cut-chart--flops")
        label_style = self.get_component_rich_style("cut-chart--label")
        cursor_style = self.get_component_rich_style("cut-chart--cursor")
        top_bytes = max(mins)
        for i, row in enumerate(bars(mins, 2)):
            label = units.size(top_bytes) if i == 0 else "cut B"
            text.append(f"{label:>{GUTTER - 1}} ", style=label_style)
            text.append(row + "\n", style=bytes_style)
        text.append(f"{'FLOPs':>{GUTTER - 1}} ", style=label_style)
        text.append(bars(cum_cols, 1)[0] + "\n", style=flops_style)
        ruler = [" "] * len(cols)
        col_of: dict[int, int] = {}
        for c, r in enumerate(cols):
            for p in r:
                col_of.setdefault(p, c)  # a stretched position marks its first column
        for p in self.candidates:
            if p in col_of:
                ruler[col_of[p]] = "◆"
        cursor_col = col_of.get(min(self.cursor, n - 1), 0)
        text.append(f"{'cands':>{GUTTER - 1}} ", style=label_style)
        for c, ch in enumerate(ruler):
            if c == cursor_col:
                text.append("▲" if ch == " " else ch, style=cursor_style)
            else:
                text.append(ch, style="bold")
        return text

    def watch_cursor(self) -> None:
        self.refresh()

    def watch_candidates(self) -> None:
        self.refresh()
