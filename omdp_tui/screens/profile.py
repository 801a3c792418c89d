"""The profile screen: the plan, one progress bar per device, the timings as they arrive.

Profiling is the engine's `backend.profiling.jobs.Profiler` (results committed to the session as
they come). It runs in an async worker that reads its events through `batching.pump`
and posts `ProfileBatch` messages (≤10 a second); the handler applies a batch: the timing
table is updated cell by cell by key (segment row × device column), never rebuilt, and
only the newest progress of each device in a batch is drawn.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from typing import Any, ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import DataTable, Label, ProgressBar, RichLog

from backend import fit, units
from backend.errors import OmdpError
from backend.profiling import jobs, noise
from backend.profiling.plan import PlanItem
from omdp_tui.batching import pump
from omdp_tui.messages import ProfileBatch, ProfileDone
from omdp_tui.screens.base import WorkspaceScreen
from omdp_tui.screens.dialogs import ChoiceDialog, ErrorDialog

TABLE_ROOM = 78  # 80 columns − the vertical scrollbar


def segment_key(a: int, b: int) -> str:
    return f"{a}:{b}"


def timing_cell(
    row: dict[str, Any] | None, planned: bool = True, noisy: bool = False, width: int = 11
) -> Text:
    """'12.3 ±4%': median ms and half the p10–p90 spread relative to it; '74.5 ±135%!'
    when its CI missed the target (noisy); ✗ for an error, · for planned but not measured
    yet, blank when the device does not run it."""
    if row is None:
        return Text("·" if planned else "", justify="right", style="dim")
    if row.get("status") == "error":
        return Text("✗", justify="right", style="bold red")
    med = row.get("median_ms")
    if med is None or med != med:
        return Text("·", justify="right", style="dim")
    p10, p90 = row.get("p10_ms"), row.get("p90_ms")
    spread = (p90 - p10) / 2 / med * 100 if med > 0 and p10 == p10 and p90 == p90 else 0.0
    mark = noise.MARK if noisy else ""
    ms = units.ms(med, width - len(f" ±{spread:.0f}%{mark}"))
    text = f"{ms} ±{spread:.0f}%{mark}"
    if len(text) > width:  # a huge spread: the median and the mark matter more
        text = f"{units.ms(med, width - 1 - len(mark))}±{mark}"
    return Text(text, justify="right", style="bold yellow" if noisy else "")


class ProfileScreen(WorkspaceScreen):
    NAME = "profile"
    BINDINGS: ClassVar = [
        Binding(
            "s",
            "start",
            "Start",
            id="profile.start",
            tooltip="profile what is missing (results are saved as they arrive)",
        ),
        Binding(
            "p",
            "pause",
            "Pause/resume",
            id="profile.pause",
            tooltip="pause or resume (agents finish their current segment)",
        ),
        Binding(
            "x",
            "cancel",
            "Cancel",
            id="profile.cancel",
            tooltip="cancel: what is measured stays in the session",
        ),
        Binding(
            "r",
            "remeasure",
            "Re-measure",
            id="profile.remeasure",
            tooltip="measure again: this cell, its segment, its device, all noisy or all throttled",
        ),
        Binding(
            "l",
            "focus_log",
            "Log",
            id="profile.log",
            tooltip="open the log (Esc goes back to the table)",
        ),
        Binding(
            "escape",
            "focus_table",
            "Table",
            show=False,
            id="profile.table",
            tooltip="back to the table",
        ),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.profiler: jobs.Profiler | None = None  # while a run is going
        self.paused = False
        self.base: dict[str, int] = {}  # per device: plan items measured before this run
        self.cell_w = 11  # a timing cell's width (set with the table's columns)
        self.etas: dict[str, float] = {}  # per device, its newest ETA while a run goes
        self._chain: list[str] = []  # the devices the progress rows were built for
        self._contradicted: set[tuple[str, int, int]] = set()  # cells shown as contradicted

    def compose(self) -> ComposeResult:
        yield from self.compose_title()
        yield Label("", id="plan-summary")
        with Vertical(id="progress-box"):
            for i, device in enumerate(self.ws.devices):
                with Horizontal(classes="progress-row"):
                    yield Label(fit.middle(device, 10), classes="progress-name")
                    yield ProgressBar(id=f"bar-{i}", show_eta=False, show_percentage=False)
                    yield Label("", id=f"state-{i}", classes="progress-state")
        yield DataTable(id="timing-table", cursor_type="cell", zebra_stripes=True)
        yield RichLog(id="profile-log", max_lines=500, wrap=True, markup=False)
        yield from self.compose_footer()

    def on_mount(self) -> None:
        self._chain = list(self.ws.devices)
        self._build_table()
        self._show_plan()
        self.log_line(
            "s profiles what is missing (results are saved as they arrive); p pauses, x cancels",
            "dim",
        )
        self.query_one("#timing-table", DataTable).focus()

    def on_screen_resume(self) -> None:
        super().on_screen_resume()
        if self.profiler is None:
            if self.ws.devices != self._chain:  # devices added/removed: new progress rows
                self.app.call_later(self.recompose_for_chain)
                return
            self._build_table()  # candidates or devices may have changed elsewhere
            self._show_plan()

    async def recompose_for_chain(self) -> None:
        await self.recompose()
        self.on_mount()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        running = self.profiler is not None
        if action in ("pause", "cancel"):
            return running
        if action in ("start", "remeasure"):
            return not running
        return True

    # -- plan and table --------------------------------------------------------------------

    def _build_table(self) -> None:
        """One row per planned segment, one column per device; cells fill in as results
        arrive (segments a device does not run stay blank)."""
        table = self.query_one("#timing-table", DataTable)
        table.clear(columns=True)
        n = self.ws.analysis.n
        seg_w = max(7, len(f"[{n - 1},{n})"))
        table.add_column("segment", key="segment", width=seg_w)
        cell_w = max(11, min(14, (TABLE_ROOM - seg_w - 2) // max(1, len(self.ws.devices)) - 2))
        short = fit.abbreviations(self.ws.devices, cell_w)
        self.cell_w = cell_w
        for d, device in enumerate(self.ws.devices):
            table.add_column(Text(short[device], justify="right"), key=f"d{d}", width=cell_w)
        plan = self.ws.plan()
        planned = {(it.device, it.start, it.end) for it in plan}
        results = self.ws.results()
        self._contradicted = {k for k, r in results.items() if r["contradicts"] is not None}
        self.ws.current_instance()  # the noisy set, up to date
        for a, b in sorted({(it.start, it.end) for it in plan}):
            cells: list[Any] = [f"[{a},{b})"]
            for device in self.ws.devices:
                key = (device, a, b)
                cells.append(self._cell(results.get(key), key in planned, key))
            table.add_row(*cells, key=segment_key(a, b))

    def _cell(self, row: dict[str, Any] | None, planned: bool, key: tuple[str, int, int]) -> Text:
        suspect = row is not None and (bool(row["noisy"]) or key in self.ws.throttled)
        return timing_cell(row, planned, suspect, self.cell_w)

    def _show_plan(self) -> None:
        ws = self.ws
        plan = ws.plan()
        missing = ws.missing()
        parts = " · ".join(f"{d} {sum(it.device == d for it in plan)}" for d in ws.devices)
        text = (
            f"Plan: {len(ws.candidates)} candidates → {parts} segments; "
            f"{len(plan) - len(missing)}/{len(plan)} measured"
        )
        if not ws.candidates:
            text = (
                f"Plan: no candidates yet, so only the whole model ({len(plan)} segment"
                f"{'s' * (len(plan) != 1)}) — mark split points on the Graph screen (1, then "
                "m or a)"
            )
        if missing and self.profiler is None:
            text += f"; ~{units.duration(ws.estimate_seconds(missing))} to go (s starts)"
        elif self.profiler is not None and self.etas:
            # refined live: each device's ETA from its own pace so far
            text += f"; ~{units.duration(max(self.etas.values()))} left"
        self.query_one("#plan-summary", Label).update(text)
        for i, device in enumerate(ws.devices):
            total = sum(it.device == device for it in plan)
            done = total - sum(it.device == device for it in missing)
            if self.profiler is None:
                self.query_one(f"#bar-{i}", ProgressBar).update(total=max(1, total), progress=done)
                state = "done" if done == total else f"{done}/{total}"
                self.query_one(f"#state-{i}", Label).update(state)

    def log_line(self, text: str, style: str = "") -> None:
        self.query_one(RichLog).write(Text(text, style=style))

    # -- running ---------------------------------------------------------------------------

    def action_start(self) -> None:
        ws = self.ws
        if not ws.candidates:
            self.notify(
                "no candidates: pick split points on the graph screen (1, then a or m)",
                severity="warning",
            )
            return
        events: asyncio.Queue[jobs.JobEvent] = asyncio.Queue()
        try:
            run = ws.plan_run()
            profiler = None if run.nothing_to_do else run.profiler(on_event=events.put_nowait)
        except (OmdpError, OSError, ValueError, sqlite3.Error) as exc:
            self.app.push_screen(ErrorDialog("Cannot start profiling", str(exc)))
            return
        if profiler is None:
            self.notify("everything in the plan is measured: see the partitions screen (4)")
            return
        todo = run.todo
        self.etas = {}
        self.profiler = profiler
        ws.profiling = True
        self.paused = False
        self.base = {
            d: sum(it.device == d for it in run.plan.items) - sum(it.device == d for it in todo)
            for d in ws.devices
        }
        self.log_line(
            f"profiling {len(todo)} segments on {len(ws.devices)} devices"
            + (" (+ per-node times)" if run.needs_node_times else "")
        )
        self._show_plan()
        for device, first in ws.cpu_waits().items():
            total = sum(it.device == device for it in run.plan.items)
            self._set_state(
                device,
                f"{self.base.get(device, 0)}/{total} waiting for "
                + " and ".join(first)
                + " (same CPUs)",
            )
        self.refresh_bindings()
        self._profile(profiler, todo, events)

    @work(exclusive=True, group="profile", exit_on_error=False)
    async def _profile(
        self, profiler: jobs.Profiler, todo: list[PlanItem], events: asyncio.Queue[jobs.JobEvent]
    ) -> None:
        async def stream() -> AsyncIterator[jobs.JobEvent]:
            while True:
                event = await events.get()
                yield event
                if isinstance(event, jobs.RunFinished):
                    return

        post = lambda batch: self.post_message(ProfileBatch(batch))  # noqa: E731
        reader = asyncio.ensure_future(pump(stream(), post))
        try:
            summary = await self.ws.run(profiler, todo)
            await reader
        except Exception as exc:  # the run broke: what was measured is in the session
            reader.cancel()
            self.post_message(ProfileDone("failed", f"{type(exc).__name__}: {exc}"))
            return
        state = "cancelled" if summary.stopped else "finished"
        self.post_message(ProfileDone(state, None, summary))

    @on(ProfileBatch)
    def _apply(self, message: ProfileBatch) -> None:
        table = self.query_one("#timing-table", DataTable)
        latest: dict[str, jobs.Progress] = {}
        measured: list[jobs.Measured] = []
        for event in message.events:
            if isinstance(event, jobs.Progress):
                latest[event.device] = event  # only the newest one per device is drawn
            elif isinstance(event, jobs.Measured):
                measured.append(event)
                if event.status == "error":
                    a, b = event.segment
                    self.log_line(f"{event.device} [{a},{b}): {event.message}", "bold red")
            elif isinstance(event, jobs.DeviceStarted):
                v = event.versions
                rt = ", ".join(f"{k} {v[k]}" for k in ("onnxruntime", "openvino") if v.get(k))
                self.log_line(f"{event.device}: agent ready ({rt}), {event.total} to measure")
            elif isinstance(event, jobs.Notice):
                self.log_line(f"{event.device}: {event.message}", "yellow")
            elif isinstance(event, jobs.DeviceFailed):
                self.log_line(f"{event.device} failed: {event.message}", "bold red")
                self.notify(
                    event.message, title=f"{event.device} failed", severity="error", timeout=10
                )
                self._set_state(event.device, "failed")
            elif isinstance(event, jobs.DeviceFinished):
                state = "stopped" if event.stopped else "done"
                self.log_line(
                    f"{event.device}: {state}, {event.done - event.errors} measured,"
                    f" {event.errors} errors in {event.seconds:.1f} s"
                )
                self._set_state(event.device, state)
        if measured:
            self.ws.measurements_changed()
            self._show_plan()
            rows = self.ws.results()  # one read per batch for the spreads
            contradicted = {k for k, r in rows.items() if r["contradicts"] is not None}
            # the new cells, and earlier ones a new result contradicts (or no longer does)
            cells = {(e.device, *e.segment) for e in measured} | (contradicted ^ self._contradicted)
            self._contradicted = contradicted
            for cell in cells:
                key = segment_key(*cell[1:])
                if key in table.rows and cell[0] in self.ws.devices:
                    col = f"d{self.ws.devices.index(cell[0])}"
                    table.update_cell(key, col, self._cell(rows.get(cell), True, cell))
        for progress in latest.values():
            self._draw_progress(progress)
            if progress.eta_s is not None:
                self.etas[progress.device] = progress.eta_s
        if latest:
            self._show_plan()

    def _draw_progress(self, p: jobs.Progress) -> None:
        if p.device not in self.ws.devices:
            return
        i = self.ws.devices.index(p.device)
        base = self.base.get(p.device, 0)
        self.query_one(f"#bar-{i}", ProgressBar).update(
            total=max(1, base + p.total), progress=base + p.done
        )
        if self.paused:
            self._set_state(p.device, f"{base + p.done}/{base + p.total} paused")
            return
        seg = f"[{p.segment[0]},{p.segment[1]})" if p.segment else p.phase
        self._set_state(
            p.device, f"{base + p.done}/{base + p.total} ETA {units.duration(p.eta_s)} {seg}"
        )

    def _set_state(self, device: str, text: str) -> None:
        if device in self.ws.devices:
            self.query_one(f"#state-{self.ws.devices.index(device)}", Label).update(text)

    @on(ProfileDone)
    def _done(self, message: ProfileDone) -> None:
        self.profiler = None
        self.ws.profiling = False
        self.ws.measurements_changed()
        self.refresh_bindings()
        if message.error:
            self.log_line(f"profiling failed: {message.error}", "bold red")
            self.notify(message.error, title="Profiling failed", severity="error", timeout=10)
        else:
            summary = message.summary
            failed = f"; failed: {', '.join(summary.failed)}" if summary and summary.failed else ""
            self.log_line(f"profiling {message.state}{failed}")
            self.notify(f"profiling {message.state}: the partitions screen (4) ranks them")
        self._show_plan()

    def action_pause(self) -> None:
        profiler = self.profiler
        if profiler is None:
            return
        self.paused = not self.paused
        if self.paused:
            profiler.pause()
            self.log_line("pausing: agents finish their current segment, then wait")
        else:
            profiler.resume()
            self.log_line("resumed")

    def action_cancel(self) -> None:
        if self.profiler is not None:
            self.profiler.cancel()
            self.log_line("cancelling: what is measured stays in the session")

    # -- re-measuring ------------------------------------------------------------------------

    def _highlighted_cell(self) -> tuple[str | None, tuple[int, int] | None]:
        """(device, segment) under the cursor (device None on the segment column)."""
        table = self.query_one("#timing-table", DataTable)
        if table.row_count == 0:
            return None, None
        keys = table.coordinate_to_cell_key(table.cursor_coordinate)
        a, b = (int(x) for x in str(keys.row_key.value).split(":"))
        col = str(keys.column_key.value)
        device = self.ws.devices[int(col[1:])] if col.startswith("d") else None
        return device, (a, b)

    def action_remeasure(self) -> None:
        """Offer the highlighted cell, its segment on every device, its device, or every
        noisy measurement; the choice is measured again at once (earlier results stay
        in the session's history)."""
        from backend.usecases.remeasure import Target

        self.ws.current_instance()
        device, seg = self._highlighted_cell()
        results = self.ws.results()
        choices: list[tuple[str, Target, str]] = []
        if device and seg and (device, *seg) in results:
            choices.append(
                ("cell", Target("cell", device, seg), f"this cell: {device} [{seg[0]},{seg[1]})")
            )
        if seg:
            choices.append(
                (
                    "segment",
                    Target("segment", None, seg),
                    f"segment [{seg[0]},{seg[1]}) on every device",
                )
            )
        if device:
            choices.append(("device", Target("device", device), f"every segment on {device}"))
        n = len(self.ws.noisy)
        choices.append(("noisy", Target("noisy"), f"all noisy measurements ({n})"))
        if self.ws.throttled:
            n = len(self.ws.throttled)
            choices.append(
                ("throttled", Target("throttled"), f"all timed on a throttled CPU ({n})")
            )
        targets = {key: target for key, target, _ in choices}

        def chosen(key: str | None) -> None:
            if key is None:
                return
            try:
                items = self.ws.remeasure(targets[key])
            except (OmdpError, sqlite3.Error) as exc:
                self.app.push_screen(ErrorDialog("Cannot re-measure", str(exc)))
                return
            if not items:
                self.notify(
                    f"nothing to re-measure: {targets[key].nothing()}",
                    severity="warning",
                )
                return
            self.log_line(
                f"re-measuring {len(items)}: {targets[key].describe()} "
                "(earlier results kept in the history)"
            )
            self._build_table()
            self._show_plan()
            self.action_start()

        self.app.push_screen(
            ChoiceDialog(
                "Measure again",
                [(key, label) for key, _, label in choices],
                f"{noise.MARK} marks a noisy result (its CI missed the "
                f"{self.ws.noise_target * 100:g}% target, or another result contradicts it) "
                "or one timed while its device throttled",
            ),
            chosen,
        )

    def action_focus_log(self) -> None:
        """Open the log over most of the screen (Esc or l gives the table its room back)."""
        if self.has_class("-log-open"):
            self.action_focus_table()
            return
        self.add_class("-log-open")
        log = self.query_one(RichLog)
        log.border_title = "log · Esc or l returns to the table"
        log.focus()
        log.scroll_end(animate=False)

    def action_focus_table(self) -> None:
        self.remove_class("-log-open")
        self.query_one(RichLog).border_title = ""
        self.query_one("#timing-table", DataTable).focus()
