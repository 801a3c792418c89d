"""Running a plan: one agent per device, all devices at once, results into the session.

Asyncio, one event loop thread: agents stream JSON lines, each result is committed to the
session as it arrives, and typed events go to a callback and/or an async iterator (the
TUI's workers turn them into messages). A device that dies is reported; the others go on.

Local devices that share CPUs would disturb each other's timings, so by default one starts
only when its CPUs are free (devices pinned to disjoint `cpus` run together);
`share_cpus=True` runs everything at once.

Transport (spawning a process, moving lines) is separate from protocol (`agent.EventReader`):
`LocalTransport` runs the agent as a subprocess here; an SSH transport provides the same
methods.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hashlib
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import onnx

from backend.chain import Chain, DeviceSpec, cpu_set
from backend.device import agent as proto
from backend.device.runtimes import TimingSettings
from backend.profiling.plan import PlanItem
from backend.profiling.session import Session

PROJECT_ROOT = Path(__file__).resolve().parents[2]
STOP_GRACE_S = 3.0


# -- model cache -------------------------------------------------------------------------------

def put_in_cache(model: onnx.ModelProto | bytes, cache_dir: str | os.PathLike) -> tuple[Path, str]:
    """Write a model once to `<cache>/<sha256>.onnx` (atomic rename); returns (path, sha)."""
    data = model if isinstance(model, bytes) else model.SerializeToString()
    sha = hashlib.sha256(data).hexdigest()
    cache = Path(cache_dir)
    target = cache / f"{sha}.onnx"
    if not target.exists():
        cache.mkdir(parents=True, exist_ok=True)
        tmp = cache / f".{sha}.{os.getpid()}.tmp"
        tmp.write_bytes(data)
        os.replace(tmp, target)
    return target, sha


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


@dataclass
class DeviceStarted:
    device: str
    total: int
    host: dict[str, Any]
    versions: dict[str, Any]


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


JobEvent = (Measured | DeviceStarted | Progress | Notice | DeviceFinished | DeviceFailed
            | RunFinished)


def event_dict(event: JobEvent) -> dict[str, Any]:
    """JSON-ready form: {"event": "measured", ...}."""
    name = {Measured: "measured", DeviceStarted: "device_started", Progress: "progress",
            Notice: "notice", DeviceFinished: "device_finished", DeviceFailed: "device_failed",
            RunFinished: "run_finished"}[type(event)]
    return {"event": name, **asdict(event)}


# -- transports ---------------------------------------------------------------------------------

class Transport:
    """Lines to and from one agent. Subclasses: LocalTransport here, SSH elsewhere."""

    description = "agent"

    async def start(self) -> None:
        raise NotImplementedError

    async def send(self, line: str) -> None:
        raise NotImplementedError

    async def readline(self) -> str | None:
        """The next stdout line, or None at EOF."""
        raise NotImplementedError

    async def close_input(self) -> None:
        """EOF on the agent's stdin: it stops after the current run."""

    def terminate(self) -> None:
        """Ask the agent to stop now (SIGTERM or equivalent)."""

    def kill(self) -> None:
        """End the agent at once."""

    async def wait(self, timeout: float) -> int | None:
        """Exit code, or None if still running after `timeout` s."""
        raise NotImplementedError

    def stderr_tail(self) -> str:
        return ""


