"""The open session as the UI sees it: one object the screens read and change.

It holds the engine's objects (the analysis, the `backend.profiling.session.Session`, the ranker)
and is the only place the UI calls the engine from, so each screen stays about showing
things. Every change goes straight into the session file (autosave): a crash or a
dropped SSH connection loses nothing. It never imports textual.

Threads: the session's SQLite connection belongs to the event loop's thread, so the
workspace is created and used there; workers get plain values or the ranker.
"""

from __future__ import annotations

import itertools
import os
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from backend.chain import Chain, DeviceSpec, LinkSpec
from backend.device.runtimes import TimingSettings
from backend.errors import OmdpError
from backend.model.analysis import ModelAnalysis
from backend.profiling.plan import PlanItem, build_plan
from backend.profiling.session import Session
from backend.solver.costs import SegmentInstance
from backend.solver.ranking import Partition, Ranker, Ranking

COST_MODELS = ("measured", "estimated")
OBJECTIVES = ("latency", "throughput")
DEFAULT_NODE_TIMES_RUNS = 5


@dataclass
class LinkSetting:
    """One link of the chain as the operator types it, with what was measured beside it."""

    name: str  # "glasses-phone": the two devices it joins, in chain order
    bandwidth_mbps: float
    latency_ms: float
    measured_bandwidth_mbps: float | None = None
    measured_latency_ms: float | None = None


@dataclass
class Playback:
    """A trace being replayed on one link: the aligned timeline, the engine's analysis
    (best partition per step, robust choices) and where playback is."""

    path: str
    link: str
    link_index: int
    timeline: Any  # backend.solver.traces.Timeline
    analysis: Any  # backend.solver.traces.TraceAnalysis
    step: int = 0
    playing: bool = False

    def bandwidths(self) -> list[float]:
        return [float(v) for v in self.timeline.bandwidth_mbps[self.step]]


@dataclass
class Opened:
    """What the opening worker hands to the UI thread: the analysis (slow, done in a
    thread) and how to make or resume the session (done on the loop's thread)."""

    analysis: ModelAnalysis
    model_ref: str
    builtin: str | None
    path: Path
    resume: bool
    chain: Chain | None = None
    candidates: int | list[int] | None = None  # k to auto-pick, or positions
    timing: dict[str, Any] | None = None
    node_times_runs: int | None = None
    ui: dict[str, Any] | None = None


