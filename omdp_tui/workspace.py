"""The open session as the UI sees it: one object the screens read and change.

It holds what the screens show (the analysis, the chain, the operator's link values, the
ranking options, the selected partition, the UI keys) and turns each intent into a call
to the engine's use cases (`backend.usecases`), which the CLI calls too: the workflows
live there, this module only keeps the UI's state in step with them. Every change goes
into the session file (autosave): candidates and devices at once, what changes on every
keystroke (link values, ranking options, the selected partition, UI keys) on the next
`flush` — the app flushes every half second, on quit and on a crash, so at most half a
second of typing is at risk if the process is killed. It never imports textual.

Threads: the session's SQLite connection belongs to the event loop's thread, so the
workspace is created and used there; workers get plain values or the ranker.
"""

from __future__ import annotations

import itertools
import math
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from backend.chain import Chain, DeviceSpec, LinkSpec, link_name
from backend.device.protocol import TimingSettings
from backend.errors import OmdpError
from backend.model.analysis import ModelAnalysis
from backend.profiling import noise
from backend.profiling.jobs import Profiler, RunFinished
from backend.profiling.plan import PlanItem
from backend.profiling.session import Session
from backend.solver.costs import SegmentInstance
from backend.solver.ranking import Partition, Ranker, Ranking
from backend.usecases import (
    attribution,
    candidates,
    exports,
    plans,
    rankings,
    remeasure,
    runs,
    sessions,
    validations,
)
from backend.usecases.traces import TraceReplay, replay_trace

if TYPE_CHECKING:  # the device use cases load asyncssh: only when a device is reached
    from backend.remote.links import ChainLinks
    from backend.usecases.devices import DeviceAnswer

QUIET_S = 0.4  # keystroke state is written once the keys have stopped this long...
LONGEST_S = 5.0  # ... or at the latest this long after the first unsaved change
LINK_PROBE_BYTES = 8 << 20  # largest payload per transfer when the TUI measures links


@dataclass
class LinkSetting:
    """One link of the chain as the operator types it, with what was measured beside it."""

    name: str  # "glasses-phone": the two devices it joins, in chain order
    bandwidth_mbps: float
    latency_ms: float
    measured_bandwidth_mbps: float | None = None
    measured_latency_ms: float | None = None


@dataclass
class Playback(TraceReplay):
    """A trace being replayed on one link, and where playback is."""

    step: int = 0
    playing: bool = False

    def bandwidths(self) -> list[float]:
        return [float(v) for v in self.timeline.bandwidth_mbps[self.step]]


@dataclass
class TraceInputs:
    """What a trace replay needs, gathered on the UI thread (the ranker reads the session
    once): the ranker and the links' names and typed values."""

    ranker: Ranker
    names: list[str]
    bandwidths: list[float]
    latencies: list[float]


