"""The validation screen: chosen partitions run as a chain, live, then predicted against
measured for each stage, link and the hand-off, side by side as bars, with the error.

Opened from the partitions screen (`v`): the run is the engine's use case
(`backend.usecases.validations`, through the workspace), the one `omdp validate` runs.
Its worker posts messages; the handlers update the table by key and redraw the bars.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.message import Message
from textual.widgets import DataTable, Label, Static

from backend.errors import OmdpError
from backend.solver.ranking import Partition
from backend.usecases.validations import ValidationEvent
from omdp_tui.screens.base import WorkspaceScreen
from omdp_tui.screens.dialogs import ErrorDialog

BAR = 16  # cells per bar: two bars and the numbers fit in 80 columns
FULL, PARTS = "█", " ▏▎▍▌▋▊▉"


@dataclass
class ValidationProgress(Message):
    """An event of the run, from the worker."""

    event: ValidationEvent


@dataclass
class ValidationOver(Message):
    """The run ended; `error` when it could not start at all."""

    error: str | None = None


def bar(value: float, scale: float, width: int = BAR) -> str:
    """A horizontal bar of `value` out of `scale`, in eighths of a cell."""
    eighths = round(max(0.0, min(value / scale, 1.0)) * width * 8) if scale > 0 else 0
    text = FULL * (eighths // 8) + (PARTS[eighths % 8] if eighths % 8 else "")
    return text.ljust(width)


def report_lines(report: dict[str, Any]) -> list[tuple[str, float, float]]:
    """(part, predicted ms, measured ms) per compute stage, link and the hand-off, then the
    end to end, under the cost model that ranked the partition."""
    model = report["cost_model"]
    rows = []
    for s in report["stages"]:
        if s["measured"] is not None:
            rows.append((s["device"], s["predicted"][model] or 0.0, s["measured"]["median"]))
    for h in report["hops"]:
        name = h["link"].replace("-", "→", 1) + (" (lo)" if h["loopback"] else "")
        rows.append((name, h["predicted_ms"], h["measured"]["median"]))
    rows.append(("hand-off", 0.0, report["handoff"]["median"]))
    if report["objective"] == "latency":
        rows.append(("end to end", report["predicted"][model] or 0.0, report["latency"]["median"]))
    return rows


def render_bars(report: dict[str, Any]) -> Text:
    rows = report_lines(report)
    scale = max([max(p, m) for _, p, m in rows] or [1.0])
    out = Text()
    out.append(f"{'':<16} {'predicted ms':<{BAR + 7}} {'measured ms':<{BAR + 7}} error\n", "bold")
    for name, pred, meas in rows:
        err = (pred - meas) / meas * 100 if meas > 0 else None
        out.append(f"{name[:16]:<16} ")
        out.append(bar(pred, scale), "cyan")
        out.append(f"{pred:>6.1f} ")
        out.append(bar(meas, scale), "magenta")
        out.append(f"{meas:>6.1f} ")
        if err is None or name == "hand-off":
            out.append("     –\n")
        else:
            out.append(f"{err:>+5.0f}%\n", "red" if abs(err) > 10 else "green")
    out.append(report.get("verdict", ""), "italic")
    return out


class ValidationScreen(WorkspaceScreen):
    """Partitions run as a chain (`run=True`), or their stored validations shown."""

    NAME = "partitions"  # reached from the partitions screen: its tab stays lit
    DEFAULT_CSS = """
    #validation-status { height: 1; padding: 0 1; color: $text-muted; }
    #validation-table { height: auto; max-height: 7; }
    #validation-bars { height: 1fr; padding: 0 1; }
    """
    BINDINGS: ClassVar = [
        Binding("escape,q", "app.pop_screen", "Back", id="validation.back"),
        Binding("r", "run", "Run again", id="validation.run"),
    ]

    def __init__(self, partitions: list[Partition], run: bool = True, frames: int = 20):
        super().__init__()
        self.partitions = partitions
        self.frames = frames
        self.start_now = run
        self.reports: dict[int, dict[str, Any]] = {}  # rank -> report
        self.running = False

    def compose(self) -> ComposeResult:
        yield from self.compose_title()
        yield Label("", id="validation-status")
        yield DataTable(id="validation-table", cursor_type="row", zebra_stripes=True)
        yield Static("", id="validation-bars")
        yield from self.compose_footer()

    def on_mount(self) -> None:
        table = self.query_one("#validation-table", DataTable)
        for key, label in (
            ("rank", "#"),
            ("cuts", "cuts"),
            ("status", "status"),
            ("pred", "pred."),
            ("meas", "measured"),
            ("err", "error"),
            ("out", "output"),
        ):
            table.add_column(label, key=key)
        for p in self.partitions:
            stored = self.ws.stored_validation(p.cuts)
            table.add_row(
                str(p.rank), ",".join(map(str, p.cuts)), "–", "", "", "", "", key=str(p.rank)
            )
            if stored is not None:
                self._show_report(p.rank, stored, "stored")
        if self.start_now:
            self.action_run()
        else:
            self._status("stored results; r runs the chain again")
        self._redraw()

    def on_screen_resume(self) -> None:  # not a mode of its own: nothing to remember
        pass

    def _status(self, text: str) -> None:
        self.query_one("#validation-status", Label).update(text)

    def action_run(self) -> None:
        if self.running:
            self.notify("a validation is running", severity="warning")
            return
        try:
            plan = self.ws.validation_plan(self.partitions, self.frames)
        except (OmdpError, OSError) as exc:
            self.app.push_screen(ErrorDialog("Cannot validate", str(exc)))
            return
        self.running = True
        n = len(plan.routes)
        self._status(f"running {n} partition{'s' * (n != 1)} as a chain …")
        self._run(plan)

    @work(exclusive=True, group="validation", exit_on_error=False)
    async def _run(self, plan: Any) -> None:
        try:
            await self.ws.validate(plan, lambda e: self.post_message(ValidationProgress(e)))
        except (OmdpError, OSError) as exc:
            self.post_message(ValidationOver(str(exc)))
            return
        self.post_message(ValidationOver())

    @on(ValidationProgress)
    def _progress(self, message: ValidationProgress) -> None:
        e = message.event
        table = self.query_one("#validation-table", DataTable)
        key = str(e.rank)
        if e.phase == "start":
            table.update_cell(key, "status", "starting")
        elif e.phase == "solo":
            table.update_cell(key, "status", "alone")
            self._status(f"#{e.rank}: timing each segment alone, one device at a time")
        elif e.phase == "frames":
            table.update_cell(key, "status", f"{e.done}/{e.total}")
            self._status(f"#{e.rank}: frame {e.done} of {e.total}")
        elif e.phase == "failed":
            table.update_cell(key, "status", Text("failed", "red"))
            self.app.push_screen(ErrorDialog(f"Partition #{e.rank} failed", e.message))
        elif e.phase == "done" and e.validation is not None:
            self._show_report(e.rank, e.validation.to_dict(), "done")
            self._redraw()

    @on(ValidationOver)
    def _over(self, message: ValidationOver) -> None:
        self.running = False
        if message.error:
            self._status("the validation could not run")
            self.app.push_screen(ErrorDialog("Validation failed", message.error))
        else:
            self._status("done: predicted (cyan) against measured (magenta); r runs again")

    def _show_report(self, rank: int, report: dict[str, Any], status: str) -> None:
        self.reports[rank] = report
        table = self.query_one("#validation-table", DataTable)
        key = str(rank)
        model = report["cost_model"]
        err = report["error_pct"].get(model)
        unit = " fps" if report["objective"] == "throughput" else ""
        pred = report["predicted"].get(model)
        table.update_cell(key, "status", status)
        table.update_cell(key, "pred", "–" if pred is None else f"{pred:.1f}{unit}")
        table.update_cell(key, "meas", f"{report['measured_value']:.1f}{unit}")
        table.update_cell(
            key,
            "err",
            Text("–") if err is None else Text(f"{err:+.0f}%", "red" if abs(err) > 10 else "green"),
        )
        ok = report["output"]["ok"]
        table.update_cell(key, "out", Text("ok" if ok else "WRONG", "green" if ok else "red"))

    @on(DataTable.RowHighlighted, "#validation-table")
    def _highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._redraw()

    def _redraw(self) -> None:
        table = self.query_one("#validation-table", DataTable)
        bars = self.query_one("#validation-bars", Static)
        if not table.row_count:
            return
        key = table.coordinate_to_cell_key((table.cursor_row, 0)).row_key.value
        report = self.reports.get(int(key or 0))
        bars.update(render_bars(report) if report else "no result yet for this partition")
