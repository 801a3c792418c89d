"""Running one route on the chain: start a stage per device, wire them device to device,
drive the frames, collect every stage's stamps and the final output.

Steps, each bounded by `timeout_s`: every stage starts and loads its segment; the ends
that listen say their ports and the ends that connect are told where (the downstream end
listens, unless only the upstream one is an ssh device, which a local device cannot be
assumed to reach); each link's clock offset is measured; then the frames: for the latency
objective the source is told `go` for each frame once the final stage has finished the
one before, for throughput it runs them all back to back. A stage that fails stops the
run: every stage is killed and the failure names the device that caused it (a stage whose
neighbour vanished reports that, and is not blamed when the neighbour itself failed).
"""

from __future__ import annotations

import asyncio
import ipaddress
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from backend.chain import Chain
from backend.remote.stages import StageFailed, StageLauncher, StageProcess
from backend.remote.target import SshTarget, target_from_spec
from backend.validation.route import Route

BLAME_WINDOW_S = 1.0  # after a failure, how long to wait for the one that caused it
HEADER_BYTES = 4096  # a frame's header, at most, for the byte budget


@dataclass(frozen=True)
class RunSettings:
    frames: int = 20
    warmup: int = 3
    objective: str = "latency"  # one frame at a time; "throughput": back to back
    clock_rounds: int = 16
    timeout_s: float = 120.0
    solo_runs: int = 5  # each segment also timed alone, one device at a time, before frames

    @property
    def total(self) -> int:
        return self.warmup + self.frames


@dataclass
class StageRecord:
    """What one stage reported."""

    device: str
    pid: int | None = None
    load_ms: float | None = None
    runtime: dict[str, Any] | None = None
    clock: tuple[float, float] | None = None  # (next stage's clock - this one's, rtt), s
    solo_ms: list[float] = field(default_factory=list)  # its segment alone, just before
    frames: dict[int, dict[str, Any]] = field(default_factory=dict)
    done: bool = False  # said `done` (the final stage: after its output)


@dataclass
class ChainRun:
    stages: list[StageRecord]
    output: dict[str, np.ndarray]
    loopback: list[bool]  # per hop: both ends on this machine's loopback
    seconds: float


@dataclass
class RunProgress:
    """Frames the final stage has finished so far (warm-up included)."""

    done: int
    total: int
    phase: str  # "start" | "solo" | "frames" | "done"
    pids: dict[str, int] = field(default_factory=dict)