class LocalTransport(Transport):
    """The agent as a subprocess of this machine (`python -m backend.device.agent`)."""

    def __init__(self, cache_dir: str | os.PathLike, python: str = sys.executable):
        self.cache_dir = str(cache_dir)
        self.python = python
        self.proc: asyncio.subprocess.Process | None = None
        self._stderr: collections.deque[str] = collections.deque(maxlen=40)
        self._stderr_task: asyncio.Task | None = None
        self.description = "local agent"

    async def start(self) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            [str(PROJECT_ROOT), *filter(None, [env.get("PYTHONPATH")])])
        # own session: a Ctrl-C in the terminal reaches the profiler, which stops agents
        self.proc = await asyncio.create_subprocess_exec(
            self.python, "-m", "backend.device.agent", "--cache", self.cache_dir,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, env=env, start_new_session=True,
            limit=64 * 1024 * 1024)
        self.description = f"local agent pid {self.proc.pid}"
        self._stderr_task = asyncio.create_task(self._drain_stderr())

    async def _drain_stderr(self) -> None:
        assert self.proc and self.proc.stderr
        while True:
            line = await self.proc.stderr.readline()
            if not line:
                return
            self._stderr.append(line.decode(errors="replace").rstrip())

    async def send(self, line: str) -> None:
        assert self.proc and self.proc.stdin
        self.proc.stdin.write((line.rstrip("\n") + "\n").encode())
        await self.proc.stdin.drain()

    async def readline(self) -> str | None:
        assert self.proc and self.proc.stdout
        line = await self.proc.stdout.readline()
        return line.decode(errors="replace") if line else None

    async def close_input(self) -> None:
        if self.proc and self.proc.stdin and not self.proc.stdin.is_closing():
            self.proc.stdin.close()
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                await self.proc.stdin.wait_closed()

    def _signal(self, sig: int) -> None:
        if self.proc and self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(sig)

    def terminate(self) -> None:
        self._signal(signal.SIGTERM)

    def kill(self) -> None:
        self._signal(signal.SIGKILL)

    async def wait(self, timeout: float) -> int | None:
        if self.proc is None:
            return None
        try:
            code = await asyncio.wait_for(self.proc.wait(), timeout)
        except TimeoutError:
            return None
        if self._stderr_task:
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(self._stderr_task, 1.0)
        return code

    def stderr_tail(self) -> str:
        return "\n".join(self._stderr)


TransportFactory = Callable[[DeviceSpec], Transport]


def cpu_claims(chain: Chain, share_cpus: bool = False) -> dict[str, frozenset[int]]:
    """The CPUs each device occupies while it measures: a local device its pinned CPUs
    (all of this machine's when not pinned); empty (no constraint) for remote devices or
    with `share_cpus`."""
    if share_cpus:
        return {d.name: frozenset() for d in chain.devices}
    return {d.name: cpu_set(d) if d.kind == "local" else frozenset() for d in chain.devices}


def _grantable(waiting: list[str], busy: set[int], claims: dict[str, frozenset[int]],
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
                    lambda: name in _grantable(self.waiting, self.busy, self.claims))
            finally:
                self.waiting.remove(name)
            self.busy |= self.claims[name]
            self._cond.notify_all()

    async def release(self, name: str) -> None:
        async with self._cond:
            self.busy -= self.claims[name]
            self._cond.notify_all()


def wall_seconds(per_device: dict[str, float], claims: dict[str, frozenset[int]],
                 order: Sequence[str]) -> float:
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
    transport: Transport | None = None
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


