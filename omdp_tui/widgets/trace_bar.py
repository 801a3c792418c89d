"""Trace playback at a glance: the link's bandwidth over the whole trace as a sparkline
with the current step marked, and one line on the best partition now vs the robust one."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from rich.text import Text
from textual.widget import Widget

from omdp_tui.widgets.cut_chart import BLOCKS, buckets

GUTTER = 7


class TraceBar(Widget):
    COMPONENT_CLASSES: ClassVar = {
        "trace-bar--spark",
        "trace-bar--cursor",
        "trace-bar--label",
    }
    DEFAULT_CSS = """
    TraceBar { height: auto; }
    TraceBar > .trace-bar--spark { color: $chart-transfer; }
    TraceBar > .trace-bar--cursor { color: $accent; text-style: bold reverse; }
    TraceBar > .trace-bar--label { color: $text-muted; }
    """

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.values: np.ndarray | None = None  # bandwidth per step
        self.step = 0
        self.status = ""

    def show(self, values: np.ndarray | None, step: int, status: str) -> None:
        if values is self.values and step == self.step and status == self.status:
            return  # nothing to redraw (a re-rank without a trace)
        height = self._height()
        self.values, self.step, self.status = values, step, status
        self.refresh(layout=self._height() != height)  # layout only when the height changes

    def _height(self) -> int:
        return 1 + self.status.count("\n") + (self.values is not None)

    def get_content_height(self, container, viewport, width: int) -> int:
        return self._height()

    def render(self) -> Text:
        text = Text(no_wrap=True, overflow="ellipsis")
        label = self.get_component_rich_style("trace-bar--label")
        if self.values is None or len(self.values) == 0:
            text.append(self.status or "no trace: t loads one", style=label)
            return text
        width = max(1, self.size.width - GUTTER)
        cols = buckets(len(self.values), width)
        means = [float(np.mean(self.values[r.start : r.stop])) for r in cols]
        top = max(means) or 1.0
        cursor = next((c for c, r in enumerate(cols) if self.step in r), 0)
        text.append(f"{'Mbit/s':>{GUTTER - 1}} ", style=label)
        spark = self.get_component_rich_style("trace-bar--spark")
        mark = self.get_component_rich_style("trace-bar--cursor")
        for c, v in enumerate(means):
            ch = BLOCKS[max(1, min(8, round(v / top * 8)))] if v > 0 else "·"
            text.append(ch, style=mark if c == cursor else spark)
        text.append("\n")
        text.append(self.status)
        return text
