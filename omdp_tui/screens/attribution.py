"""Attribution view (from the partitions screen, `a`; `n`/`p` or →/← change device):
per device, each block between consecutive candidates with its Shapley share of the
measured times beside its layer sum (where fusion saves time, where it costs), and what
cutting at the block's end adds. The numbers are the engine's (`usecases.attribution`,
via the workspace)."""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Label

from backend.errors import OmdpError
from backend.usecases.attribution import DeviceAttribution, SessionAttribution
from omdp_tui.screens.base import WorkspaceScreen
from omdp_tui.widgets.title_bar import TitleBar

BAR_WIDTH = 12


def _bar(value: float, top: float) -> str:
    """A share as a bar of up to BAR_WIDTH eighths-resolution cells."""
    if top <= 0 or value <= 0:
        return ""
    eighths = round(BAR_WIDTH * 8 * min(value / top, 1.0))
    return "█" * (eighths // 8) + ("▏▎▍▌▋▊▉"[eighths % 8 - 1] if eighths % 8 else "")


def _signed(value: float | None) -> str:
    return "–" if value is None else f"{value:+.2f}"


class AttributionScreen(WorkspaceScreen):
    """Pushed over the partitions screen: escape goes back to it."""

    NAME = "partitions"  # a view of the partitions screen (its tab stays highlighted)
    DEFAULT_CSS = """
    AttributionScreen #attr-head { height: auto; max-height: 2; width: 100%; }
    AttributionScreen #attr-table { height: 1fr; }
    AttributionScreen #attr-note { height: auto; color: $text-muted; }
    """
    BINDINGS: ClassVar = [
        Binding("n,right", "device(1)", "Next device", key_display="n", id="attribution.next"),
        Binding("p,left", "device(-1)", "Previous", key_display="p", id="attribution.previous"),
        Binding("escape", "app.pop_screen", "Back", id="attribution.back"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.found: SessionAttribution | None = None
        self.index = 0

    def compose(self) -> ComposeResult:
        yield TitleBar(self.NAME, self.ws.title)
        yield Label("", id="attr-head")
        yield DataTable(id="attr-table", cursor_type="row", zebra_stripes=True)
        yield Label("", id="attr-note")
        yield from self.compose_footer()

    def on_mount(self) -> None:
        table = self.query_one("#attr-table", DataTable)
        table.add_column("block", key="block", width=11)
        for key, title in (("share", "share"), ("sum", "layer-sum"), ("diff", "share−sum")):
            table.add_column(Text(title, justify="right"), key=key, width=9)
        table.add_column("", key="bar", width=BAR_WIDTH)
        table.add_column(Text("cut +ms", justify="right"), key="cut", width=9)
        try:
            self.found = self.ws.attribution()
        except OmdpError as exc:
            self.query_one("#attr-head", Label).update(f"no attribution: {exc}")
            return
        names = [d.device for d in self.found.devices]
        last = self.ws.get_ui("attribution.device")
        self.index = names.index(last) if last in names else 0
        self.show()
        table.focus()

    def on_screen_resume(self) -> None:  # a pushed view: the session resumes on its screen
        self.query_one(TitleBar).info = self.ws.title

    def action_device(self, step: int) -> None:
        if self.found is None or not self.found.devices:
            return
        self.index = (self.index + step) % len(self.found.devices)
        self.ws.set_ui("attribution.device", self.found.devices[self.index].device)
        self.show()

    def show(self) -> None:
        found = self.found
        head = self.query_one("#attr-head", Label)
        note = self.query_one("#attr-note", Label)
        table = self.query_one("#attr-table", DataTable)
        table.clear()
        if found is None or not found.devices:
            why = found.skipped if found else {}
            skipped = "; ".join(f"{d}: {reason}" for d, reason in why.items())
            head.update(f"nothing to attribute yet. {skipped}")
            note.update("")
            return
        dev = found.devices[self.index]
        head.update(self._head(dev, len(found.devices)))
        top = max((b.share_ms for b in dev.blocks), default=0.0)
        for b in dev.blocks:
            cut = _signed(b.cut_overhead_ms) + ("~" if b.cut_estimated else "")
            table.add_row(
                f"[{b.start},{b.end})",
                Text(f"{b.share_ms:.2f}", justify="right"),
                Text(f"{b.layer_sum_ms:.2f}", justify="right"),
                Text(_signed(b.share_ms - b.layer_sum_ms), justify="right"),
                _bar(b.share_ms, top),
                Text(cut, justify="right"),
                key=f"{b.start}:{b.end}",
            )
        text = "share−sum < 0: fusion saves time · cut +ms: what a cut at the block's end adds"
        if not dev.layer_sums_meaningful and dev.node_cover is not None:
            text = (
                f"per-node times add up to {100 * dev.node_cover:.0f}% of the whole model: "
                "layer sums are not meaningful on this device — profile it again\n" + text
            )
        if any(b.cut_estimated for b in dev.blocks):
            text += "\n~: from a run not measured on this device (estimated)"
        note.update(text)

    def _head(self, dev: DeviceAttribution, count: int) -> str:
        how = "exact" if dev.exact else f"sampled ±{max(b.error_ms or 0 for b in dev.blocks):.2f}"
        whole = "measured" if dev.whole_measured else "estimated"
        return (
            f"{dev.device} ({self.index + 1}/{count}) · {how} Shapley shares of "
            f"{dev.whole_ms:.2f} ms ({whole}) · {dev.runs_measured}/{dev.runs} runs measured"
        )
