"""The device agent: one job in on stdin, JSON lines out on stdout, logs on stderr.

Ships to devices as three plain files (agent.py, runtimes.py, segments.py) needing only
stdlib + numpy + onnx + a runtime; `python agent.py` there, `python -m backend.device.agent` here.

Protocol (version 1), one JSON object per line:
- stdout: `hello` first (protocol, versions, host facts), then per segment `progress`
  and `result` or `error` (a failing segment never stops the others), optionally
  `node_times`, and `done` last (also after a stop request).
- stdin: the `job` line, then optional control lines `pause` / `resume` / `stop`.
  EOF on stdin (the host went away), SIGTERM and SIGINT stop the agent between runs.

The model is read from a content-hash cache (`<cache>/<sha256>.onnx`): the host puts it
there once (a local path to copy from may come with the job); the agent cuts the
segments itself with `segments.GraphIndex`.

The typed events and `EventReader` are the protocol; spawning a process and moving lines
(local subprocess, SSH) is a transport's business and lives elsewhere.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import re
import shutil
import signal
import sys
import threading
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import onnx

if __package__:  # backend.device.agent, or python -m backend.device.agent
    from . import runtimes, segments
else:  # plain files copied side by side on a device
    import runtimes  # type: ignore[no-redef]
    import segments  # type: ignore[no-redef]

PROTOCOL_VERSION = 1
AGENT_VERSION = "1"


class ProtocolError(ValueError):
    """A line that is not a valid protocol message."""


# -- events (agent -> host) ------------------------------------------------------------------


@dataclass
class Hello:
    protocol: int
    agent: str
    pid: int
    versions: dict[str, Any]
    host: dict[str, Any]


@dataclass
class Progress:
    done: int
    total: int
    segment: tuple[int, int] | None
    phase: str  # "inputs" | "load" | "timing" | "node_times" | "paused"


@dataclass
class Result:
    segment: tuple[int, int]
    load_ms: float
    samples: list[float]
    stats: dict[str, Any]
    stop: str  # why timing stopped: "ci" | "max_runs" | "max_seconds"
    runtime: dict[str, Any]  # name, version, options actually used
    warmup_ms: list[float] = field(default_factory=list)


@dataclass
class SegmentError:
    segment: tuple[int, int] | None  # None: the whole job failed (bad model, no runtime)
    message: str  # one line, the runtime's own words
    kind: str  # "extract" | "inputs" | "load" | "run" | "job" | "node_times"
    detail: str = ""


@dataclass
class NodeTimes:
    runtime: str
    runs: int
    times: dict[int, float]  # node position -> median ms per run
    unattributed_ms: float  # kernels the runtime added (layout reorders...): no position
    total_ms: float


@dataclass
class Done:
    completed: int
    errors: int
    stopped: bool
    seconds: float


Event = Hello | Progress | Result | SegmentError | NodeTimes | Done
_TYPES: dict[str, type] = {
    "hello": Hello,
    "progress": Progress,
    "result": Result,
    "error": SegmentError,
    "node_times": NodeTimes,
    "done": Done,
}
_NAMES = {v: k for k, v in _TYPES.items()}


def encode(event: Event) -> str:
    """One JSON line (no newline) for an event."""
    d = asdict(event)
    if isinstance(event, NodeTimes):
        d["times"] = {str(k): v for k, v in event.times.items()}
    return json.dumps({"type": _NAMES[type(event)], **d}, separators=(",", ":"))


def decode(line: str) -> Event:
    """An event from one line; ProtocolError when it is not one."""
    try:
        d = json.loads(line)
    except json.JSONDecodeError as exc:
        raise ProtocolError(f"not JSON: {line[:120]!r}") from exc
    if not isinstance(d, dict) or d.get("type") not in _TYPES:
        raise ProtocolError(f"unknown message: {line[:120]!r}")
    cls = _TYPES[d.pop("type")]
    try:
        if "segment" in d and d["segment"] is not None:
            d["segment"] = tuple(d["segment"])
        if cls is NodeTimes:
            d["times"] = {int(k): float(v) for k, v in d["times"].items()}
        return cls(**d)
    except (TypeError, ValueError, KeyError, AttributeError) as exc:
        raise ProtocolError(f"bad '{_NAMES[cls]}' message: {exc}") from exc


class EventReader:
    """Parses an agent's stdout lines into events and checks the conversation's shape:
    `hello` first with a protocol version we speak, nothing after `done`."""

    def __init__(self) -> None:
        self.hello: Hello | None = None
        self.done: Done | None = None

    def feed(self, line: str) -> Event | None:
        """The event on this line, or None for a blank line."""
        line = line.strip()
        if not line:
            return None
        event = decode(line)
        if self.hello is None and not isinstance(event, Hello):
            raise ProtocolError(f"expected 'hello' first, got '{_NAMES[type(event)]}'")
        if isinstance(event, Hello):
            if event.protocol != PROTOCOL_VERSION:
                raise ProtocolError(
                    f"agent speaks protocol {event.protocol}, this host speaks {PROTOCOL_VERSION}"
                )
            self.hello = event
        if self.done is not None:
            raise ProtocolError(f"'{_NAMES[type(event)]}' after 'done'")
        if isinstance(event, Done):
            self.done = event
        return event


# -- the job (host -> agent) -----------------------------------------------------------------


@dataclass
class Job:
    """Everything the agent needs; JSON-serialisable."""

    model_sha256: str
    items: list[tuple[int, int]]
    runtime: dict[str, Any]  # RuntimeConfig.to_dict()
    timing: dict[str, Any] = field(default_factory=dict)  # TimingSettings fields
    seed: int = 0
    model_path: str | None = None  # where to copy the model from into the cache
    input_shapes: dict[str, list[int]] = field(default_factory=dict)
    inputs: str = "random"  # "random" | "prefix" (real intermediates from a prefix run)
    npy: dict[str, str] = field(default_factory=dict)  # model input -> .npy file (prefix)
    node_times_runs: int = 0  # > 0: also profile the whole model per node
    cpus: list[int] | None = None  # pin the agent to these CPUs

    def to_line(self) -> str:
        return json.dumps({"type": "job", **asdict(self)}, separators=(",", ":"))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Job:
        d = {k: v for k, v in d.items() if k != "type"}
        d["items"] = [(int(a), int(b)) for a, b in d.get("items", [])]
        return cls(**d)


# -- model cache -----------------------------------------------------------------------------


def file_sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def cached_model(cache_dir: str | os.PathLike, sha256: str, source: str | None = None) -> Path:
    """`<cache>/<sha256>.onnx`, copied in from `source` (and verified) if not there yet.

    Written to a temporary name and renamed, so a file under its hash is always complete.
    """
    if not re.fullmatch(r"[0-9a-f]{64}", sha256):
        raise ValueError(f"bad model hash {sha256!r}")
    cache = Path(cache_dir)
    target = cache / f"{sha256}.onnx"
    if target.exists():
        return target
    if not source:
        raise FileNotFoundError(
            f"model {sha256[:12]} is not in the cache {cache} and no path was given"
        )
    cache.mkdir(parents=True, exist_ok=True)
    tmp = cache / f".{sha256}.{os.getpid()}.tmp"
    shutil.copyfile(source, tmp)
    got = file_sha256(tmp)
    if got != sha256:
        tmp.unlink(missing_ok=True)
        raise ValueError(f"{source} has sha256 {got[:12]}…, the job expects {sha256[:12]}…")
    os.replace(tmp, target)
    return target


# -- attributing profiled kernels to node positions -------------------------------------------

NODE_PREFIX = "omdp_n"


def renamed_for_profiling(model: onnx.ModelProto, positions: list[int]) -> onnx.ModelProto:
    """A copy whose node k is named `omdp_n<position>`: kernel names map back exactly."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    for node, pos in zip(m.graph.node, positions, strict=True):
        node.name = f"{NODE_PREFIX}{pos}"
    return m


