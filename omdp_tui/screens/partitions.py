"""The partitions screen: type link conditions, see the K best partitions re-ranked at once.

Re-ranking is the engine's `Ranker.rank` (~1 ms): the screen calls it on every valid
keystroke in a bandwidth/latency/K field and on every option change, then refills the
top-K table (K rows) and the bar chart of the highlighted partition.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.coordinate import Coordinate
from textual.reactive import var
from textual.timer import Timer
from textual.widgets import DataTable, Input, Label

from backend import fit, units
from backend.errors import OmdpError
from backend.profiling import noise
from backend.solver.costs import COST_MODELS, OBJECTIVES
from backend.solver.partition import Stage
from backend.solver.ranking import Partition, Ranking
from omdp_tui.messages import TraceLoaded
from omdp_tui.screens.base import WorkspaceScreen
from omdp_tui.screens.dialogs import ErrorDialog, TextPrompt
from omdp_tui.screens.form import Field, FormDialog
from omdp_tui.screens.map import MapScreen
from omdp_tui.screens.memory import limits_from, memory_dialog, memory_note
from omdp_tui.widgets.fast_table import FastTable
from omdp_tui.widgets.path_chart import PathChart
from omdp_tui.widgets.step_input import StepInput
from omdp_tui.widgets.trace_bar import TraceBar
from omdp_tui.workspace import LinkSetting, Playback, TraceInputs, load_trace

PLAY_INTERVAL_S = 0.2  # one trace step per tick while playing

MAX_BANDWIDTH = 100_000.0  # Mbit/s
MAX_LATENCY = 10_000.0  # ms
MAX_K = 100


TABLE_ROOM = 78  # 80 columns − the vertical scrollbar
PADDING = 2  # each column's cell padding
MS_W = 7  # a time column: '1,234.5' never needs more (units.ms shrinks to fit)
STAGE_MS_W = 5  # a device's compute time beside its segment: '324.0', '1234'
MIN_BOTTLENECK = 9


@dataclass(frozen=True)
class TopKLayout:
    """How the top-K table fits its room: one column per device (its segment, and its
    compute time when there is room), the bottleneck when there is room (the chart
    below always names it), device names abbreviated the same way everywhere."""

    device_w: int
    with_ms: bool
    bottleneck_w: int  # 0: no bottleneck column
    short: dict[str, str]  # device → its name in headers and cells

    @property
    def abbreviated(self) -> bool:
        return any(k != v for k, v in self.short.items())


def topk_layout(devices: list[str], n: int, room: int = TABLE_ROOM) -> TopKLayout:
    seg_w = len(f"[{n - 1},{n})")  # the widest segment text
    fixed = 3 + MS_W + 6 + PADDING * 3  # rank (and its noisy mark), total, xfer
    d = max(1, len(devices))
    longest = max((len(x) for x in devices), default=1)
    for with_ms in (True, False):
        cell = seg_w + (1 + STAGE_MS_W if with_ms else 0)
        device_w = max(cell, min(longest, cell + 3))
        left = room - fixed - d * (device_w + PADDING)
        if left - PADDING >= MIN_BOTTLENECK or (not with_ms and left >= 0):
            bottleneck_w = left - PADDING if left - PADDING >= MIN_BOTTLENECK else 0
            return TopKLayout(device_w, with_ms, bottleneck_w, fit.abbreviations(devices, device_w))
    device_w = max(3, (room - fixed) // d - PADDING)  # many devices: give what there is
    return TopKLayout(device_w, False, 0, fit.abbreviations(devices, device_w))


def _segment(stage: Stage) -> str:
    return "–" if stage.empty else f"[{stage.start},{stage.end})"


def _short_stage(name: str, short: dict[str, str]) -> str:
    """'compute phone' → 'phone', 'link glasses-phone' → 'glasses→phone' (abbreviated)."""
    if name.startswith("compute "):
        device = name[len("compute ") :]
        return short.get(device, device)
    if name.startswith("link "):
        link = name[len("link ") :]
        for a, b in itertools.pairwise(short):
            if link == f"{a}-{b}":
                return f"{short[a]}→{short[b]}"
        return link.replace("-", "→", 1)
    return name


def _same(a: float, b: float) -> bool:
    return abs(a - b) <= 1e-6 * max(1.0, abs(a), abs(b))


def _ms_text(value: float | None, width: int | None = None) -> str:
    return units.ms(value, width)


def _suspect_note(suspect: list[tuple[Stage, str]]) -> str:
    """'! uses a noisy measurement: glasses [0,24) — r …', saying which kind when mixed."""
    if not suspect:
        return ""
    kinds = {kind for _, kind in suspect}
    what = f"a {kinds.pop()} measurement" if len(kinds) == 1 else "measurements not to trust"
    names = [
        f"{s.device} [{s.start},{s.end})" + (f" {kind}" if what.endswith("trust") else "")
        for s, kind in suspect
    ]
    shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
    return f"{noise.MARK} uses {what}: {shown} — r on the profile screen (3) measures it again"


def _estimate_mark(stand_in: bool) -> str:
    """'~' before a time that stands in for a segment not measured yet."""
    return "~" if stand_in else ""


def _cell(text: str, right: bool) -> Text:
    return Text(text, justify="right" if right else "left")


class LinkField(StepInput):
    """The bandwidth or latency field of one link: it knows which link and which value."""

    def __init__(
        self, link: str, quantity: str, value: float, lo: float, hi: float, **kwargs: Any
    ) -> None:
        self.link = link
        self.quantity = quantity  # "bandwidth" | "latency"
        super().__init__(value, lo, hi, what=quantity, **kwargs)


class PartitionsScreen(WorkspaceScreen):
    NAME = "partitions"
    BINDINGS: ClassVar = [
        Binding(
            "c",
            "cycle_cost_model",
            "Cost",
            id="partitions.cost_model",
            tooltip="cost model: measured segment times or estimated from per-node times",
        ),
        Binding(
            "o",
            "cycle_objective",
            "Objective",
            id="partitions.objective",
            tooltip="objective: latency (sum of stages) or throughput (slowest stage)",
        ),
        Binding(
            "b",
            "focus_links",
            "Links",
            id="partitions.links",
            tooltip="edit link values (↑/↓ step ×1.25, shift ×2)",
        ),
        Binding("k", "focus_k", "K", id="partitions.k", tooltip="how many partitions to rank (K)"),
        Binding(
            "u",
            "adopt_measured",
            "Use measured",
            id="partitions.adopt_measured",
            tooltip="rank with the measured link values (where measured) instead of the typed",
        ),
        Binding(
            "m",
            "measure_missing",
            "Measure ~",
            id="partitions.measure",
            tooltip="profile just the segments standing in with estimates (~)",
        ),
        Binding(
            "a",
            "attribution",
            "Shares",
            id="partitions.attribution",
            tooltip="each block's Shapley share of the measured times, per device",
        ),
        Binding(
            "w",
            "map",
            "Map",
            show=False,
            id="partitions.map",
            tooltip="the bandwidth map: where each partition wins over two links' ranges",
        ),
        Binding(
            "v",
            "validate",
            "Validate",
            show=False,
            id="partitions.validate",
            tooltip="run the highlighted partition as a chain: measured beside predicted",
        ),
        Binding(
            "V",
            "validate_all",
            "Validate top K",
            show=False,
            id="partitions.validate_all",
            tooltip="run every ranked partition as a chain",
        ),
        Binding(
            "M",
            "memory_limits",
            "Memory",
            show=False,
            id="partitions.memory",
            tooltip="memory limits per device: segments that do not fit are not ranked",
        ),
        Binding(
            "e",
            "export",
            "Export",
            id="partitions.export",
            tooltip="export the highlighted partition (JSON)",
        ),
        Binding(
            "t",
            "load_trace",
            "Trace",
            id="partitions.trace_load",
            tooltip="replay a bandwidth trace on one link",
        ),
        Binding(
            "p", "play", "Play/pause", id="partitions.trace_play", tooltip="play or pause the trace"
        ),
        Binding(
            "left_square_bracket",
            "trace_step(-1)",
            "Step back",
            key_display="[",
            id="partitions.trace_back",
            tooltip="one trace step back",
        ),
        Binding(
            "right_square_bracket",
            "trace_step(1)",
            "Step",
            key_display="]",
            id="partitions.trace_next",
            tooltip="one trace step on",
        ),
        Binding(
            "r",
            "robust",
            "Robust",
            id="partitions.robust",
            tooltip="highlight the robust choice over the whole trace",
        ),
        Binding(
            "x",
            "close_trace",
            "End trace",
            id="partitions.trace_close",
            tooltip="end the trace replay",
        ),
        Binding(
            "escape",
            "focus_table",
            "Table",
            show=False,
            id="partitions.table",
            tooltip="back to the table",
        ),
    ]

    # Shown in the option row; a label is updated only when its text changes (an update
    # costs a layout pass), which is what a var's watcher gives.
    mode_text: var[str] = var("", init=False)
    status_text: var[str | Text] = var("", init=False)
    noise_text: var[str] = var("", init=False)

    def __init__(self) -> None:
        super().__init__()
        self.playback: Playback | None = None  # the trace being replayed
        self.partitions: list[Partition] = []  # the ranking shown, best first
        self.row_cuts: list[str] = []  # each row's cuts ("3,7")
        self.topk = TopKLayout(7, False, 0, {})  # set on mount, for the chain
        self._shown: list[list[tuple[str, bool]]] = []  # each row's cells as shown
        self._timer: Timer | None = None  # playback ticks
        self._trace_gen = 0  # the newest trace replay asked for
        self.stand_ins = False  # some row shown stands in estimates for missing segments
        self._invalid: set[StepInput] = set()  # fields whose text is not a valid value now

    def watch_mode_text(self, text: str) -> None:
        self.query_one("#rank-mode", Label).update(text)

    def watch_status_text(self, text: str | Text) -> None:
        self.query_one("#rank-status", Label).update(text)

    def watch_noise_text(self, text: str) -> None:
        label = self.query_one("#noise-note", Label)
        label.update(text)
        label.display = bool(text)

    def compose(self) -> ComposeResult:
        yield from self.compose_title()
        with Vertical(id="links-box"):
            for i, link in enumerate(self.ws.links):
                with Horizontal(classes="link-row"):
                    yield Label(self._link_label(link.name), classes="link-name")
                    yield LinkField(
                        link.name,
                        "bandwidth",
                        link.bandwidth_mbps,
                        0.01,
                        MAX_BANDWIDTH,
                        id=f"bw-{i}",
                        classes="link-bw",
                        on_step=self._apply_field,
                    )
                    yield Label("Mbit/s", classes="unit")
                    yield LinkField(
                        link.name,
                        "latency",
                        link.latency_ms,
                        0.0,
                        MAX_LATENCY,
                        id=f"lat-{i}",
                        classes="link-lat",
                        on_step=self._apply_field,
                    )
                    yield Label("ms", classes="unit")
                    yield Label(self._measured(link), classes="link-measured")
        with Horizontal(id="rank-options"):
            yield Label("K", classes="unit")
            yield StepInput(
                self.ws.k, 1, MAX_K, integer=True, what="K", id="rank-k", on_step=self._apply_field
            )
            yield Label("", id="rank-mode")
            yield Label("", id="rank-status")
        yield FastTable(id="topk-table", cursor_type="row", zebra_stripes=True)
        yield Label("", id="device-legend")
        yield Label("", id="noise-note")
        yield PathChart(id="path-chart")
        yield TraceBar(id="trace-bar")
        yield from self.compose_footer()

    def _link_label(self, name: str) -> str:
        """'glasses→phone', with the devices abbreviated to fit the 16-cell label."""
        devices = self.ws.devices
        for a, b in itertools.pairwise(devices):
            if name == f"{a}-{b}":
                short = fit.abbreviations(devices, 7)
                whole = f"{a}→{b}"
                return whole if len(whole) <= 16 else f"{short[a]}→{short[b]}"
        return fit.middle(name, 16)

    @staticmethod
    def _measured(link: LinkSetting) -> str:
        """What was measured, and whether the ranking uses it ('= in use') or the typed
        values (m adopts the measured ones)."""
        if link.measured_bandwidth_mbps is None:
            return "measured: – (l on screen 2)"
        lat = ""
        if link.measured_latency_ms is not None:
            lat = f" {units.ms_unit(link.measured_latency_ms)}"
        used = _same(link.bandwidth_mbps, link.measured_bandwidth_mbps) and (
            link.measured_latency_ms is None or _same(link.latency_ms, link.measured_latency_ms)
        )
        mark = "= in use" if used else "u uses"
        return f"{mark}: {units.mbps(link.measured_bandwidth_mbps)}{lat}"

    def _refresh_measured(self) -> None:
        for label, link in zip(self.query(".link-measured"), self.ws.links, strict=False):
            assert isinstance(label, Label)
            text = self._measured(link)
            if str(label.content) != text:  # an update costs a layout pass: only on change
                label.update(text)

    def action_adopt_measured(self) -> None:
        if not any(x.measured_bandwidth_mbps is not None for x in self.ws.links):
            self.notify(
                "no measured links yet: l on the devices screen (2) measures them",
                severity="warning",
            )
            return
        changed = self.ws.adopt_measured_links()
        for i, link in enumerate(self.ws.links):
            bw = self.query_one(f"#bw-{i}", StepInput)
            lat = self.query_one(f"#lat-{i}", StepInput)
            with bw.prevent(Input.Changed), lat.prevent(Input.Changed):
                bw.value = units.fixed(link.bandwidth_mbps, 4, True)
                lat.value = units.fixed(link.latency_ms, 4, True)
        self._refresh_measured()
        self.rerank()
        self._reanalyse_trace()
        self.notify(
            f"ranking with measured values on {', '.join(changed)}"
            if changed
            else "the measured values are already in use"
        )

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Playback keys exist only while a trace is loaded (keeps the footer short)."""
        if action in ("play", "trace_step", "robust", "close_trace"):
            return self.playback is not None
        if action == "measure_missing":
            return self.stand_ins
        return True

    def on_mount(self) -> None:
        table = self.query_one("#topk-table", DataTable)
        lay = self.topk = topk_layout(self.ws.devices, self.ws.analysis.n)
        table.add_column("#", key="rank", width=3)
        table.add_column(Text("total", justify="right"), key="total", width=MS_W)
        for d, name in enumerate(self.ws.devices):
            table.add_column(Text(lay.short[name]), key=f"dev{d}", width=lay.device_w)
        table.add_column(Text("xfer", justify="right"), key="xfer", width=6)
        if lay.bottleneck_w:
            table.add_column("bottleneck", key="bottleneck", width=lay.bottleneck_w)
        legend = self.query_one("#device-legend", Label)
        legend.display = lay.abbreviated
        legend.update("devices: " + " → ".join(self.ws.devices))
        self.rerank()
        table.focus()

    def on_screen_resume(self) -> None:
        super().on_screen_resume()
        self.rerank()  # measurements may have arrived while another screen was shown

    # -- ranking ---------------------------------------------------------------------------

    def rerank(self) -> None:
        """Rank with the current fields and show the result (called on every change)."""
        ws = self.ws
        self.mode_text = self._mode_text()
        chart = self.query_one(PathChart)
        table = self.query_one("#topk-table", DataTable)
        instance = ws.current_instance()
        if instance is None:
            table.clear()
            self._shown = []
            self.status_text = ""
            chart.show(None, ws.empty_reason())
            return
        if not instance.has_cost_model(ws.cost_model):
            ws.set_ranking_options(cost_model="measured")
            self.notify(
                f"no {ws.cost_model} times in this session: ranking by measured times",
                severity="warning",
            )
            self.mode_text = self._mode_text()
        playback = self.playback
        try:
            ranking = ws.rank(playback.bandwidths() if playback else None)
        except Exception as exc:  # an engine error must reach the user, not crash the app
            self.status_text = ""
            chart.show(None, f"cannot rank: {exc}")
            return
        self._fill(ranking)
        shown = f"{len(ranking) if ranking is not None else 0} of ≤{ws.k}"
        done, total = ws.progress()
        status = shown if done == total else f"{shown} · only {done}/{total} measured"
        self.status_text = status + (" · ~ m measures" if self.stand_ins else "")
        self._show_trace()

    def _mode_text(self) -> str:
        return f"{self.ws.cost_model} · {self.ws.objective}{memory_note(self.ws)}"

    def _fill(self, ranking: Ranking | None) -> None:
        """Show a ranking. With as many rows as before, only the cells that changed are
        updated in place: no row is added or removed, so no layout pass (the costly part
        of a keystroke); otherwise the rows are rebuilt."""
        table = self.query_one("#topk-table", FastTable)
        lay = self.topk
        self.partitions = ranking.partitions() if ranking is not None else []
        keep = self.ws.selected_cuts
        rows = []
        target = 0
        for row, p in enumerate(self.partitions):
            if p.cuts == keep:
                target = row
            xfer = sum(t.ms for t in p.transfers)
            noisy = self._noisy_stages(p)
            rank = f"{p.rank}{noise.MARK}" if noisy else str(p.rank)
            est = _estimate_mark(p.has_stand_ins)
            cells = [(rank, False), (est + _ms_text(p.total_ms, MS_W - len(est)), True)]
            cells += [(self._stage_text(s, s in noisy), False) for s in p.stages]
            cells.append((_ms_text(xfer if p.transfers else None, 6), True))
            if lay.bottleneck_w:
                cells.append(
                    (fit.end(_short_stage(p.bottleneck, lay.short), lay.bottleneck_w), False)
                )
            rows.append(cells)
        if len(rows) == len(self._shown) and table.row_count == len(rows):
            table.update_cells_at(
                [
                    (Coordinate(r, c), _cell(*cell))
                    for r, (new, old) in enumerate(zip(rows, self._shown, strict=True))
                    for c, (cell, was) in enumerate(zip(new, old, strict=True))
                    if cell != was
                ]
            )
        else:
            table.clear()
            for r, cells in enumerate(rows):
                table.add_row(*(_cell(*cell) for cell in cells), key=f"r{r}")
        self._shown = rows
        self.row_cuts = [",".join(map(str, p.cuts)) for p in self.partitions]
        stand_ins = any(p.has_stand_ins for p in self.partitions)
        if stand_ins != self.stand_ins:
            self.stand_ins = stand_ins
            self.refresh_bindings()
        if self.partitions:
            if table.cursor_row != target:
                table.move_cursor(row=target, animate=False)
            self._select(self.partitions[target])
        else:
            self.query_one(PathChart).show(None, self.ws.empty_reason())

    def _noisy_stages(self, p: Partition) -> list[Stage]:
        """The stages of `p` priced from a measurement not to trust (measured cost model)."""
        return [s for s, _ in self._suspect_stages(p)]

    def _suspect_stages(self, p: Partition) -> list[tuple[Stage, str]]:
        """(stage, 'throttled' or 'noisy') for the stages of `p` priced from a measurement
        timed while its device throttled, or whose CI missed the target."""
        ws = self.ws
        if p.cost_model != "measured" or not (ws.noisy or ws.throttled):
            return []
        out = []
        for s in p.stages:
            key = (s.device, s.start, s.end)
            if s.empty:
                continue
            if key in ws.throttled:
                out.append((s, "throttled"))
            elif key in ws.noisy:
                out.append((s, "noisy"))
        return out

    def _stage_text(self, stage: Stage, noisy: bool = False) -> str:
        """'[0,24) 12.3' (or only '[0,24)' when the room is short); '–' when idle; a
        noisy measurement ends with !, an estimate standing in for a missing one with ~."""
        lay = self.topk
        mark = noise.MARK if noisy else _estimate_mark(stage.stand_in)
        if not lay.with_ms or stage.empty:
            return fit.end(_segment(stage) + mark, lay.device_w)
        seg_w = lay.device_w - STAGE_MS_W - 1
        ms = _ms_text(stage.compute_ms, STAGE_MS_W - len(mark)) + mark
        return f"{_segment(stage):<{seg_w}} {ms:>{STAGE_MS_W}}"

    def _select(self, partition: Partition) -> None:
        self.query_one(PathChart).show(partition)
        self.noise_text = _suspect_note(self._suspect_stages(partition))
        self.ws.select_partition(partition)

    @on(DataTable.RowHighlighted, "#topk-table")
    def _highlighted(self, event: DataTable.RowHighlighted) -> None:
        row = event.cursor_row
        if 0 <= row < len(self.partitions):
            self._select(self.partitions[row])

    @on(Input.Changed, ".link-bw, .link-lat, #rank-k")
    def _field_changed(self, event: Input.Changed) -> None:
        assert isinstance(event.input, StepInput)
        self._apply_field(event.input)

    def _apply_field(self, field: StepInput) -> None:
        """Rank with a field's new value (typed or stepped). A value not valid yet shows
        the reason and changes nothing; a value already applied only clears that reason."""
        result = field.validate(field.value)
        if result is not None and not result.is_valid:
            self._invalid.add(field)
            self.status_text = Text("; ".join(result.failure_descriptions), style="bold red")
            return
        value = field.number
        if value is None:
            return
        was_invalid = field in self._invalid
        self._invalid.discard(field)
        if isinstance(field, LinkField):
            link = next(x for x in self.ws.links if x.name == field.link)
            now = link.bandwidth_mbps if field.quantity == "bandwidth" else link.latency_ms
            if value != now:
                if field.quantity == "bandwidth":
                    self.ws.set_link(field.link, bandwidth_mbps=value)
                else:
                    self.ws.set_link(field.link, latency_ms=value)
                if any(x.measured_bandwidth_mbps is not None for x in self.ws.links):
                    self._refresh_measured()
                self._reanalyse_trace()
            elif not was_invalid:
                return
        elif int(value) != self.ws.k:
            self.ws.set_ranking_options(k=int(value))
        elif not was_invalid:
            return
        self.rerank()

    # -- actions ---------------------------------------------------------------------------

    def action_memory_limits(self) -> None:
        def chosen(values: dict[str, Any] | None) -> None:
            if values is None:
                return
            self.ws.set_memory_limits(limits_from(self.ws, values))
            self.rerank()
            self._reanalyse_trace()

        self.app.push_screen(memory_dialog(self.ws), chosen)

    def action_cycle_cost_model(self) -> None:
        models = list(COST_MODELS)
        nxt = models[(models.index(self.ws.cost_model) + 1) % len(models)]
        self.ws.set_ranking_options(cost_model=nxt)
        self.rerank()
        self._reanalyse_trace()

    def action_cycle_objective(self) -> None:
        objs = list(OBJECTIVES)
        nxt = objs[(objs.index(self.ws.objective) + 1) % len(objs)]
        self.ws.set_ranking_options(objective=nxt)
        self.rerank()
        self._reanalyse_trace()

    def action_map(self) -> None:
        self.app.push_screen(MapScreen(self.playback))

    def action_focus_links(self) -> None:
        if self.ws.links:
            self.query_one("#bw-0", StepInput).focus()

    def action_focus_k(self) -> None:
        self.query_one("#rank-k", StepInput).focus()

    def action_focus_table(self) -> None:
        self.query_one("#topk-table", DataTable).focus()

    def action_attribution(self) -> None:
        from omdp_tui.screens.attribution import AttributionScreen

        self.app.push_screen(AttributionScreen())

    async def action_measure_missing(self) -> None:
        """Profile what the ranking only estimates: the plan adds just what is missing."""
        await self.app.run_action("show('profile')")
        screen = self.app.screen
        if screen.check_action("start", ()):
            await self.app.run_action("start", screen)

    def action_export(self) -> None:
        cuts = self.ws.selected_cuts
        chosen = next((p for p in self.partitions if p.cuts == cuts), None)
        if chosen is None:
            if not self.partitions:
                self.notify(f"no partition to export: {self.ws.empty_reason()}", severity="warning")
            elif self.playback is not None:
                self.notify(
                    "select a partition in the table first (the robust choice must be in "
                    "the top K to export it: raise K with k)",
                    severity="warning",
                )
            else:
                self.notify("select a partition in the table first", severity="warning")
            return

        def write(path: str | None) -> None:
            if not path:
                return
            try:
                written = self.ws.export(chosen, Path(path))
            except (OSError, ValueError, OmdpError) as exc:
                self.app.push_screen(ErrorDialog("Export failed", str(exc)))
                return
            self.ws.set_ui("partitions.export_path", str(written))
            self.notify(f"partition {','.join(map(str, chosen.cuts))} written to {written}")

        default = str(self.ws.default_export_path(chosen.cuts))
        self.app.push_screen(
            TextPrompt("Export the selected partition", "JSON file:", default), write
        )

    def action_validate(self) -> None:
        """Run the selected partition as a chain (the validation screen shows it live)."""
        from omdp_tui.screens.validation import ValidationScreen

        chosen = next((p for p in self.partitions if p.cuts == self.ws.selected_cuts), None)
        if chosen is None:
            self.notify("select a partition in the table first", severity="warning")
            return
        self.app.push_screen(ValidationScreen([chosen]))

    def action_validate_all(self) -> None:
        """Run every partition of the table as a chain, one after the other."""
        from omdp_tui.screens.validation import ValidationScreen

        if not self.partitions:
            self.notify("no partition to validate yet", severity="warning")
            return
        self.app.push_screen(ValidationScreen(list(self.partitions)))

    # -- trace playback --------------------------------------------------------------------

    def action_load_trace(self) -> None:
        if self.ws.current_instance() is None:
            self.notify(f"no trace to replay yet: {self.ws.empty_reason()}", severity="warning")
            return
        last = self.ws.get_ui("partitions.trace") or {}
        names = [x.name for x in self.ws.links]
        fields = [
            Field(
                "path",
                "Trace file:",
                last.get("path", ""),
                required=True,
                placeholder="<seconds> <Mbit/s> per line",
            ),
            Field(
                "link",
                "Link:",
                last.get("link", names[0]) if last.get("link") in names else names[0],
                options=names,
            ),
        ]
        self.app.push_screen(FormDialog("Replay a bandwidth trace", fields), self._trace_chosen)

    def _trace_chosen(self, values: dict[str, str] | None) -> None:
        if not values:
            return
        try:
            inputs = self.ws.trace_inputs()  # reads the session: here, on the UI thread
        except OmdpError as exc:
            self.app.push_screen(ErrorDialog("Cannot replay the trace", str(exc)))
            return
        self.query_one(TraceBar).show(None, 0, f"loading {values['path']}…")
        self._start_trace(inputs, values["path"], values["link"], 0)

    def _start_trace(self, inputs: TraceInputs, path: str, link: str, step: int) -> None:
        self._trace_gen += 1
        self._load_trace(inputs, path, link, step, self._trace_gen)

    def _reanalyse_trace(self) -> None:
        """The robust choice and per-step optimum depend on the cost model, objective and
        the other links' values: replay again (in a worker) when they change."""
        pb = self.playback
        if pb is None:
            return
        try:
            inputs = self.ws.trace_inputs()
        except OmdpError:
            return
        self._start_trace(inputs, pb.path, pb.link, pb.step)

    @work(thread=True, exclusive=True, group="trace", exit_on_error=False)
    def _load_trace(self, inputs: TraceInputs, path: str, link: str, step: int, gen: int) -> None:
        try:
            playback = load_trace(inputs, path, link)
        except OmdpError as exc:
            self.post_message(TraceLoaded(None, str(exc), gen))
        else:
            playback.step = min(step, len(playback.timeline) - 1)
            self.post_message(TraceLoaded(playback, None, gen))

    @on(TraceLoaded)
    def _trace_loaded(self, message: TraceLoaded) -> None:
        if message.generation != self._trace_gen:
            return  # an older replay finished after a newer one was asked for
        if message.playback is None:
            self.query_one(TraceBar).show(None, 0, "")
            self.app.push_screen(ErrorDialog("Cannot replay the trace", message.error or ""))
            return
        if self.playback is not None:  # a re-analysis: keep playing if it was
            message.playback.playing = self.playback.playing
            self.playback = message.playback
            self.rerank()
            return
        self.playback = message.playback
        self.ws.set_ui("partitions.trace", {"path": self.playback.path, "link": self.playback.link})
        self.refresh_bindings()
        self.notify(
            f"{len(self.playback.timeline)} steps on {self.playback.link}: "
            "p plays, [ ] step, r selects the robust choice, x ends"
        )
        self.rerank()

    def action_play(self) -> None:
        pb = self.playback
        if pb is None:
            self.notify("no trace loaded: t loads one", severity="warning")
            return
        pb.playing = not pb.playing
        if pb.playing:
            if pb.step >= len(pb.timeline) - 1:
                pb.step = 0
            self._timer = self.set_interval(PLAY_INTERVAL_S, self._tick)
        elif self._timer is not None:
            self._timer.stop()
            self._timer = None
        self._show_trace()

    def _tick(self) -> None:
        pb = self.playback
        if pb is None:
            return
        if pb.step >= len(pb.timeline) - 1:
            self.action_play()  # reached the end: pause
            return
        pb.step += 1
        self.rerank()

    def action_trace_step(self, delta: int) -> None:
        pb = self.playback
        if pb is None:
            self.notify("no trace loaded: t loads one", severity="warning")
            return
        pb.step = min(len(pb.timeline) - 1, max(0, pb.step + delta))
        self.rerank()

    def action_robust(self) -> None:
        pb = self.playback
        choice = pb.analysis.best_mean if pb else None
        if choice is None:
            self.notify("no robust choice: load a trace with t", severity="warning")
            return
        key = ",".join(map(str, choice.cuts))
        table = self.query_one("#topk-table", DataTable)
        if key in self.row_cuts:
            table.move_cursor(row=self.row_cuts.index(key), animate=False)
        else:
            self.notify(
                f"robust choice {key} is not in this step's top {self.ws.k}: raise K "
                "(k) to see and export it",
                severity="warning",
            )

    def action_close_trace(self) -> None:
        if self.playback is None:
            return
        if self._timer is not None:
            self._timer.stop()
            self._timer = None
        self.playback = None
        self.refresh_bindings()
        self.rerank()

    def _show_trace(self) -> None:
        bar = self.query_one(TraceBar)
        pb = self.playback
        if pb is None:
            bar.show(None, 0, "")
            return
        tl, an = pb.timeline, pb.analysis
        bw = float(tl.bandwidth_mbps[pb.step, pb.link_index])
        best = an.optimal_cuts[pb.step]
        best_ms = float(an.optimal_ms[pb.step])
        state = "▶" if pb.playing else "❚❚"
        now = (
            f"{state} t={tl.start_s[pb.step]:.0f}s ({pb.step + 1}/{len(tl)}) "
            f"{pb.link} {bw:.1f} Mbit/s · best now "
            + ("none" if best is None else f"{','.join(map(str, best))} {best_ms:.1f} ms")
        )
        robust = an.best_mean
        line2 = (
            "robust: none usable over the whole trace"
            if robust is None
            else f"robust {','.join(map(str, robust.cuts))}: mean {robust.mean_ms:.1f}, "
            f"p95 {robust.p95_ms:.1f} ms"
        )
        often = ", ".join(
            f"{','.join(map(str, cuts))} {share:.0%}" for cuts, share in an.shares[:3]
        )
        if often:
            line2 += f" · best over time: {often}"
        bar.show(tl.bandwidth_mbps[:, pb.link_index], pb.step, f"{now}\n{line2}")
