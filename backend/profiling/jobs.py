"""Running a plan: one agent per device, all devices at once, results into the session.

Asyncio, one event loop thread: each device's transport (backend/remote/: a local
subprocess or SSH, one `AgentTransport` shape) gives the agent's events, already decoded
strictly; here they are checked once more against the whole job and the model (a device
is never trusted: a bad line fails that device, stores nothing and the others go on),
their text is made inert, each result is committed to the session as it arrives, and
typed events go to a callback and/or an async iterator (the TUI's workers turn them into
messages). Every wait on a device is bounded by the watchdog (watchdog.py).

Local devices that share CPUs would disturb each other's timings, so by default one starts
only when its CPUs are free (devices pinned to disjoint `cpus` run together);
`share_cpus=True` runs everything at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from backend.chain import Chain, DeviceSpec, cpu_set
from backend.device import protocol as proto
from backend.device.probe import throttle_reason
from backend.device.protocol import TimingSettings
from backend.errors import OmdpError
from backend.profiling import plan
from backend.profiling.plan import PlanItem
from backend.profiling.session import Session
from backend.profiling.watchdog import Overrun, Watch, WatchdogSettings
from backend.remote import compat
from backend.remote.transport import AgentTransport
from backend.text import inert, inert_data

STOP_GRACE_S = 2.0  # after a stop request, before the agent is killed
POLL_S = 0.5  # how often a wait looks at pause and cancel


# -- events -------------------------------------------------------------------------------------


@dataclass
class Measured:
    """A segment finished on a device: measured (`ok`) or failed (`error`)."""

    device: str
    segment: tuple[int, int]
    status: str
    median_ms: float | None = None
    samples: int = 0
    load_ms: float | None = None
    message: str | None = None
    measurement_id: int | None = None
    throttled: str | None = None  # why its numbers cannot be trusted (hot, slow CPU)


@dataclass
class DeviceStarted:
    device: str
    total: int
    host: dict[str, Any]
    versions: dict[str, Any]
    mode: str = "model"  # "segments": the lab cut the segments (no onnx there)


@dataclass
class Progress:
    device: str
    done: int
    total: int
    eta_s: float | None
    phase: str
    segment: tuple[int, int] | None = None
    last: Measured | None = None


@dataclass
class Notice:
    """Something worth telling that is not a failure (e.g. fell back to random inputs)."""

    device: str
    message: str


@dataclass
class DeviceFinished:
    device: str
    done: int
    total: int
    errors: int
    stopped: bool
    seconds: float


@dataclass
class DeviceFailed:
    device: str
    message: str
    done: int = 0
    total: int = 0


@dataclass
class RunFinished:
    measured: int
    errors: int
    failed: dict[str, str]  # device -> why
    stopped: bool
    seconds: float


JobEvent = (
    Measured | DeviceStarted | Progress | Notice | DeviceFinished | DeviceFailed | RunFinished
)


def event_dict(event: JobEvent) -> dict[str, Any]:
    """JSON-ready form: {"event": "measured", ...}."""
    name = {
        Measured: "measured",
        DeviceStarted: "device_started",
        Progress: "progress",
        Notice: "notice",
        DeviceFinished: "device_finished",
        DeviceFailed: "device_failed",
        RunFinished: "run_finished",
    }[type(event)]
    return {"event": name, **asdict(event)}


TransportFactory = Callable[[DeviceSpec], AgentTransport]


def cpu_claims(chain: Chain, share_cpus: bool = False) -> dict[str, frozenset[int]]:
    """The CPUs each device occupies while it measures: a local device its pinned CPUs
    (all of this machine's when not pinned); empty (no constraint) for remote devices or
    with `share_cpus`."""
    if share_cpus:
        return {d.name: frozenset() for d in chain.devices}
    return {d.name: cpu_set(d) if d.kind == "local" else frozenset() for d in chain.devices}


def _grantable(
    waiting: list[str],
    busy: set[int],
    claims: dict[str, frozenset[int]],
) -> list[str]:
    """Waiting devices (chain order) that may start now: their CPUs are free and no
    earlier waiting device wants any of them (so a device is never overtaken for long)."""
    out: list[str] = []
    wanted: set[int] = set()
    taken = set(busy)
    for name in waiting:
        cpus = claims[name]
        if not cpus & taken and not cpus & wanted:
            out.append(name)
            taken |= cpus
        wanted |= cpus
    return out


class CpuScheduler:
    """Local devices that share CPUs would disturb each other's timings: one starts only
    when none of its CPUs is in use, in chain order. Devices on disjoint CPUs overlap."""

    def __init__(self, claims: dict[str, frozenset[int]], order: Sequence[str]):
        self.claims = claims
        self.order = {n: i for i, n in enumerate(order)}
        self.busy: set[int] = set()
        self.waiting: list[str] = []
        self._cond = asyncio.Condition()

    async def acquire(self, name: str) -> None:
        async with self._cond:
            self.waiting.append(name)
            self.waiting.sort(key=self.order.__getitem__)
            try:
                await self._cond.wait_for(
                    lambda: name in _grantable(self.waiting, self.busy, self.claims)
                )
            finally:
                self.waiting.remove(name)
            self.busy |= self.claims[name]
            self._cond.notify_all()

    async def release(self, name: str) -> None:
        async with self._cond:
            self.busy -= self.claims[name]
            self._cond.notify_all()


def wall_seconds(
    per_device: dict[str, float], claims: dict[str, frozenset[int]], order: Sequence[str]
) -> float:
    """Wall time of running devices for the given seconds under CpuScheduler's policy."""
    waiting = [n for n in order if per_device.get(n, 0.0) > 0]
    running: dict[str, float] = {}
    t = 0.0
    while waiting or running:
        busy = {c for n in running for c in claims[n]}
        for n in _grantable(waiting, busy, claims):
            waiting.remove(n)
            running[n] = t + per_device[n]
        first = min(running, key=running.__getitem__)
        t = running.pop(first)
    return t


# -- the profiler ---------------------------------------------------------------------------


@dataclass
class _DeviceState:
    total: int = 0
    done: int = 0
    errors: int = 0
    started: float | None = None
    transport: AgentTransport | None = None
    failed: str | None = None


@dataclass
class ProfileOptions:
    timing: TimingSettings = field(default_factory=TimingSettings)
    seed: int = 0
    inputs: str = "random"  # "random" | "prefix"
    npy: dict[str, str] = field(default_factory=dict)  # model input -> .npy path (prefix)
    node_times_runs: int = 5  # 0: skip per-node profiling
    share_cpus: bool = False
    retry_errors: bool = False
    watchdog: WatchdogSettings = field(default_factory=WatchdogSettings)


class Profiler:
    """Runs what the session still misses on every device of the chain.

    `await run()` returns a RunFinished; `cancel()` stops every agent (what was measured
    stays; a second cancel kills them at once); `pause()`/`resume()` hold agents between
    segments. Events reach `on_event` and every `events()` iterator.
    """

    def __init__(
        self,
        session: Session,
        chain: Chain,
        model_path: str | os.PathLike[str],
        sha256: str,
        *,
        options: ProfileOptions | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        on_event: Callable[[JobEvent], None] | None = None,
        transport_factory: TransportFactory | None = None,
        estimates: dict[str, float] | None = None,
    ):
        from backend.remote.models import model_cache_dir

        self.session = session
        self.chain = chain
        self.model_path = str(model_path)
        self.sha256 = sha256
        self.options = options or ProfileOptions()
        self.cache_dir = Path(cache_dir) if cache_dir else model_cache_dir()
        self.on_event = on_event
        self.transport_factory = transport_factory or self.default_transport
        self.estimates = estimates or {}
        self.state: dict[str, _DeviceState] = {n: _DeviceState() for n in chain.names}
        self._queues: list[asyncio.Queue[JobEvent]] = []
        self._cancelled_at: float | None = None
        self._speeds: _Speeds | None = None
        self._running = asyncio.Event()
        self._running.set()
        self._model_versions: tuple[int, int] | None = None  # (opset, IR), read when needed

    # -- control ---------------------------------------------------------------------------

    @property
    def cancelled(self) -> bool:
        return self._cancelled_at is not None

    def cancel(self) -> None:
        """Stop everything soon: agents stop between runs, and are killed if they have not
        within STOP_GRACE_S. A second cancel kills them now."""
        transports = [st.transport for st in self.state.values() if st.transport is not None]
        if self._cancelled_at is not None:
            for transport in transports:
                transport.kill()
            return
        self._cancelled_at = time.monotonic()
        self._running.set()
        loop = asyncio.get_running_loop()
        for transport in transports:
            transport.stop()
            loop.call_later(STOP_GRACE_S, transport.kill)

    def pause(self) -> None:
        """Agents finish their current segment, then wait; queued devices do not start."""
        self._running.clear()
        self._broadcast("pause")

    def resume(self) -> None:
        self._running.set()
        self._broadcast("resume")

    def _broadcast(self, command: str) -> None:
        for st in self.state.values():
            if st.transport is not None:
                task = asyncio.ensure_future(st.transport.control(command))
                task.add_done_callback(lambda t: t.cancelled() or t.exception())

    # -- events ----------------------------------------------------------------------------

    async def events(self) -> AsyncIterator[JobEvent]:
        """Every event from now until the run finishes."""
        q: asyncio.Queue[JobEvent] = asyncio.Queue()
        self._queues.append(q)
        try:
            while True:
                ev = await q.get()
                yield ev
                if isinstance(ev, RunFinished):
                    return
        finally:
            self._queues.remove(q)

    def default_transport(self, device: DeviceSpec) -> AgentTransport:
        """A local subprocess, or the agent over SSH for kind = "ssh"."""
        if device.kind == "ssh":
            from backend.remote.ssh_agent import SshAgentTransport
            from backend.remote.target import SshTarget, target_from_spec

            target = target_from_spec(device, self.chain.source)
            assert isinstance(target, SshTarget)
            return SshAgentTransport(target, on_status=lambda m: self._emit(Notice(device.name, m)))
        from backend.remote.local import LocalTransport

        return LocalTransport(self.cache_dir, python=device.python or sys.executable)

    def _emit(self, event: JobEvent) -> None:
        if self.on_event is not None:
            self.on_event(event)
        for q in self._queues:
            q.put_nowait(event)

    def _eta(self, name: str) -> float | None:
        st = self.state[name]
        if st.started is None or st.done == 0:
            return self.estimates.get(name)
        elapsed = time.monotonic() - st.started
        return elapsed / st.done * (st.total - st.done)

    # -- running -----------------------------------------------------------------------------

    async def run(self, items: Sequence[PlanItem] | None = None) -> RunFinished:
        """Measure `items` (default: what the session's plan still misses)."""
        t0 = time.monotonic()
        if items is None:
            items = self.session.missing(self.session.plan_items(), self.options.retry_errors)
        by_device: dict[str, list[PlanItem]] = {n: [] for n in self.chain.names}
        for it in items:
            by_device[it.device].append(it)
        for n, its in by_device.items():
            self.state[n].total = len(its)
        self._speeds = _Speeds(self.session, self.chain, self.options.timing)
        scheduler = CpuScheduler(cpu_claims(self.chain, self.options.share_cpus), self.chain.names)
        await asyncio.gather(
            *(self._run_scheduled(scheduler, n, by_device[n]) for n in self.chain.names)
        )
        failed = {n: st.failed for n, st in self.state.items() if st.failed}
        summary = RunFinished(
            sum(st.done - st.errors for st in self.state.values()),
            sum(st.errors for st in self.state.values()),
            failed,
            self.cancelled,
            time.monotonic() - t0,
        )
        self._emit(summary)
        return summary

    async def _run_scheduled(
        self, scheduler: CpuScheduler, name: str, items: list[PlanItem]
    ) -> None:
        if not items and (self.options.node_times_runs == 0 or self.session.has_node_times(name)):
            return
        await self._running.wait()
        if self.cancelled:
            return
        await scheduler.acquire(name)
        try:
            await self._running.wait()
            if not self.cancelled:
                await self._run_device(self.chain.device(name), items)
        finally:
            await scheduler.release(name)

    def _job(self, device: DeviceSpec, items: list[PlanItem]) -> proto.Job:
        want_nodes = self.options.node_times_runs > 0 and not self.session.has_node_times(
            device.name
        )
        return proto.Job(
            model_sha256=self.sha256,
            model_path=self.model_path,
            items=[(it.start, it.end) for it in items],
            runtime=device.runtime_config().to_dict(),
            timing=self.options.timing,
            seed=self.options.seed,
            input_shapes=self.session.model().input_shapes,
            inputs=self.options.inputs,
            npy=dict(self.options.npy),
            node_times_runs=self.options.node_times_runs if want_nodes else 0,
            cpus=device.cpus,
        )

    async def _run_device(self, device: DeviceSpec, items: list[PlanItem]) -> None:
        name = device.name
        st = self.state[name]
        config_key = self.session.device_configs()[name]
        run_id = self.session.start_run(name)
        self.session.mark_pending(items, run_id)
        job = self._job(device, items)
        nodes = self.session.model().nodes
        speeds = self._speeds or _Speeds(self.session, self.chain, self.options.timing)
        transport = self.transport_factory(device)
        st.transport = transport
        status, message = "failed", None
        try:
            await transport.start(job)  # connect and upload are bounded by the transport
            watch = Watch(
                self.options.watchdog,
                list(job.items),
                lambda seg: speeds.expected(name, seg),
                (0, nodes),
                speeds.known(name),
                job.node_times_runs > 0,
            )
            conversation = proto.Conversation(job, nodes=nodes)
            status, message = await self._stream(
                device, transport, conversation, watch, run_id, config_key
            )
        except asyncio.CancelledError:
            transport.kill()
            status, message = "stopped", "cancelled"
            raise
        except Overrun as exc:
            transport.kill()
            message = f"{transport.description}: {exc}"
        except (OSError, OmdpError, proto.ProtocolError, EOFError) as exc:
            transport.kill()
            message = f"{transport.description}: {exc}"
        finally:
            st.transport = None
            grace = 0.5 if self.cancelled or status == "failed" else STOP_GRACE_S
            with contextlib.suppress(OSError, OmdpError, proto.ProtocolError):
                await transport.finish(grace)
            if status == "failed":
                tail = transport.stderr_tail().strip().splitlines()
                detail = message or f"{transport.description} ended without finishing"
                if tail:
                    detail += f" (last log line: {tail[-1][:200]})"
                st.failed = inert(detail)
                self._emit(DeviceFailed(name, st.failed, st.done, st.total))
            with contextlib.suppress(Exception):
                self.session.finish_run(run_id, status, st.failed or message)

    def _runtime_problem(self, device: DeviceSpec, versions: dict[str, Any]) -> str | None:
        """Why this device's runtime cannot read the model (an opset or IR version newer
        than its onnxruntime reads), with the fix; None when it can or nobody knows."""
        if device.runtime != "onnxruntime":
            return None
        if self._model_versions is None:
            from backend.device.segments import load_lazy

            try:
                model, _ = load_lazy(self.model_path)
            except (OSError, ValueError):
                self._model_versions = (0, 0)
            else:
                opsets = {o.domain or "ai.onnx": o.version for o in model.opset_import}
                self._model_versions = (opsets.get("ai.onnx", 0), model.ir_version)
        opset, ir = self._model_versions
        version = versions.get("onnxruntime")
        problem = compat.opset_problem(version if isinstance(version, str) else None, opset, ir)
        if problem is None:
            return None
        need = compat.ort_upgrade_for(opset, ir)
        return f"{problem}, or install onnxruntime >= {need or 'the latest'} there"

    async def _next(self, transport: AgentTransport, watch: Watch) -> proto.Event | None:
        """The transport's next event, or Overrun when the device's step runs out of time
        (time spent paused does not count; after a cancel the wait is short)."""
        task = asyncio.ensure_future(transport.next_event())
        try:
            while True:
                before = time.monotonic()
                wait = max(0.0, min(watch.remaining(), POLL_S))
                done, _ = await asyncio.wait([task], timeout=wait)
                if done:
                    return task.result()
                if not self._running.is_set():
                    watch.hold(time.monotonic() - before)
                elif (
                    self._cancelled_at is not None
                    and time.monotonic() > self._cancelled_at + STOP_GRACE_S + 2.0
                ):
                    return None  # cancelled and the agent did not stop: let it go
                elif watch.remaining() <= 0:
                    raise watch.overrun()
        finally:
            if not task.done():
                task.cancel()

    async def _stream(
        self,
        device: DeviceSpec,
        transport: AgentTransport,
        conversation: proto.Conversation,
        watch: Watch,
        run_id: int,
        config_key: str,
    ) -> tuple[str, str | None]:
        """Read the agent until `done` or its end; returns (run status, message)."""
        name = device.name
        st = self.state[name]
        job_error: str | None = None
        while True:
            ev = await self._next(transport, watch)
            if ev is None:
                if self.cancelled:
                    return "stopped", "cancelled"
                return "failed", job_error or (f"{transport.description} exited before finishing")
            conversation.accept(ev)  # checked against the whole job before anything is kept
            watch.seen(ev)
            if isinstance(ev, proto.Hello):
                st.started = time.monotonic()
                hello = inert_data(asdict(ev))
                self.session.record_hello(run_id, hello)
                self._emit(DeviceStarted(name, st.total, hello["host"], hello["versions"], ev.mode))
                problem = self._runtime_problem(device, ev.versions)
                if problem is not None:  # it would fail at load: say why before any timing
                    return "failed", problem
            elif isinstance(ev, proto.AgentProgress):
                self._emit(Progress(name, st.done, st.total, self._eta(name), ev.phase, ev.segment))
            elif isinstance(ev, proto.Result):
                conditions = inert_data(ev.conditions)
                throttled = throttle_reason(conditions)
                used = ev.runtime.get("device")
                mid = self.session.record_result(
                    name,
                    ev.segment,
                    load_ms=ev.load_ms,
                    samples=ev.samples,
                    stats=ev.stats,
                    runtime=inert_data(ev.runtime),
                    stop=ev.stop,
                    run=run_id,
                    config=config_key,
                    used=inert(used) if isinstance(used, str) else None,
                    conditions=conditions,
                    throttled=throttled,
                )
                st.done += 1
                m = Measured(
                    name,
                    ev.segment,
                    "ok",
                    ev.stats.get("median"),
                    len(ev.samples),
                    ev.load_ms,
                    None,
                    mid,
                    throttled,
                )
                self._emit(m)
                self._emit(
                    Progress(name, st.done, st.total, self._eta(name), "measured", ev.segment, m)
                )
            elif isinstance(ev, proto.SegmentError):
                text = inert(ev.message)
                if ev.segment is None:
                    if ev.kind == "job":
                        job_error = text
                    else:
                        self._emit(Notice(name, text))
                    continue
                if ev.kind == "node_times":
                    self._emit(Notice(name, f"per-node times failed: {text}"))
                    continue
                mid = self.session.record_error(
                    name, ev.segment, text, run=run_id, config=config_key
                )
                st.done += 1
                st.errors += 1
                m = Measured(name, ev.segment, "error", message=text, measurement_id=mid)
                self._emit(m)
                self._emit(
                    Progress(name, st.done, st.total, self._eta(name), "measured", ev.segment, m)
                )
            elif isinstance(ev, proto.NodeTimes):
                self.session.record_node_times(
                    name,
                    ev.times,
                    runtime=inert(ev.runtime),
                    runs=ev.runs,
                    unattributed_ms=ev.unattributed_ms,
                    total_ms=ev.total_ms,
                    config=config_key,
                )
            elif isinstance(ev, proto.Done):
                if job_error is not None:
                    return "failed", job_error
                stopped = ev.stopped or self.cancelled
                self._emit(DeviceFinished(name, st.done, st.total, st.errors, stopped, ev.seconds))
                return ("stopped" if stopped else "done"), None


class _Speeds:
    """What the plan expects a segment to take on a device: from earlier measurements of
    this session when there are any, else the device's configured GFLOP/s, else a guess."""

    def __init__(self, session: Session, chain: Chain, timing: TimingSettings):
        self.flops_of = plan.segment_flops(session.model().node_flops)
        rows = session.results_frame().to_dict("records")
        self.measured = plan.speeds_from_measurements(rows, self.flops_of)
        self.configured = {d.name: d.gflops for d in chain.devices if d.gflops}
        self.timing = timing

    def known(self, device: str) -> bool:
        return device in self.measured or device in self.configured

    def expected(self, device: str, segment: proto.Segment) -> float:
        item = PlanItem(device, *segment)
        est = plan.estimate([item], self.flops_of, self.timing, self.configured, self.measured)
        return max(est.per_device[device] - plan.AGENT_START_S, 0.0)
