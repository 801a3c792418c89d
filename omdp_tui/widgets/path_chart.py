"""Where the time of one partition goes: a bar per device (compute) and per link
(transfer), in chain order, on one shared scale so the bottleneck stands out."""

from __future__ import annotations

import math
from typing import ClassVar

from rich.segment import Segment
from rich.style import Style
from textual.strip import Strip
from textual.widget import Widget

from backend import fit, units

EIGHTHS = " ▏▎▍▌▋▊▉█"


def hbar(value: float, top: float, width: int) -> str:
    """A horizontal bar of `width` cells at most, in eighth-cell steps."""
    if top <= 0 or not math.isfinite(value) or value <= 0:
        return ""
    eighths = round(min(value / top, 1.0) * width * 8)
    full, part = divmod(eighths, 8)
    return "█" * full + (EIGHTHS[part] if part else "")


MAX_ROWS = 7  # its height at most at 80×24 (app.tcss)
PAD = Style(reverse=False)  # what Textual pads a line of text with, as it does


class PathChart(Widget):
    """Shows a `backend.solver.ranking.Partition` (or a message when there is none)."""

    COMPONENT_CLASSES: ClassVar = {
        "path-chart--compute",
        "path-chart--transfer",
        "path-chart--label",
        "path-chart--bottleneck",
    }
    DEFAULT_CSS = """
    PathChart { height: auto; min-height: 1; }
    PathChart > .path-chart--compute { color: $chart-bytes; }
    PathChart > .path-chart--transfer { color: $chart-transfer; }
    PathChart > .path-chart--label { color: $text-muted; }
    PathChart > .path-chart--bottleneck { color: $error; text-style: bold; }
    """

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.partition = None
        self.message = "no partition selected"
        self._cached: tuple[tuple[object, ...], list[Strip]] | None = None
        self._height = 1  # rows shown: the message's one, or the partition's

    def show(self, partition, message: str = "") -> None:
        self.partition = partition
        self.message = message or "no partition selected"
        self._cached = None
        height, self._height = self._height, 1 if partition is None else len(self._rows())
        # a layout pass only when the height changes: this runs on every keystroke
        self.refresh(layout=self._height != height)

    def _rows(self) -> list[tuple[str, float, str, str]]:
        """(label, ms, detail, kind) in chain order: device, link, device, ..."""
        p = self.partition
        rows = []
        transfers = {}
        for t in p.transfers:
            transfers.setdefault(t.link, []).append(t)
        for i, stage in enumerate(p.stages):
            span = "idle" if stage.start == stage.end else f"[{stage.start},{stage.end})"
            if (
                stage.start != stage.end
                and stage.measured_ms is not None
                and stage.estimated_ms is not None
            ):
                # the two cost models side by side: their gap is a result, not noise
                span += f" m{units.ms(stage.measured_ms)} e{units.ms(stage.estimated_ms)}"
            rows.append(
                (
                    stage.device,
                    stage.compute_ms if stage.start != stage.end else 0.0,
                    span,
                    "compute",
                )
            )
            if i + 1 < len(p.stages):
                link = f"{stage.device}-{p.stages[i + 1].device}"
                moved = transfers.get(link, [])
                ms = sum(t.ms for t in moved)
                detail = (
                    ", ".join(f"X({t.position}) {units.size(int(t.bytes or 0))}" for t in moved)
                    or "nothing sent"
                )
                rows.append(("→ " + p.stages[i + 1].device, ms, detail, "transfer"))
        for t in p.transfers:  # returns to a sink and other flows off the chain order
            if not any(
                t.link == f"{a.device}-{b.device}"
                for a, b in zip(p.stages, p.stages[1:], strict=False)
            ):
                rows.append((f"→ {t.dst}", t.ms, f"X({t.position})", "transfer"))
        if len(rows) > MAX_ROWS:  # many devices: idle ones make room (the table shows them)
            rows = [r for r in rows if not (r[3] == "compute" and r[2] == "idle")]
        return rows

    def get_content_height(self, container, viewport, width: int) -> int:
        return self._height

    def render_line(self, y: int) -> Strip:
        # Drawn as segments, not as a Rich Text laid out by Textual: the chart changes on
        # every keystroke, and the layout cost more than everything else it does.
        lines = self._lines()
        if y < len(lines):
            return lines[y]
        return Strip.blank(self.size.width, self.visual_style.rich_style)

    def _lines(self) -> list[Strip]:
        """The chart's lines for the partition shown, kept until `show`, the size or the
        styles change."""
        base = self.visual_style.rich_style
        styles = {
            kind: self.get_component_rich_style(f"path-chart--{kind}")
            for kind in ("compute", "transfer", "label", "bottleneck")
        }
        key = (self.size.width, base, *styles.values())  # `show` forgets the lines
        if self._cached is not None and self._cached[0] == key:
            return self._cached[1]
        lines = [self._strip(pieces, base) for pieces in self._pieces(styles)]
        self._cached = (key, lines)
        return lines

    def _strip(self, pieces: list[tuple[str, Style | None]], base: Style) -> Strip:
        """One line, cut with an ellipsis where it does not fit (never wrapped)."""
        width = self.size.width
        segments = [Segment(text, base + style if style else base) for text, style in pieces]
        strip = Strip(segments)
        if strip.cell_length > width:
            strip = Strip.join([strip.crop(0, max(0, width - 1)), Strip([Segment("…", base)])])
        return strip.adjust_cell_length(width, base + PAD)

    def _pieces(self, styles: dict[str, Style]) -> list[list[tuple[str, Style | None]]]:
        """Each line as (text, style) pieces."""
        if self.partition is None:
            return [[(self.message, styles["label"])]]
        rows = self._rows()
        top = max((ms for _, ms, _, _ in rows if math.isfinite(ms)), default=0.0)
        label_w = min(16, max(len(r[0]) for r in rows))
        bar_w = max(8, self.size.width - label_w - 10 - 22)
        worst = max(range(len(rows)), key=lambda i: rows[i][1]) if rows else -1
        lines = []
        for i, (label, ms, detail, kind) in enumerate(rows):
            if not math.isfinite(ms):
                value = "     down  "
            elif ms == 0:
                value = "         – "
            else:
                value = f"{ms:9.2f}ms"
            room = max(0, self.size.width - (label_w + 1 + bar_w + 12) - 1)
            if len(detail) > room:  # one line per row: cut the detail, never wrap it
                detail = fit.end(detail, room)
            lines.append(
                [
                    (f"{fit.middle(label, label_w):<{label_w}} ", styles["label"]),
                    (f"{hbar(ms, top, bar_w):<{bar_w}}", styles[kind]),
                    (f" {value}", styles["bottleneck"] if i == worst else None),
                    (f" {detail}", None),
                ]
            )
        return lines