def attribute(name: str, producers: dict[str, int]) -> int | None:
    """The position a profiled kernel belongs to: our node name, else a tensor it produces
    (runtimes name fused/layout kernels after outputs, e.g. `r1_nchwc`), trimming `_x`
    suffixes until something matches."""
    m = re.match(rf"{NODE_PREFIX}(\d+)", name)
    if m:
        return int(m.group(1))
    probe = name
    while probe:
        if probe in producers:
            return producers[probe]
        if "_" not in probe:
            break
        probe = probe.rsplit("_", 1)[0]
    return None


# -- the agent -------------------------------------------------------------------------------


class Agent:
    """Runs one job, writing events to `out`. Thread-safe stop/pause flags."""

    def __init__(self, out: TextIO, cache_dir: str | os.PathLike):
        self.out = out
        self.cache_dir = Path(cache_dir)
        self.stop = threading.Event()
        self.running = threading.Event()
        self.running.set()
        self._lock = threading.Lock()

    def emit(self, event: Event) -> None:
        line = encode(event) + "\n"
        with self._lock:
            try:
                self.out.write(line)
                self.out.flush()
            except (BrokenPipeError, ValueError, OSError):
                self.stop.set()  # nobody is listening any more

    def log(self, msg: str) -> None:
        with contextlib.suppress(OSError, ValueError):
            print(f"agent: {msg}", file=sys.stderr, flush=True)

    def hello(self) -> None:
        self.emit(
            Hello(
                PROTOCOL_VERSION,
                AGENT_VERSION,
                os.getpid(),
                runtimes.versions(),
                runtimes.host_facts(),
            )
        )

    def control(self, line: str) -> None:
        """A control line from the host: pause / resume / stop."""
        try:
            kind = json.loads(line).get("type")
        except (json.JSONDecodeError, AttributeError):
            kind = line.strip()
        if kind == "stop":
            self.stop.set()
            self.running.set()
        elif kind == "pause":
            self.running.clear()
        elif kind == "resume":
            self.running.set()

    def _wait_if_paused(self, done: int, total: int) -> None:
        if not self.running.is_set():
            self.emit(Progress(done, total, None, "paused"))
            while not self.running.wait(0.2):
                if self.stop.is_set():
                    return

    def run(self, job: Job) -> Done:
        t0 = time.perf_counter()
        completed = errors = 0
        try:
            config = runtimes.RuntimeConfig.from_dict(job.runtime)
            settings = runtimes.TimingSettings.from_dict(job.timing)
            if job.cpus:
                os.sched_setaffinity(0, job.cpus)
                if config.threads is None:
                    config.threads = len(job.cpus)
            path = cached_model(self.cache_dir, job.model_sha256, job.model_path)
            model, lazy = segments.load_lazy(str(path))
            index = segments.prepare(model, job.input_shapes, lazy)
        except Exception as exc:  # the job cannot start at all: say why and finish
            self.emit(
                SegmentError(
                    None, runtimes.clean_message(exc), "job", traceback.format_exc(limit=3)
                )
            )
            done = Done(0, 1, False, time.perf_counter() - t0)
            self.emit(done)
            return done

        total = len(job.items)
        cuts = index.all_crossings()
        feeds_cache = self._intermediates(job, index, cuts, config, total)
        for i, (a, b) in enumerate(job.items):
            self._wait_if_paused(i, total)
            if self.stop.is_set():
                break
            ok = self._measure(index, cuts, a, b, config, settings, job, feeds_cache, i, total)
            if ok is None:
                break  # stopped mid-segment: nothing recorded for it
            completed += ok
            errors += not ok
        if job.node_times_runs > 0 and not self.stop.is_set():
            self._node_times(index, cuts, config, job, feeds_cache, total)
        done = Done(completed, errors, self.stop.is_set(), time.perf_counter() - t0)
        self.emit(done)
        return done

    def _feeds(
        self,
        job: Job,
        index,
        names: list[str],
        cache: dict[str, np.ndarray] | None,
    ) -> dict[str, np.ndarray]:
        feeds = {}
        for name in names:
            if cache is not None and name in cache:
                feeds[name] = cache[name]
            else:
                vi = index.value_info.get(name)
                if vi is None:
                    raise ValueError(f"tensor '{name}' has no known type or shape")
                feeds[name] = runtimes.random_tensor(runtimes.tensor_spec(vi), job.seed)
        return feeds

    def _intermediates(self, job: Job, index, cuts, config, total) -> dict[str, np.ndarray] | None:
        """Real cut tensors from one run of the whole model (prefix mode), else None."""
        if job.inputs != "prefix":
            return None
        self.emit(Progress(0, total, None, "inputs"))
        try:
            ins = {}
            for name in index.inputs:
                if name in job.npy:
                    want = runtimes.tensor_spec(index.value_info[name])
                    ins[name] = np.load(job.npy[name]).astype(want.dtype, copy=False)
                    if ins[name].shape != want.shape:
                        raise ValueError(f"{job.npy[name]} has shape {ins[name].shape}, input "
                                         f"'{name}' needs {want.shape}")
            needed = sorted({t for a, _ in job.items for t in cuts[a]} - set(index.inputs))
            whole = index.extract(0, index.n)
            extra = [t for t in needed if t not in index.outputs]
            whole.graph.output.extend(index.value_info[t] for t in extra)
            feeds = self._feeds(job, index, index.inputs, ins)
            runner = runtimes.load(whole, config)
            values = runner.run(feeds)
            result = dict(zip(runner.output_names(), values, strict=True))
            runner.close()
            return {**feeds, **{k: np.array(v) for k, v in result.items()}}
        except Exception as exc:
            self.emit(
                SegmentError(
                    None,
                    "could not compute real intermediate inputs, "
                    f"using random ones: {runtimes.clean_message(exc)}",
                    "inputs",
                    traceback.format_exc(limit=3),
                )
            )
            return None

    def _measure(self, index, cuts, a, b, config, settings, job, cache, i, total) -> bool | None:
        """Time segment [a, b): True measured, False error reported, None stopped."""
        seg = (a, b)
        phase = "extract"
        runner = None
        try:
            self.emit(Progress(i, total, seg, "load"))
            model = index.segment_bytes(a, b, inputs=cuts[a], outputs=cuts[b])
            phase = "inputs"
            feeds = self._feeds(job, index, cuts[a], cache)
            phase = "load"
            runner = runtimes.load(model, config)
            if self.stop.is_set():
                return None
            phase = "run"
            self.emit(Progress(i, total, seg, "timing"))
            timing = runtimes.time_runner(runner, feeds, settings, self.stop.is_set)
        except runtimes.Stopped:
            return None
        except Exception as exc:
            self.emit(
                SegmentError(seg, runtimes.clean_message(exc), phase, traceback.format_exc(limit=3))
            )
            return False
        finally:
            if runner is not None:
                runner.close()
        info = {"name": runner.runtime, "version": runner.version, "options": runner.options}
        self.emit(
            Result(
                seg,
                runner.load_ms,
                timing.samples,
                timing.stats.to_dict(),
                timing.stop,
                info,
                timing.warmup_ms,
            )
        )
        return True

    def _node_times(self, index, cuts, config, job, cache, total) -> None:
        self.emit(Progress(total, total, (0, index.n), "node_times"))
        try:
            positions = index.segment_nodes(0, index.n, cuts[index.n])
            whole = renamed_for_profiling(index.extract(0, index.n), positions)
            feeds = self._feeds(job, index, cuts[0], cache)
            prof = runtimes.profile_nodes(
                whole.SerializeToString(), feeds, config, job.node_times_runs
            )
        except Exception as exc:
            self.emit(
                SegmentError(
                    (0, index.n),
                    runtimes.clean_message(exc),
                    "node_times",
                    traceback.format_exc(limit=3),
                )
            )
            return
        producers = {o: p for p, n in enumerate(index.nodes) for o in n.output if o}
        times: dict[int, float] = {}
        unattributed = 0.0
        for name, ms in prof.kernels.items():
            pos = attribute(name, producers)
            if pos is None:
                unattributed += ms
            else:
                times[pos] = times.get(pos, 0.0) + ms
        self.emit(NodeTimes(prof.runtime, prof.runs, times, unattributed, prof.total_ms))