async def run_route(
    route: Route,
    chain: Chain,
    *,
    launcher: StageLauncher,
    model_file: Path,
    model_sha256: str,
    input_shapes: dict[str, list[int]],
    npy: dict[str, Path],
    cut_names: list[tuple[str, ...]],
    cut_bytes: list[int],
    settings: RunSettings,
    on_progress: Callable[[RunProgress], None] | None = None,
) -> ChainRun:
    """Run `route` (see the module docstring); StageFailed names the failing device."""
    t_start = time.perf_counter()

    def report(progress: RunProgress) -> None:
        if on_progress is not None:
            on_progress(progress)

    specs = [chain.device(s.device) for s in route.stages]
    targets = [target_from_spec(d) for d in specs]
    n_hops = len(route.hops)
    # who listens on each hop, and where it is reached
    down_listens = [
        isinstance(targets[k + 1], SshTarget) or not isinstance(targets[k], SshTarget)
        for k in range(n_hops)
    ]
    where: list[str] = []
    for k in range(n_hops):
        where.append(await launcher.address_of(targets[k + 1 if down_listens[k] else k]))
    loopback = [_is_loopback(a) for a in where]
    tokens = [secrets.token_hex(32) for _ in range(n_hops)]
    total = settings.total

    def job(i: int) -> dict[str, Any]:
        plan, spec = route.stages[i], specs[i]
        up = None if i == 0 else ("listen" if down_listens[i - 1] else "connect")
        down = None if plan.final else ("connect" if down_listens[i] else "listen")
        binds = [where[i - 1]] if up == "listen" else []
        binds += [where[i]] if down == "listen" else []
        budgets = [cut_bytes[route.hops[h].position] for h in (i - 1, i) if 0 <= h < n_hops]
        return {
            "model_sha256": model_sha256,
            "input_shapes": input_shapes,
            "runtime": spec.runtime_config().to_dict() if plan.segment else None,
            "segment": list(plan.segment) if plan.segment else None,
            "sends": list(cut_names[plan.sends]),
            "upstream": up,
            "downstream": down,
            "up_token": tokens[i - 1] if i > 0 else "",
            "down_token": tokens[i] if not plan.final else "",
            "bind": _bind(binds[0]) if binds else "127.0.0.1",
            "final": plan.final,
            "frames": settings.frames,
            "warmup": settings.warmup,
            "mode": settings.objective,
            "clock_rounds": settings.clock_rounds,
            "solo_runs": settings.solo_runs,
            "budget": (max(budgets, default=0) + HEADER_BYTES) * total + (1 << 20),
            "timeout": settings.timeout_s,
            "cpus": spec.cpus if spec.kind == "local" else None,
        }

    records = [StageRecord(s.device) for s in route.stages]
    stages: list[StageProcess] = []
    events: asyncio.Queue[tuple[int, dict[str, Any] | StageFailed]] = asyncio.Queue()
    pumps: list[asyncio.Task[None]] = []
    output_bytes = cut_bytes[-1] + (1 << 16)
    try:
        for i, target in enumerate(targets):
            source_npy = npy if i == 0 else {}
            stages.append(
                await launcher.start(target, job(i), model_file, source_npy, output_bytes)
            )
        for i, stage in enumerate(stages):
            pumps.append(asyncio.create_task(_pump(i, stage, events)))
        report(RunProgress(0, total, "start"))

        async def next_event() -> tuple[int, dict[str, Any]]:
            try:
                i, ev = await asyncio.wait_for(events.get(), settings.timeout_s)
            except TimeoutError:
                raise StageFailed(
                    "?", f"no answer from the chain within {settings.timeout_s:g} s"
                ) from None
            if isinstance(ev, StageFailed):
                raise await _blame(ev, events)
            _record(records[i], ev)
            return i, ev

        ports: dict[tuple[int, str], int] = {}
        listening = {(k + 1, "up") if down_listens[k] else (k, "down") for k in range(n_hops)}
        while not listening <= set(ports):
            i, ev = await next_event()
            if ev["type"] == "listening":
                ports[(i, ev["side"])] = ev["port"]
        for i, stage in enumerate(stages):
            peers: dict[str, Any] = {"type": "peers"}
            if i > 0 and not down_listens[i - 1]:
                peers["up"] = {"host": where[i - 1], "port": ports[(i - 1, "down")]}
            if i < n_hops and down_listens[i]:
                peers["down"] = {"host": where[i], "port": ports[(i + 1, "up")]}
            if len(peers) > 1:
                await stage.send(peers)
        ready: set[int] = set()
        while len(ready) < len(stages):
            i, ev = await next_event()
            if ev["type"] == "ready":
                ready.add(i)
        if settings.solo_runs:
            for i, plan in enumerate(route.stages):
                if plan.segment is not None:
                    report(RunProgress(0, total, "solo"))
                    await stages[i].send("solo")
                    while not records[i].solo_ms:
                        await next_event()
        pids = {r.device: r.pid for r in records if r.pid is not None}
        final = records[-1]
        source = stages[0]
        if settings.objective == "throughput":
            await source.send("run")
        for k in range(total):
            if settings.objective == "latency":
                await source.send("go")
            while k not in final.frames:
                await next_event()
            report(RunProgress(k + 1, total, "frames", pids))
        while not all(r.done for r in records):
            await next_event()
        report(RunProgress(total, total, "done", pids))
        return ChainRun(records, dict(stages[-1].output), loopback, time.perf_counter() - t_start)
    finally:
        for task in pumps:
            task.cancel()
        for stage in stages:
            stage.kill()
        await asyncio.gather(*(s.finish(2.0) for s in stages), return_exceptions=True)


async def _pump(
    i: int, stage: StageProcess, events: asyncio.Queue[tuple[int, dict[str, Any] | StageFailed]]
) -> None:
    """One stage's events into the shared queue, until it is done or fails."""
    while True:
        try:
            ev = await stage.event()
        except StageFailed as exc:
            await events.put((i, exc))
            return
        await events.put((i, ev))
        if ev["type"] == "done":
            return


async def _blame(
    first: StageFailed, events: asyncio.Queue[tuple[int, dict[str, Any] | StageFailed]]
) -> StageFailed:
    """The failure that caused the others: one not about a vanished neighbour, if any
    arrives within BLAME_WINDOW_S."""
    if first.phase != "link":
        return first
    deadline = time.monotonic() + BLAME_WINDOW_S
    while (left := deadline - time.monotonic()) > 0:
        try:
            _, ev = await asyncio.wait_for(events.get(), left)
        except TimeoutError:
            break
        if isinstance(ev, StageFailed) and ev.phase != "link":
            return ev
    return first


def _record(record: StageRecord, ev: dict[str, Any]) -> None:
    kind = ev["type"]
    if kind == "hello":
        record.pid = ev["pid"]
    elif kind == "loaded":
        record.load_ms = float(ev["load_ms"])
        record.runtime = ev["runtime"]
    elif kind == "solo":
        record.solo_ms = [float(x) for x in ev["ms"]]
    elif kind == "clock":
        record.clock = (float(ev["offset_s"]), float(ev["rtt_s"]))
    elif kind == "frame":
        record.frames[ev["i"]] = ev
    elif kind == "done":
        record.done = True


def _is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return address == "localhost"


def _bind(address: str) -> str:
    """Where a listening end binds: loopback stays loopback, else every interface."""
    if _is_loopback(address):
        return "127.0.0.1"
    return "::" if ":" in address else "0.0.0.0"