class Profiler:
    """Runs what the session still misses on every device of the chain.

    `await run()` returns a RunFinished; `cancel()` stops every agent (what was measured
    stays); `pause()`/`resume()` hold agents between segments. Events reach `on_event`
    and every `events()` iterator.
    """

    def __init__(self, session: Session, chain: Chain, model_path: str | os.PathLike,
                 sha256: str, *, options: ProfileOptions | None = None,
                 cache_dir: str | os.PathLike | None = None,
                 on_event: Callable[[JobEvent], None] | None = None,
                 transport_factory: TransportFactory | None = None,
                 estimates: dict[str, float] | None = None):
        self.session = session
        self.chain = chain
        self.model_path = str(model_path)
        self.sha256 = sha256
        self.options = options or ProfileOptions()
        self.cache_dir = Path(cache_dir) if cache_dir else proto.default_cache_dir()
        self.on_event = on_event
        self.transport_factory = transport_factory or self.default_transport
        self.estimates = estimates or {}
        self.state: dict[str, _DeviceState] = {n: _DeviceState() for n in chain.names}
        self._queues: list[asyncio.Queue] = []
        self._cancelled = False
        self._running = asyncio.Event()
        self._running.set()

    # -- control ---------------------------------------------------------------------------

    @property
    def cancelled(self) -> bool:
        return self._cancelled

    def cancel(self) -> None:
        """Stop everything soon: agents stop between runs (killed if they do not)."""
        if self._cancelled:
            return
        self._cancelled = True
        self._running.set()
        for st in self.state.values():
            if st.transport is not None:
                st.transport.terminate()
                asyncio.get_running_loop().call_later(STOP_GRACE_S, st.transport.kill)

    def pause(self) -> None:
        """Agents finish their current segment, then wait; queued devices do not start."""
        self._running.clear()
        self._broadcast('{"type":"pause"}')

    def resume(self) -> None:
        self._running.set()
        self._broadcast('{"type":"resume"}')

    def _broadcast(self, line: str) -> None:
        for st in self.state.values():
            if st.transport is not None:
                task = asyncio.ensure_future(st.transport.send(line))
                task.add_done_callback(lambda t: t.exception())

    # -- events ----------------------------------------------------------------------------

    async def events(self) -> AsyncIterator[JobEvent]:
        """Every event from now until the run finishes."""
        q: asyncio.Queue = asyncio.Queue()
        self._queues.append(q)
        try:
            while True:
                ev = await q.get()
                yield ev
                if isinstance(ev, RunFinished):
                    return
        finally:
            self._queues.remove(q)

    def default_transport(self, device: DeviceSpec) -> Transport:
        """A local subprocess, or the agent over SSH for kind = "ssh"."""
        if device.kind == "ssh":
            from backend.remote.ssh import SshAgentTransport, target_from_spec

            return SshAgentTransport(target_from_spec(device, self.chain.source),
                                     on_status=lambda m: self._emit(Notice(device.name, m)))
        return LocalTransport(self.cache_dir)

    def _emit(self, event: JobEvent) -> None:
        if self.on_event is not None:
            self.on_event(event)
        for q in self._queues:
            q.put_nowait(event)

    def _eta(self, name: str) -> float | None:
        st = self.state[name]
        if st.started is None:
            return self.estimates.get(name)
        if st.done == 0:
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
        scheduler = CpuScheduler(cpu_claims(self.chain, self.options.share_cpus),
                                 self.chain.names)
        await asyncio.gather(*(self._run_scheduled(scheduler, n, by_device[n])
                               for n in self.chain.names))
        failed = {n: st.failed for n, st in self.state.items() if st.failed}
        summary = RunFinished(sum(st.done - st.errors for st in self.state.values()),
                              sum(st.errors for st in self.state.values()), failed,
                              self._cancelled, time.monotonic() - t0)
        self._emit(summary)
        return summary

    async def _run_scheduled(self, scheduler: CpuScheduler, name: str,
                             items: list[PlanItem]) -> None:
        if not items and (self.options.node_times_runs == 0
                          or self.session.has_node_times(name)):
            return
        await self._running.wait()
        if self._cancelled:
            return
        await scheduler.acquire(name)
        try:
            await self._running.wait()
            if not self._cancelled:
                await self._run_device(self.chain.device(name), items)
        finally:
            await scheduler.release(name)

    async def _run_device(self, device: DeviceSpec, items: list[PlanItem]) -> None:
        name = device.name
        st = self.state[name]
        cfg = device.runtime_config()
        config_key = self.session.device_configs()[name]
        run_id = self.session.start_run(name)
        self.session.mark_pending(items, run_id)
        reader = proto.EventReader()
        want_nodes = self.options.node_times_runs > 0 and not self.session.has_node_times(name)
        model = self.session.model()
        job = proto.Job(
            model_sha256=self.sha256, model_path=self.model_path,
            items=[(it.start, it.end) for it in items], runtime=cfg.to_dict(),
            timing=asdict(self.options.timing), seed=self.options.seed,
            input_shapes=model.input_shapes, inputs=self.options.inputs,
            npy=dict(self.options.npy), node_times_runs=self.options.node_times_runs
            if want_nodes else 0, cpus=device.cpus)
        transport = self.transport_factory(device)
        st.transport = transport
        status, message = "failed", None
        try:
            await transport.start()
            await transport.send(job.to_line())
            status, message = await self._stream(device, transport, reader, run_id, config_key)
        except asyncio.CancelledError:
            transport.kill()
            status, message = "stopped", "cancelled"
            raise
        except (OSError, proto.ProtocolError) as exc:
            message = f"{transport.description}: {exc}"
        finally:
            st.transport = None
            await transport.close_input()
            if await transport.wait(STOP_GRACE_S) is None:
                transport.kill()
                await transport.wait(STOP_GRACE_S)
            if status == "failed":
                tail = transport.stderr_tail().strip().splitlines()
                detail = message or f"{transport.description} ended without finishing"
                if tail:
                    detail += f" (last log line: {tail[-1][:200]})"
                st.failed = detail
                self._emit(DeviceFailed(name, detail, st.done, st.total))
            with contextlib.suppress(Exception):
                self.session.finish_run(run_id, status, st.failed or message)

    async def _stream(self, device: DeviceSpec, transport: Transport,
                      reader: proto.EventReader, run_id: int,
                      config_key: str) -> tuple[str, str | None]:
        """Read the agent until `done` or EOF; returns (run status, message)."""
        name = device.name
        st = self.state[name]
        job_error: str | None = None
        while True:
            line = await transport.readline()
            if line is None:
                if self._cancelled:
                    return "stopped", "cancelled"
                return "failed", job_error or (
                    f"{transport.description} exited before finishing")
            ev = reader.feed(line)
            if ev is None:
                continue
            if isinstance(ev, proto.Hello):
                st.started = time.monotonic()
                self.session.record_hello(run_id, asdict(ev))
                self._emit(DeviceStarted(name, st.total, ev.host, ev.versions))
            elif isinstance(ev, proto.Progress):
                self._emit(Progress(name, st.done, st.total, self._eta(name), ev.phase,
                                    ev.segment))
            elif isinstance(ev, proto.Result):
                mid = self.session.record_result(
                    name, ev.segment, load_ms=ev.load_ms, samples=ev.samples, stats=ev.stats,
                    runtime=ev.runtime, stop=ev.stop, run=run_id, config=config_key)
                st.done += 1
                m = Measured(name, ev.segment, "ok", ev.stats.get("median"), len(ev.samples),
                             ev.load_ms, None, mid)
                self._emit(m)
                self._emit(Progress(name, st.done, st.total, self._eta(name), "measured",
                                    ev.segment, m))
            elif isinstance(ev, proto.SegmentError):
                if ev.segment is None:
                    if ev.kind == "job":
                        job_error = ev.message
                    else:
                        self._emit(Notice(name, ev.message))
                    continue
                if ev.kind == "node_times":
                    self._emit(Notice(name, f"per-node times failed: {ev.message}"))
                    continue
                mid = self.session.record_error(name, ev.segment, ev.message, run=run_id,
                                                config=config_key)
                st.done += 1
                st.errors += 1
                m = Measured(name, ev.segment, "error", message=ev.message, measurement_id=mid)
                self._emit(m)
                self._emit(Progress(name, st.done, st.total, self._eta(name), "measured",
                                    ev.segment, m))
            elif isinstance(ev, proto.NodeTimes):
                self.session.record_node_times(
                    name, ev.times, runtime=ev.runtime, runs=ev.runs,
                    unattributed_ms=ev.unattributed_ms, total_ms=ev.total_ms, config=config_key)
            elif isinstance(ev, proto.Done):
                if job_error is not None:
                    return "failed", job_error
                stopped = ev.stopped or self._cancelled
                self._emit(DeviceFinished(name, st.done, st.total, st.errors, stopped,
                                          ev.seconds))
                return ("stopped" if stopped else "done"), None