class Workspace:
    def __init__(self, analysis: ModelAnalysis, model_ref: str, session: Session) -> None:
        self.analysis = analysis
        self.model_ref = model_ref
        self.session = session
        self.on_save_error: Callable[[str], None] | None = None
        self.ui: dict[str, Any] = session.get_ui_state() or {}
        self.candidates: list[int] = session.candidates()
        self.chain: Chain = session.chain()
        self.links: list[LinkSetting] = []
        self._load_links()
        options = self.ui.get("partitions.options", {})
        self.k = int(options.get("k", 10))
        self.cost_model = options.get("cost_model", "measured")
        self.objective = options.get("objective", "latency")
        chosen = [p for p in session.partitions() if p.get("name") == "selected"]
        positions = chosen[0]["positions"] if chosen else None
        self.selected_cuts: tuple[int, ...] | None = (
            tuple(positions[1:-1]) if positions else None)
        timing = session.get_meta("timing") or {}
        self.timing = TimingSettings.from_dict(timing) if timing else TimingSettings()
        self.node_times_runs = int(session.get_meta("node_times_runs",
                                                    DEFAULT_NODE_TIMES_RUNS))
        self.profiling = False  # a Profiler holds the session: no save-as, no chain change
        self.instance: SegmentInstance | None = None
        self._ranker: Ranker | None = None
        self._stale = True  # measurements or candidates changed since `instance`

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
                self.on_save_error(f"autosave to {self.session_path} failed: {exc} — the "
                                   "change is kept in memory; ctrl+s saves elsewhere")

    def save_as(self, path: Path) -> None:
        """Copy the session (SQLite online backup: consistent even mid-profile) to `path`
        and continue in the copy."""
        path = Path(path)
        if path.resolve() == self.session_path.resolve():
            return
        self._not_while_profiling("save the session under another name")
        if path.exists():
            raise OmdpError(f"{path} already exists", "choose another name")
        path.parent.mkdir(parents=True, exist_ok=True)
        target = sqlite3.connect(path)
        try:
            self.session.conn.backup(target)
        finally:
            target.close()
        self.session.close()
        self.session = Session.open(path, check_model=False)

    # -- ui state ------------------------------------------------------------------------------

    def get_ui(self, key: str, default: Any = None) -> Any:
        return self.ui.get(key, default)

    def set_ui(self, key: str, value: Any) -> None:
        if self.ui.get(key) != value:
            self.ui[key] = value
            self._guard(self.session.set_ui_state, key, value)

    # -- candidates ----------------------------------------------------------------------------

    def set_candidates(self, positions: list[int]) -> None:
        n = self.analysis.n
        self.candidates = sorted({p for p in positions if 0 < p < n})
        self._stale = True
        self._guard(self.session.set_candidates, self.candidates, self.analysis)

    def toggle_candidate(self, position: int) -> bool:
        """Mark or unmark; returns whether it is now a candidate."""
        on = position not in self.candidates
        self.set_candidates([*self.candidates, position] if on else
                            [p for p in self.candidates if p != position])
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
            links.append(LinkSetting(f"{lk.src}-{lk.dst}", float(current[i][0]),
                                     float(current[i][1]), _num(mbw), _num(mlat)))
        self.links = links

    def has_measurements(self) -> bool:
        return bool(self.session.conn.execute(
            "SELECT 1 FROM measurements LIMIT 1").fetchone())

    def set_device(self, index: int | None, spec: DeviceSpec) -> None:
        """Add (index None: at the end of the chain) or replace a device.

        Changing a device's options keeps the chain: its measurements under the old
        configuration stay in the session but no longer count (the engine keys them by
        runtime configuration). Adding, removing, renaming or reordering devices changes
        the chain, which the session allows only before anything is measured.
        """
        devices = list(self.chain.devices)
        if index is None:
            devices.append(spec)
        else:
            devices[index] = spec
        self._set_chain(devices)

    def remove_device(self, index: int) -> None:
        self._set_chain([d for i, d in enumerate(self.chain.devices) if i != index])

    def move_device(self, index: int, delta: int) -> None:
        devices = list(self.chain.devices)
        j = index + delta
        if 0 <= j < len(devices):
            devices[index], devices[j] = devices[j], devices[index]
            self._set_chain(devices)

    def _not_while_profiling(self, what: str) -> None:
        if self.profiling:
            raise OmdpError(f"cannot {what} while profiling runs",
                            "wait for it to finish, or cancel it (x on the profile screen)")

    def _set_chain(self, devices: list[DeviceSpec]) -> None:
        self._not_while_profiling("change the devices")
        if not devices:
            raise OmdpError("the chain needs at least one device", "add another first")
        old_links = {x.name: x for x in self.links}
        links = []
        for a, b in itertools.pairwise(devices):
            typed = old_links.get(f"{a.name}-{b.name}")
            links.append(LinkSpec(a.name, b.name, typed.bandwidth_mbps, typed.latency_ms)
                         if typed else LinkSpec(a.name, b.name, default=True))
        chain = Chain(devices, links)
        if chain.names == self.chain.names:
            self.session.update_chain(chain)
        elif self.has_measurements():
            raise OmdpError(
                f"this session has measurements for the chain {' → '.join(self.devices)}; "
                "its devices (names and order) can no longer change",
                "edit the devices' options here, or start a new session for another chain")
        else:
            self._recreate(chain)
        self.chain = self.session.chain()
        self._load_links()
        self._save_links()
        self._stale = True

    def _recreate(self, chain: Chain) -> None:
        """A new chain before anything is measured: the same file, made again, keeping the
        candidates, the operator's link values and the UI state."""
        path = self.session.path
        ui = dict(self.ui)
        builtin = self.session.model().builtin
        timing = self.session.get_meta("timing")
        node_runs = self.session.get_meta("node_times_runs")
        self.session.close()
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        self.session = Session.create(path, self.analysis, chain, self.candidates,
                                      builtin=builtin)
        if timing is not None:
            self.session.set_meta("timing", timing)
        if node_runs is not None:
            self.session.set_meta("node_times_runs", node_runs)
        for key, value in ui.items():
            self.session.set_ui_state(key, value)

    def _save_links(self) -> None:
        self._guard(self.session.set_bandwidths,
                    {i: (x.bandwidth_mbps, x.latency_ms) for i, x in enumerate(self.links)})

    def set_link(self, name: str, bandwidth_mbps: float | None = None,
                 latency_ms: float | None = None) -> None:
        """The operator's link values; rank() passes them to the ranker (no rebuild)."""
        link = next(x for x in self.links if x.name == name)
        if bandwidth_mbps is not None:
            link.bandwidth_mbps = float(bandwidth_mbps)
        if latency_ms is not None:
            link.latency_ms = float(latency_ms)
        self._save_links()

    async def check_device(self, spec: dict[str, Any]) -> tuple[bool, str]:
        """Reach one device with the engine's probe; for a local one also start the agent
        and return its hello (what it would profile with)."""
        from backend.remote import checks, target

        runtime = spec.get("runtime")
        if spec.get("kind") == "ssh":
            check = await checks.check_ssh(target.ssh_fields_from_table(spec), runtime)
        else:
            check = await checks.check_local(target.LocalTarget(spec["name"]), runtime)
        if not check.ok:
            return False, "; ".join(check.problems) or "not reachable"
        if spec.get("kind") == "ssh":
            f = check.facts
            return True, (f"python {f.get('python', '?')} · {f.get('cores', '?')} cores · "
                          f"{(f.get('packages') or {}).get(runtime or '', '?')}")
        return await _local_hello()

    async def measure_links(self) -> Any:
        """Measure every chain link with the engine (`backend.remote.links`), one at a time;
        returns its ChainLinks (measurements and one line per failure)."""
        from backend.device.linkhelper import LinkSettings
        from backend.remote import links, target

        targets = [target.target_from_spec(d, str(self.session.path)) for d in self.chain.devices]
        return await links.measure_chain(targets, LinkSettings(max_bytes=8 << 20),
                                         lab_links=False)

    def store_link_measurements(self, found: Any) -> list[str]:
        """Put measured values beside the typed ones; what could not be matched is said."""
        index = {(lk.src, lk.dst): i for i, lk in enumerate(self.chain.links)}
        problems = list(found.failures)
        for m in found.chain:
            i = index.get((m.src, m.dst))
            if i is None:
                problems.append(f"link {m.src}-{m.dst} is not in this chain")
            else:
                self.session.set_link_measurement(i, m.bandwidth_mbps, m.latency_ms)
        self._load_links()
        return problems

    # -- plan and measurements -----------------------------------------------------------------

    def plan(self) -> list[PlanItem]:
        """The engine's plan for the current chain and candidates (saved in the session)."""
        return build_plan(self.analysis.n, self.candidates, self.devices).items

    def save_plan(self) -> list[PlanItem]:
        plan = build_plan(self.analysis.n, self.candidates, self.devices)
        self.session.save_plan(plan)
        return plan.items

    def missing(self) -> list[PlanItem]:
        """What is left to measure: a resume profiles only this."""
        return self.session.missing(self.plan())

    def results(self) -> dict[tuple[str, int, int], dict[str, Any]]:
        """(device, a, b) → the session's row (median_ms, p10_ms, p90_ms, status, ...)
        under the devices' current configurations."""
        frame = self.session.results_frame()
        out = {}
        for row in frame.to_dict("records"):
            if row["status"] != "pending":
                out[(row["device"], int(row["start"]), int(row["end"]))] = row
        return out

    def estimate_seconds(self, items: list[PlanItem]) -> float:
        """The engine's estimate of the wall time to measure `items` (devices sharing
        CPUs take turns)."""
        from backend.profiling import jobs, plan

        flops_of = plan.segment_flops([n.flops for n in self.analysis.nodes])
        measured = plan.speeds_from_measurements(
            self.session.results_frame().to_dict("records"), flops_of)
        est = plan.estimate(items, flops_of, self.timing,
                            {d.name: d.gflops for d in self.chain.devices if d.gflops},
                            measured)
        return jobs.wall_seconds(est.per_device, jobs.cpu_claims(self.chain), self.devices)

    def profiler(self, on_event: Callable[[Any], None] | None = None):
        """A `backend.profiling.jobs.Profiler` for what is missing (the model goes into the agent
        cache under its hash first)."""
        from backend.profiling import jobs
        from backend.remote.models import model_cache_dir, put_model

        cache = model_cache_dir()
        model_file, sha = put_model(self.analysis.model_bytes(), cache)
        items = self.save_plan()
        todo = self.session.missing(items)
        options = jobs.ProfileOptions(timing=self.timing, node_times_runs=self.node_times_runs)
        estimates = {}
        if todo:
            from backend.profiling import plan

            flops_of = plan.segment_flops([n.flops for n in self.analysis.nodes])
            estimates = plan.estimate(todo, flops_of, self.timing).per_device
        profiler = jobs.Profiler(self.session, self.chain, model_file, sha, options=options,
                                 cache_dir=cache, on_event=on_event, estimates=estimates)
        return profiler, todo

    def measurements_changed(self) -> None:
        self._stale = True

    # -- ranking -------------------------------------------------------------------------------

    def current_instance(self) -> SegmentInstance | None:
        """The session priced by the engine (`backend.solver.pricing`), rebuilt only after new
        measurements or candidates; None while nothing is measured."""
        if self._stale:
            self._stale = False
            self._ranker = None
            self.instance = None
            if self.has_measurements():
                from backend.solver.pricing import instance_from_session

                self.instance = instance_from_session(self.session)
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
        bw = bandwidth_mbps if bandwidth_mbps is not None else [
            x.bandwidth_mbps for x in self.links]
        return ranker.rank(bw, [x.latency_ms for x in self.links], self.k)

    def set_ranking_options(self, k: int | None = None, cost_model: str | None = None,
                            objective: str | None = None) -> None:
        if cost_model is not None and cost_model != self.cost_model:
            self.cost_model = cost_model
            self._ranker = None
        if objective is not None and objective != self.objective:
            self.objective = objective
            self._ranker = None
        if k is not None:
            self.k = int(k)
        self.set_ui("partitions.options", {"k": self.k, "cost_model": self.cost_model,
                                           "objective": self.objective})

    def select_partition(self, partition: Partition | tuple[int, ...] | None) -> None:
        """Remember the chosen partition in the session (its `partitions` table)."""
        if partition is None:
            return
        cuts = tuple(partition.cuts) if isinstance(partition, Partition) else tuple(partition)
        if cuts == self.selected_cuts:
            return
        self.selected_cuts = cuts
        entry: dict[str, Any] = {"name": "selected",
                                 "positions": [0, *cuts, self.analysis.n]}
        if isinstance(partition, Partition):
            entry.update(cost_ms=partition.total_ms, objective=partition.objective,
                         cost_model=partition.cost_model)
        self._guard(self.session.save_partitions, [entry])

    # -- export --------------------------------------------------------------------------------

    def default_export_path(self, cuts: tuple[int, ...]) -> Path:
        base = self.session_path
        return base.with_name(f"{base.stem}-partition-{'_'.join(map(str, cuts))}.json")

    def export(self, partition: Partition, path: Path) -> Path:
        """The engine's versioned export document for one partition, with the chain and
        the link values it was ranked under."""
        from backend.export import build_export, write_export

        devices = [{"name": d.name, "kind": d.kind, "runtime": d.runtime,
                    "config": d.runtime_config().to_dict()} for d in self.chain.devices]
        links = [{"name": x.name, "from": a.name, "to": b.name,
                  "bandwidth_mbps": x.bandwidth_mbps, "latency_ms": x.latency_ms}
                 for x, (a, b) in zip(self.links, itertools.pairwise(self.chain.devices),
                                      strict=True)]
        ref = self.session.model()
        doc = build_export(self.analysis, [partition], devices=devices, links=links,
                           cost_model=partition.cost_model, objective=partition.objective,
                           model_path=ref.path, sha256=ref.sha256, builtin=ref.builtin)
        return write_export(doc, path)[0]

    # -- traces --------------------------------------------------------------------------------

    def trace_inputs(self) -> tuple[Ranker, list[str], list[float], list[float]]:
        """What a trace replay needs, gathered on the UI thread (the ranker reads the
        session once): ranker, link names, typed bandwidths and latencies."""
        ranker = self.ranker()
        if ranker is None:
            raise OmdpError("nothing measured yet", "profile first, then replay a trace")
        return (ranker, [x.name for x in self.links], [x.bandwidth_mbps for x in self.links],
                [x.latency_ms for x in self.links])