class Workspace:
    def __init__(self, analysis: ModelAnalysis, model_ref: str, session: Session) -> None:
        self.analysis = analysis
        self.model_ref = model_ref
        self.session = session
        self.on_save_error: Callable[[str], None] | None = None
        self._pending: dict[str, tuple[Callable[..., Any], tuple[Any, ...]]] = {}
        self._pending_since = self._changed_at = 0.0  # `clock` times of the pending writes
        self.clock: Callable[[], float] = time.monotonic
        self.ui: dict[str, Any] = session.get_ui_state() or {}
        self.candidates: list[int] = session.candidates()
        self.chain: Chain = session.chain()
        self.links: list[LinkSetting] = []
        self._load_links()
        options = self.ui.get("partitions.options", {})
        self.k = int(options.get("k", 10))
        self.cost_model: str = options.get("cost_model", "measured")
        self.objective: str = options.get("objective", "latency")
        self.memory_limits = _memory_limits(self.ui.get("partitions.memory"))
        chosen = [p for p in session.partitions() if p.get("name") == "selected"]
        positions = chosen[0]["positions"] if chosen else None
        self.selected_cuts: tuple[int, ...] | None = tuple(positions[1:-1]) if positions else None
        timing = session.get_meta("timing") or {}
        self.timing = TimingSettings.from_dict(timing) if timing else TimingSettings()
        self.node_times_runs = int(
            session.get_meta("node_times_runs", runs.DEFAULT_NODE_TIMES_RUNS)
        )
        self.profiling = False  # a Profiler holds the session: no save-as, no chain change
        self.instance: SegmentInstance | None = None
        self.noisy: set[tuple[str, int, int]] = set()  # (device, a, b) whose CI missed
        self.throttled: dict[tuple[str, int, int], str] = {}  # timed on a throttled CPU: why
        self.noise_target = noise.target_of(session.get_meta("timing"))
        self._ranker: Ranker | None = None
        self._stale = True  # measurements or candidates changed since `instance`
        self._progress = (0, 0)  # (measured, planned), with `instance`

    # -- naming --------------------------------------------------------------------------------

    @property
    def session_path(self) -> Path:
        return self.session.path

    @property
    def title(self) -> str:
        return f"{Path(self.model_ref).name} · {self.session_path.name}"

    @property
    def devices(self) -> list[str]:
        return self.chain.names

    @property
    def device_specs(self) -> list[dict[str, Any]]:
        return [d.to_dict() for d in self.chain.devices]

    # -- saving --------------------------------------------------------------------------------

    def _guard(self, write: Callable[..., Any], *args: Any) -> None:
        """Autosave must never take the UI down: report a failed write and go on."""
        try:
            write(*args)
        except (OSError, sqlite3.Error, ValueError, OmdpError) as exc:
            if self.on_save_error is not None:
                self.on_save_error(
                    f"autosave to {self.session_path} failed: {exc} — the "
                    "change is kept in memory; ctrl+s saves elsewhere"
                )

    def _later(self, key: str, write: Callable[..., Any], *args: Any) -> None:
        """Save on the next `flush` (a keystroke's worth of UI state: a SQLite commit per
        key would cost more than the re-ranking). The app flushes once the keys stop
        (`flush_due`) and on exit; the newest value of each key wins."""
        now = self.clock()
        if not self._pending:
            self._pending_since = now
        self._changed_at = now
        self._pending[key] = (write, args)

    def flush_due(self) -> bool:
        """Whether what is pending should be written now: QUIET_S after the last change
        (a held-down key commits nothing while it repeats, so no commit delays a frame),
        and at the latest LONGEST_S after the first."""
        if not self._pending:
            return False
        now = self.clock()
        return now - self._changed_at >= QUIET_S or now - self._pending_since >= LONGEST_S

    def flush(self) -> None:
        """Write what `_later` kept (idempotent; cheap when nothing is pending)."""
        pending, self._pending = self._pending, {}
        for write, args in pending.values():
            self._guard(write, *args)

    @property
    def unsaved(self) -> bool:
        return bool(self._pending)

    def save_as(self, path: Path) -> None:
        """Copy the session to `path` and continue in the copy."""
        path = Path(path)
        if path.resolve() == self.session_path.resolve():
            return
        self._not_while_profiling("save the session under another name")
        self.flush()
        copy = sessions.copy_session(self.session, path)
        self.session.close()
        self.session = copy

    # -- ui state ------------------------------------------------------------------------------

    def get_ui(self, key: str, default: Any = None) -> Any:
        return self.ui.get(key, default)

    def set_ui(self, key: str, value: Any) -> None:
        if self.ui.get(key) != value:
            self.ui[key] = value
            self._later(f"ui {key}", self.session.set_ui_state, key, value)

    # -- candidates ----------------------------------------------------------------------------

    def set_candidates(self, positions: list[int]) -> None:
        self.candidates = candidates.clean(self.analysis, positions)
        self._stale = True
        self._guard(self.session.set_candidates, self.candidates, self.analysis)

    def toggle_candidate(self, position: int) -> bool:
        """Mark or unmark; returns whether it is now a candidate."""
        on = position not in self.candidates
        self.set_candidates(
            [*self.candidates, position] if on else [p for p in self.candidates if p != position]
        )
        return on

    def auto_candidates(self, k: int) -> list[int]:
        self.set_candidates(self.analysis.candidates(k))
        return self.candidates

    # -- devices and links ---------------------------------------------------------------------

    def _load_links(self) -> None:
        current = self.session.bandwidths()
        frame = self.session.links_frame()
        links = []
        for i, lk in enumerate(self.chain.links):
            row = frame.iloc[i] if i < len(frame) else None
            mbw = row["measured_bandwidth_mbps"] if row is not None else None
            mlat = row["measured_latency_ms"] if row is not None else None
            links.append(
                LinkSetting(
                    lk.name,
                    float(current[i][0]),
                    float(current[i][1]),
                    _num(mbw),
                    _num(mlat),
                )
            )
        self.links = links

    def set_device(self, index: int | None, spec: DeviceSpec) -> None:
        """Add (index None: at the end of the chain) or replace a device.

        Changing a device's options keeps the chain: its measurements under the old
        configuration stay in the session but no longer count (the engine keys them by
        runtime configuration). Adding, removing, renaming or reordering devices changes
        the chain, which the session allows only before anything is measured.
        """
        chain = list(self.chain.devices)
        if index is None:
            chain.append(spec)
        else:
            chain[index] = spec
        self._set_chain(chain)

    def remove_device(self, index: int) -> None:
        self._set_chain([d for i, d in enumerate(self.chain.devices) if i != index])

    def move_device(self, index: int, delta: int) -> None:
        chain = list(self.chain.devices)
        j = index + delta
        if 0 <= j < len(chain):
            chain[index], chain[j] = chain[j], chain[index]
            self._set_chain(chain)

    def _not_while_profiling(self, what: str) -> None:
        if self.profiling:
            raise OmdpError(
                f"cannot {what} while profiling runs",
                "wait for it to finish, or cancel it (x on the profile screen)",
            )

    def _set_chain(self, chain: list[DeviceSpec]) -> None:
        """The new devices, with the links the operator typed kept where the same two
        devices stay neighbours (new links get the defaults)."""
        self._not_while_profiling("change the devices")
        if not chain:
            raise OmdpError("the chain needs at least one device", "add another first")
        self.flush()  # the session may be made again: nothing typed may stay behind
        typed = {x.name: x for x in self.links}
        links = []
        for a, b in itertools.pairwise(chain):
            old = typed.get(link_name(a.name, b.name))
            links.append(
                LinkSpec(a.name, b.name, old.bandwidth_mbps, old.latency_ms)
                if old
                else LinkSpec(a.name, b.name, default=True)
            )
        self.session = sessions.change_chain(self.session, self.analysis, Chain(chain, links))
        self.chain = self.session.chain()
        self._load_links()
        self._save_links()
        self._stale = True

    def _save_links(self) -> None:
        self._guard(
            self.session.set_bandwidths,
            {i: (x.bandwidth_mbps, x.latency_ms) for i, x in enumerate(self.links)},
        )

    def set_link(
        self, name: str, bandwidth_mbps: float | None = None, latency_ms: float | None = None
    ) -> None:
        """The operator's link values; rank() passes them to the ranker (no rebuild)."""
        link = next(x for x in self.links if x.name == name)
        if bandwidth_mbps is not None:
            link.bandwidth_mbps = float(bandwidth_mbps)
        if latency_ms is not None:
            link.latency_ms = float(latency_ms)
        self._later(
            "links",
            self.session.set_bandwidths,
            {i: (x.bandwidth_mbps, x.latency_ms) for i, x in enumerate(self.links)},
        )

    def adopt_measured_links(self) -> list[str]:
        """The measured link values become the ones the ranking uses (where measured)."""
        self.flush()
        changed = rankings.adopt_measured_links(self.session)
        self._load_links()
        return changed

    async def check_device(self, device: DeviceSpec) -> DeviceAnswer:
        """Reach one device; a local one also starts its agent and says hello."""
        from backend.usecases import devices as chain_devices

        return await chain_devices.check_device(device, str(self.session_path))

    async def measure_links(self) -> ChainLinks:
        """Measure every chain link, one at a time (measurements and one line per failure)."""
        from backend.usecases import devices as chain_devices

        return await chain_devices.measure_links(
            chain_devices.chain_targets(self.chain), max_bytes=LINK_PROBE_BYTES, lab_links=False
        )

    def store_link_measurements(self, found: ChainLinks) -> list[str]:
        """Put measured values beside the typed ones; what could not be is said."""
        from backend.usecases import devices as chain_devices

        self.flush()  # the typed values are read back with the measured ones
        problems = [*found.failures, *chain_devices.store_link_measurements(self.session, found)]
        self._load_links()
        return problems

    # -- plan and measurements -----------------------------------------------------------------

    def plan(self) -> list[PlanItem]:
        """The plan for the current chain and candidates."""
        return plans.build(self.analysis, self.chain, self.candidates).items

    def missing(self) -> list[PlanItem]:
        """What is left to measure: a resume profiles only this."""
        return self.session.missing(self.plan())

    def results(self) -> dict[tuple[str, int, int], dict[str, Any]]:
        """(device, a, b) → the session's row (median_ms, p10_ms, p90_ms, status, ...)
        under the devices' current configurations, with `noisy` and `contradicts`
        (noise.annotated)."""
        target = noise.target_of(self.session.get_meta("timing"))
        frame = noise.annotated(self.session.results_frame(), target)
        out = {}
        for row in frame.to_dict("records"):
            if row["status"] != "pending":
                out[(row["device"], int(row["start"]), int(row["end"]))] = row
        return out

    def estimate_seconds(self, items: list[PlanItem]) -> float:
        """Wall time to measure `items` (devices sharing CPUs take turns)."""
        return plans.estimate(self.session, self.analysis, self.chain, items, self.timing).seconds

    def progress(self) -> tuple[int, int]:
        """(measured, planned) segments; cached with the priced instance (per keystroke)."""
        self.current_instance()
        return self._progress

    def cpu_waits(self) -> dict[str, list[str]]:
        """Device → the earlier devices it shares CPUs with: it measures after them."""
        return plans.cpu_waits(self.chain)

    def empty_reason(self) -> str:
        """Why no partition can be ranked yet, and what to do: the real cause."""
        plan = self.plan()
        missing = self.missing()
        if not plan:
            return "no plan yet: add devices on screen 2"
        if len(missing) == len(plan):
            return "nothing measured yet: s on the profile screen (3) measures the plan"
        if missing:
            return (
                f"{len(plan) - len(missing)} of {len(plan)} segments measured: no partition "
                "can be priced yet — s on the profile screen (3) measures the rest"
            )
        if self.memory_limits:
            return (
                "no partition fits these memory limits and links: M changes the limits, "
                "b the link values"
            )
        return "no feasible partition for these links: check the link values (b)"

    def plan_run(self) -> runs.PlannedRun:
        """Save the plan; what is left of it, ready for `PlannedRun.profiler`."""
        settings = runs.RunSettings(timing=self.timing, node_times_runs=self.node_times_runs)
        return runs.plan_run(self.session, self.analysis, self.chain, self.candidates, settings)

    async def run(self, profiler: Profiler, todo: list[PlanItem]) -> RunFinished:
        return await runs.run_plan(profiler, todo)

    def measurements_changed(self) -> None:
        self._stale = True

    def remeasure(self, target: remeasure.Target) -> list[PlanItem]:
        """Move the chosen measurements into the session's history: the next run (s)
        measures them again."""
        self._not_while_profiling("re-measure")
        items = remeasure.remeasure(self.session, self.plan(), target)
        self._stale = True
        return items

    # -- ranking -------------------------------------------------------------------------------

    def current_instance(self) -> SegmentInstance | None:
        """The session priced by the engine, rebuilt only after new measurements or
        candidates; None while nothing is measured."""
        if self._stale:
            self._stale = False
            self._ranker = None
            self.instance = rankings.price_session(self.session)
            if self.instance is not None and self.memory_limits:
                self.instance = rankings.limit_memory(
                    self.analysis, self.instance, self.memory_limits
                )
            self.noise_target = noise.target_of(self.session.get_meta("timing"))
            results = self.session.results_frame()
            self.noisy = noise.noisy_keys(self.session, results)
            self.throttled = noise.throttled(self.session, results)
            plan = self.plan()
            self._progress = (len(plan) - len(self.missing()), len(plan))
        return self.instance

    def ranker(self) -> Ranker | None:
        """Built once per instance and options (the slow part); `rank` is then ~1 ms."""
        instance = self.current_instance()
        if instance is None:
            return None
        if self._ranker is None:
            self._ranker = Ranker(instance, self.objective, self.cost_model)
        return self._ranker

    def rank(self, bandwidth_mbps: list[float] | None = None) -> Ranking | None:
        ranker = self.ranker()
        if ranker is None:
            return None
        bw = (
            bandwidth_mbps if bandwidth_mbps is not None else [x.bandwidth_mbps for x in self.links]
        )
        return ranker.rank(bw, [x.latency_ms for x in self.links], self.k)

    def set_ranking_options(
        self, k: int | None = None, cost_model: str | None = None, objective: str | None = None
    ) -> None:
        if cost_model is not None and cost_model != self.cost_model:
            self.cost_model = cost_model
            self._ranker = None
        if objective is not None and objective != self.objective:
            self.objective = objective
            self._ranker = None
        if k is not None:
            self.k = int(k)
        self.set_ui(
            "partitions.options",
            {"k": self.k, "cost_model": self.cost_model, "objective": self.objective},
        )

    def set_memory_limits(self, limits: dict[str, float]) -> None:
        """Per-device memory limits (MiB) the ranking and the map respect; saved with the
        session's UI state."""
        self.memory_limits = _memory_limits(limits)
        self.set_ui("partitions.memory", self.memory_limits)
        if self.instance is not None and not self._stale:  # only the limits change
            self.instance = rankings.limit_memory(self.analysis, self.instance, self.memory_limits)
            self._ranker = None

    def select_partition(self, partition: Partition | tuple[int, ...] | None) -> None:
        """Remember the chosen partition in the session (its `partitions` table)."""
        if partition is None:
            return
        cuts = tuple(partition.cuts) if isinstance(partition, Partition) else tuple(partition)
        if cuts == self.selected_cuts:
            return
        self.selected_cuts = cuts
        entry: dict[str, Any] = {"name": "selected", "positions": [0, *cuts, self.analysis.n]}
        if isinstance(partition, Partition):
            entry.update(
                cost_ms=partition.total_ms,
                objective=partition.objective,
                cost_model=partition.cost_model,
            )
        self._later("selected", self.session.save_partitions, [entry])

    def attribution(self) -> attribution.SessionAttribution:
        """Each device's blocks: Shapley shares beside layer sums, cut overheads."""
        return attribution.attribute_session(self.session)

    # -- export --------------------------------------------------------------------------------

    def default_export_path(self, cuts: tuple[int, ...]) -> Path:
        return exports.default_export_path(self.session_path, cuts)

    def export(self, partition: Partition, path: Path) -> Path:
        """The export document for one partition, under the link values it was ranked with."""
        return exports.export_partition(
            self.session,
            self.analysis,
            partition,
            [x.bandwidth_mbps for x in self.links],
            [x.latency_ms for x in self.links],
            path,
        )

    # -- validation ----------------------------------------------------------------------------

    def validation_plan(
        self, partitions: list[Partition], frames: int = 20
    ) -> validations.ValidationPlan:
        """Run these partitions as a chain under the link values they were ranked with."""
        options = validations.ValidateOptions(
            frames=frames, objective=self.objective, cost_model=self.cost_model
        )
        links = [(x.bandwidth_mbps, x.latency_ms) for x in self.links]
        return validations.plan_partitions(self.session, partitions, links, options)

    async def validate(
        self,
        plan: validations.ValidationPlan,
        on_event: Callable[[validations.ValidationEvent], None],
    ) -> validations.Outcome:
        return await validations.run(plan, on_event)

    def stored_validation(self, cuts: tuple[int, ...]) -> dict[str, Any] | None:
        """The newest stored validation of this partition under the current link values
        and objective (its report), if any."""
        positions = [0, *cuts, self.analysis.n]
        links = [[x.bandwidth_mbps, x.latency_ms] for x in self.links]
        rows = [
            r
            for r in self.session.validations()
            if r["positions"] == positions
            and r["links"] == links
            and r["objective"] == self.objective
        ]
        return rows[-1]["report"] if rows else None

    # -- traces --------------------------------------------------------------------------------

    def trace_inputs(self) -> TraceInputs:
        ranker = self.ranker()
        if ranker is None:
            raise OmdpError("nothing measured yet", "profile first, then replay a trace")
        return TraceInputs(
            ranker,
            [x.name for x in self.links],
            [x.bandwidth_mbps for x in self.links],
            [x.latency_ms for x in self.links],
        )


def _memory_limits(saved: Any) -> dict[str, float]:
    """Device -> MiB from the UI state, keeping only sound values (a file edited by hand or
    written by another version must not break the ranking)."""
    if not isinstance(saved, dict):
        return {}
    return {
        str(d): float(v)
        for d, v in saved.items()
        if isinstance(v, int | float) and math.isfinite(v) and v > 0
    }


def load_trace(inputs: TraceInputs, path: str, link: str) -> Playback:
    """Read a trace for one link and replay it with the engine: slow enough for a worker
    thread, and touches no session."""
    replay = replay_trace(
        inputs.ranker, inputs.names, inputs.bandwidths, inputs.latencies, path, link
    )
    return Playback(replay.path, replay.link, replay.link_index, replay.timeline, replay.analysis)


def open_workspace(prepared: sessions.Prepared) -> Workspace:
    """Create or resume the session (on the loop's thread: it owns the connection)."""
    opened = sessions.open_prepared(prepared)
    ws = Workspace(opened.analysis, opened.model_ref, opened.session)
    if not opened.resumed:
        ws._save_links()  # the chain's configured values become the operator's starting values
    return ws


def _num(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) else number  # NaN from SQL NULL