# -- process entry -----------------------------------------------------------------------------


def default_cache_dir() -> Path:
    env = os.environ.get("OMDP_CACHE_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "omdp" / "models"


def _watch_stdin(agent: Agent, stdin: TextIO) -> None:
    """Control lines after the job; EOF means the host is gone: stop."""
    try:
        for line in stdin:
            agent.control(line)
    except (OSError, ValueError):
        pass
    agent.stop.set()
    agent.running.set()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="OMDP device agent (JSON lines on stdio)")
    parser.add_argument("--cache", default=None, help="model cache folder")
    args = parser.parse_args(argv)
    agent = Agent(sys.stdout, args.cache or default_cache_dir())

    def on_signal(signum, frame):  # stop between runs; the current run finishes
        agent.stop.set()
        agent.running.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    agent.hello()
    line = sys.stdin.readline()
    if not line.strip():
        agent.log("no job on stdin: nothing to do")
        agent.emit(Done(0, 0, True, 0.0))
        return 0
    try:
        job = Job.from_dict(json.loads(line))
    except (json.JSONDecodeError, TypeError, ValueError, AttributeError) as exc:
        agent.emit(SegmentError(None, f"bad job line: {exc}", "job"))
        agent.emit(Done(0, 1, False, 0.0))
        return 2
    threading.Thread(target=_watch_stdin, args=(agent, sys.stdin), daemon=True).start()
    done = agent.run(job)
    agent.log(
        f"done: {done.completed} measured, {done.errors} errors"
        f"{', stopped' if done.stopped else ''} in {done.seconds:.1f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