def load_trace(ranker: Ranker, names: list[str], bandwidths: list[float],
               latencies: list[float], path: str, link: str) -> Playback:
    """Read a trace for one link and replay it with the engine (every step ranked, every
    partition priced): slow enough for a worker thread, and touches no session."""
    from backend.solver.traces import align_traces, analyse_trace
    from backend.solver.traces import load_trace as read_trace

    trace = read_trace(path, link)
    timeline = align_traces({link: trace}, names, bandwidths)
    analysis = analyse_trace(ranker, timeline, latency_ms=latencies)
    return Playback(path=str(path), link=link, link_index=names.index(link),
                    timeline=timeline, analysis=analysis)


def _num(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if number != number else number  # NaN from SQL NULL


async def _local_hello() -> tuple[bool, str]:
    """Start the local agent with no job: it says hello (versions, host facts) and exits."""
    import asyncio
    import sys

    from backend.device.protocol import Hello, ProtocolError, decode

    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "backend.device.agent", stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        out, err = await asyncio.wait_for(proc.communicate(b""), 60)
    except TimeoutError:
        proc.kill()
        return False, "the agent did not answer within 60 s"
    first = out.decode(errors="replace").splitlines()[:1]
    try:
        hello = decode(first[0]) if first else None
    except ProtocolError as exc:
        return False, f"agent spoke no protocol: {exc}"
    if not isinstance(hello, Hello):
        tail = err.decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
        return False, f"agent did not start: {tail[0]}"
    v, h = hello.versions, hello.host
    runtimes = ", ".join(f"{k} {v[k]}" for k in ("onnxruntime", "openvino") if v.get(k))
    return True, (f"{runtimes or 'no runtime'} · {h.get('cores', '?')} cores · "
                  f"agent {hello.agent} (pid {hello.pid}) said hello")


# -- opening -----------------------------------------------------------------------------------

def builtin_models() -> list[str]:
    from backend.model import zoo

    return [e.name for e in zoo.list_models()]


def sessions_dir() -> Path:
    """`$OMDP_SESSIONS_DIR`, else `sessions/` in the working folder (the README's place)."""
    return Path(os.environ.get("OMDP_SESSIONS_DIR", "sessions"))


def recent_sessions(limit: int = 20) -> list[Any]:
    """The engine's session listing (newest first), or [] without a sessions folder."""
    from backend.profiling.session import list_sessions

    try:
        return list_sessions(sessions_dir())[:limit]
    except OmdpError:
        return []


# The demo: YOLOv5n on three local devices made to differ like a real chain: the glasses
# get 1 thread on CPU 0 with onnxruntime's graph optimisations off (a weak device, ~70 ms
# for the model here), the phone 1 optimised thread on CPU 1 (~40 ms), the cloud both
# CPUs (~25 ms); lab-like links; quick timing, so profiling takes well under a minute.
DEMO_MODEL = "yolov5n"
DEMO_CANDIDATES = 6
DEMO_DEVICES = [
    {"name": "glasses", "runtime": "onnxruntime", "threads": 1, "cpus": [0],
     "graph_opt": "disable"},
    {"name": "phone", "runtime": "onnxruntime", "threads": 1, "cpus": [1]},
    {"name": "cloud", "runtime": "onnxruntime", "threads": 2},
]
DEMO_LINKS = {("glasses", "phone"): (20.0, 5.0), ("phone", "cloud"): (100.0, 20.0)}
DEMO_TIMING = {"warmup": 2, "min_runs": 5, "max_runs": 60, "max_seconds": 1.2}
DEMO_NODE_TIMES_RUNS = 3


def demo_chain() -> Chain:
    """The demo's chain, with CPU pins this machine does not have dropped."""
    available = set(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else set(
        range(os.cpu_count() or 1))
    devices = []
    for d in DEMO_DEVICES:
        d = dict(d)
        if any(c not in available for c in d.get("cpus", [])):
            d.pop("cpus")
        devices.append(DeviceSpec.from_dict(d))
    links = [LinkSpec(a, b, bw, lat) for (a, b), (bw, lat) in DEMO_LINKS.items()]
    return Chain.of(devices, links)


def local_chain() -> Chain:
    """A new session's chain when no devices file is given: this machine alone."""
    return Chain.of([DeviceSpec("local")])


def prepare(launch: Any) -> Opened:
    """Everything slow about opening (runs in a worker thread): analyse the model, read
    the devices file, decide between a new session and a resume. Touches no session."""
    from backend.chain import load_devices
    from backend.model.analysis import analyze
    from backend.profiling.session import default_path

    if launch.kind == "session":
        path = Path(launch.session)
        ref = _peek(path)
        shapes = launch.input_shapes or ref.input_shapes
        model_ref = ref.builtin or ref.path or "?"
        analysis = analyze(model_ref, shapes)
        return Opened(analysis, model_ref, ref.builtin, path, resume=True)
    if launch.kind == "demo":
        options = {"model": DEMO_MODEL, "candidates": DEMO_CANDIDATES, "timing": DEMO_TIMING,
                   "node_times_runs": DEMO_NODE_TIMES_RUNS, **launch.demo_options}
        path = Path(launch.session) if launch.session else sessions_dir() / "demo.omdp"
        model_ref = str(options["model"])
        analysis = analyze(model_ref, launch.input_shapes)
        return Opened(analysis, model_ref, model_ref if analysis.path is None else None, path,
                      resume=path.exists(), chain=demo_chain(),
                      candidates=int(options["candidates"]), timing=dict(options["timing"]),
                      node_times_runs=int(options["node_times_runs"]),
                      ui={"screen": "profile"})  # one key (s) from there starts profiling
    model_ref = launch.model or DEMO_MODEL
    path = Path(launch.session) if launch.session else default_path(model_ref, sessions_dir())
    analysis = analyze(model_ref, launch.input_shapes)
    chain = load_devices(launch.devices) if launch.devices else None
    return Opened(analysis, model_ref, model_ref if analysis.path is None else None, path,
                  resume=path.exists(), chain=chain)


def _peek(path: Path):
    """The model a session was made for (read-only, closed at once)."""
    with Session.open(path, readonly=True) as s:
        return s.model()


def open_workspace(opened: Opened) -> Workspace:
    """Create or resume the session (on the loop's thread: it owns the connection)."""
    if opened.resume:
        session = Session.open(opened.path, check_model=True)
        try:
            session.check_model(opened.analysis)
            if opened.chain is not None and session.chain().names == opened.chain.names \
                    and opened.ui is None:
                session.update_chain(opened.chain)  # `omdp tui --devices` again: new options
        except BaseException:
            session.close()
            raise
        return Workspace(opened.analysis, opened.model_ref, session)
    chain = opened.chain or local_chain()
    k = opened.candidates if isinstance(opened.candidates, int) else None
    cands = opened.analysis.candidates(k) if k else list(opened.candidates or [])
    session = Session.create(opened.path, opened.analysis, chain, cands,
                             builtin=opened.builtin)
    if opened.timing is not None:
        session.set_meta("timing", opened.timing)
    if opened.node_times_runs is not None:
        session.set_meta("node_times_runs", opened.node_times_runs)
    for key, value in (opened.ui or {}).items():
        session.set_ui_state(key, value)
    ws = Workspace(opened.analysis, opened.model_ref, session)
    ws._save_links()  # the chain's configured values become the operator's starting values
    return ws
