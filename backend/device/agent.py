"""The device agent: one job in on stdin, JSON lines out on stdout, logs on stderr.

Ships to devices as the plain files of this package (needing only stdlib + numpy + onnx +
a runtime): `python agent.py --cache DIR` there, `python -m backend.device.agent` here. The
messages are `protocol.py`'s; spawning a process and moving lines (local subprocess, SSH)
is a transport's business and lives in the lab (backend/remote/).

The model is read from the content-hash cache (`cache.py`, `<cache>/<sha256>.onnx`,
verified before use): the lab puts it there once (a local path to copy from may come with
the job); the agent cuts the segments itself with `segments.GraphIndex`. Control lines
`pause` / `resume` / `stop` may follow the job; EOF on stdin (the lab went away), SIGTERM
and SIGINT stop the agent between runs.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Dict, TextIO, Tuple

import numpy as np

if __package__:  # backend.device.agent, or python -m backend.device.agent
    from . import cache as model_cache
    from . import nodes, probe, runtimes
    from . import protocol as proto
else:  # plain files copied side by side on a device
    import cache as model_cache  # type: ignore[no-redef]
    import nodes  # type: ignore[no-redef]
    import probe  # type: ignore[no-redef]
    import protocol as proto  # type: ignore[no-redef]
    import runtimes  # type: ignore[no-redef]

try:  # cutting the graph needs onnx; without it the lab cuts (segments mode)
    if __package__:
        from . import segments
    else:
        import segments  # type: ignore[no-redef]
except ImportError:
    segments = None  # type: ignore[assignment]

AGENT_VERSION = "3"


def mode() -> str:
    """This agent's mode: `model` when it can cut the segments itself exactly as the lab
    does, else `segments`: the lab sends each segment cut (see docs/devices.md)."""
    if segments is None or segments.cutting_problem() is not None:
        return "segments"
    return "model"


# -- the agent -------------------------------------------------------------------------------


class Agent:
    """Runs one job, writing events to `out`. Thread-safe stop/pause flags."""

    def __init__(self, out: TextIO, cache_dir: str | os.PathLike[str] | None):
        self.out = out
        self.cache_dir = Path(cache_dir) if cache_dir else None
        self.stop = threading.Event()
        self.running = threading.Event()
        self.running.set()
        self._lock = threading.Lock()

    def emit(self, event: proto.Event) -> None:
        line = proto.encode(event) + "\n"
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
            proto.Hello(
                proto.PROTOCOL_VERSION,
                AGENT_VERSION,
                os.getpid(),
                runtimes.versions(),
                runtimes.host_facts(),
                mode(),
            )
        )

    def control(self, line: str) -> None:
        """A control line from the lab: pause / resume / stop."""
        kind = proto.control_command(line)
        if kind == "stop":
            self.stop.set()
            self.running.set()
        elif kind == "pause":
            self.running.clear()
        elif kind == "resume":
            self.running.set()

    def _wait_if_paused(self, done: int, total: int) -> None:
        if not self.running.is_set():
            self.emit(proto.AgentProgress(done, total, None, "paused"))
            while not self.running.wait(0.2):
                if self.stop.is_set():
                    return

    def run(self, job: proto.Job) -> proto.Done:
        t0 = time.perf_counter()
        completed = errors = 0
        try:
            config = runtimes.RuntimeConfig.from_dict(job.runtime)
            if job.cpus:
                os.sched_setaffinity(0, job.cpus)
                if config.threads is None:
                    config.threads = len(job.cpus)
            if self.cache_dir is None:
                raise ValueError("the agent was started without --cache: it has no model cache")
            runtimes.check_available(config)  # a missing provider fails before any timing
            if job.parts:
                source: Source = PartSource(self.cache_dir, job)
            else:
                source = ModelSource(self.cache_dir, job)
        except Exception as exc:  # the job cannot start at all: say why and finish
            self.emit(
                proto.SegmentError(
                    None, runtimes.clean_message(exc), "job", traceback.format_exc(limit=3)
                )
            )
            done = proto.Done(0, 1, False, time.perf_counter() - t0)
            self.emit(done)
            return done

        total = len(job.items)
        if isinstance(source, ModelSource):
            source.cache = self._intermediates(job, source.index, source.cuts, config, total)
        elif job.inputs == "prefix":
            self.emit(
                proto.SegmentError(
                    None,
                    "real intermediate inputs need onnx on the device (this one runs the "
                    "segments the lab cut): using random ones",
                    "inputs",
                )
            )
        for i, (a, b) in enumerate(job.items):
            self._wait_if_paused(i, total)
            if self.stop.is_set():
                break
            ok = self._measure(source, a, b, config, job, i, total)
            if ok is None:
                break  # stopped mid-segment: nothing recorded for it
            completed += ok
            errors += not ok
        if job.node_times_runs > 0 and not self.stop.is_set():
            self._node_times(source, config, job, total)
        done = proto.Done(completed, errors, self.stop.is_set(), time.perf_counter() - t0)
        self.emit(done)
        return done

    def _intermediates(
        self,
        job: proto.Job,
        index: segments.GraphIndex,
        cuts: list[list[str]],
        config: runtimes.RuntimeConfig,
        total: int,
    ) -> dict[str, np.ndarray] | None:
        """Real cut tensors from one run of the whole model (prefix mode), else None."""
        if job.inputs != "prefix":
            return None
        self.emit(proto.AgentProgress(0, total, None, "inputs"))
        try:
            ins = {}
            for name in index.inputs:
                if name in job.npy:
                    want = runtimes.tensor_spec(index.value_info[name])
                    model_cache.check_cached_input(job.npy[name])
                    ins[name] = np.load(job.npy[name], allow_pickle=False).astype(
                        want.dtype, copy=False
                    )
                    if ins[name].shape != want.shape:
                        raise ValueError(
                            f"{job.npy[name]} has shape {ins[name].shape}, input "
                            f"'{name}' needs {want.shape}"
                        )
            needed = sorted({t for a, _ in job.items for t in cuts[a]} - set(index.inputs))
            whole = index.extract(0, index.n)
            extra = [t for t in needed if t not in index.outputs]
            whole.graph.output.extend(index.value_info[t] for t in extra)
            feeds = model_feeds(job, index, index.inputs, ins)
            runner = runtimes.load(whole, config)
            values = runner.run(feeds)
            result = dict(zip(runner.output_names(), values))
            runner.close()
            return {**feeds, **{k: np.array(v) for k, v in result.items()}}
        except Exception as exc:
            self.emit(
                proto.SegmentError(
                    None,
                    "could not compute real intermediate inputs, "
                    f"using random ones: {runtimes.clean_message(exc)}",
                    "inputs",
                    traceback.format_exc(limit=3),
                )
            )
            return None

    def _measure(
        self,
        source: Source,
        a: int,
        b: int,
        config: runtimes.RuntimeConfig,
        job: proto.Job,
        i: int,
        total: int,
    ) -> bool | None:
        """Time segment [a, b): True measured, False error reported, None stopped."""
        seg = (a, b)
        phase = "extract"
        runner = None
        try:
            self.emit(proto.AgentProgress(i, total, seg, "load"))
            model = source.model(a, b)
            phase = "inputs"
            feeds = source.feeds(a, b)
            phase = "load"
            runner = runtimes.load(model, config)
            if self.stop.is_set():
                return None
            phase = "run"
            self.emit(proto.AgentProgress(i, total, seg, "timing"))
            cpus = job.cpus or _affinity()
            conditions: dict[str, dict] = {}

            def before() -> None:
                conditions["before"] = probe.snapshot(cpus)

            timing = runtimes.time_runner(runner, feeds, job.timing, self.stop.is_set, before)
            conditions["after"] = probe.snapshot(cpus)
        except runtimes.Stopped:
            return None
        except Exception as exc:
            self.emit(
                proto.SegmentError(
                    seg, runtimes.clean_message(exc), phase, traceback.format_exc(limit=3)
                )
            )
            return False
        finally:
            if runner is not None:
                runner.close()
        info = {
            "name": runner.runtime,
            "version": runner.version,
            "options": runner.options,
            "device": runner.used,
        }
        self.emit(
            proto.Result(
                seg,
                runner.load_ms,
                timing.samples,
                timing.stats.to_dict(),
                timing.stop,
                info,
                timing.warmup_ms,
                {k: v for k, v in conditions.items() if v},  # nothing where /sys shows nothing
            )
        )
        return True

    def _node_times(
        self, source: Source, config: runtimes.RuntimeConfig, job: proto.Job, total: int
    ) -> None:
        whole: Segment | None = None
        try:
            whole = source.whole()
            self.emit(proto.AgentProgress(total, total, whole, "node_times"))
            model, feeds, producers = source.profiled()
            prof = nodes.profile_nodes(model, feeds, config, job.node_times_runs)
        except Exception as exc:
            self.emit(
                proto.SegmentError(
                    whole,
                    runtimes.clean_message(exc),
                    "node_times",
                    traceback.format_exc(limit=3),
                )
            )
            return
        times: dict[int, float] = {}
        unattributed = 0.0
        for name, ms in prof.kernels.items():
            pos = nodes.attribute(name, producers)
            if pos is None:
                unattributed += ms
            else:
                times[pos] = times.get(pos, 0.0) + ms
        self.emit(proto.NodeTimes(prof.runtime, prof.runs, times, unattributed, prof.total_ms))


def _affinity() -> list[int] | None:
    """The CPUs this process may run on (None where the OS does not say: all)."""
    try:
        return sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return None


# -- where segments come from -------------------------------------------------------------------


def model_feeds(
    job: proto.Job,
    index: segments.GraphIndex,
    names: list[str],
    cache: dict[str, np.ndarray] | None,
) -> dict[str, np.ndarray]:
    """Values for these tensors: real ones from the prefix run, else seeded random ones."""
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


Segment = proto.Segment
Profiled = Tuple[bytes, Dict[str, np.ndarray], Dict[str, int]]


class Source:
    """A segment's model bytes and input values, and the whole model for per-node times
    (the two modes differ only here)."""

    def model(self, a: int, b: int) -> bytes:
        raise NotImplementedError

    def feeds(self, a: int, b: int) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def whole(self) -> Segment:
        """[0, N): the segment the per-node profile covers."""
        raise NotImplementedError

    def profiled(self) -> Profiled:
        """The whole model with node k named `omdp_n<position>`, its inputs, and the
        position producing each tensor (kernels named after tensors map back through it)."""
        raise NotImplementedError


class ModelSource(Source):
    """Model mode: the whole model from the cache, cut here as the lab cuts it."""

    def __init__(self, cache_dir: Path, job: proto.Job):
        if segments is None:
            raise ValueError(
                "this device has no onnx, so it cannot cut the model: the lab sends it the "
                "segments cut (segments mode) when its hello says so"
            )
        path = model_cache.cached_model(cache_dir, job.model_sha256, job.model_path)
        model, lazy = segments.load_lazy(str(path))
        self.job = job
        self.index = segments.prepare(model, job.input_shapes, lazy)
        self.cuts = self.index.all_crossings()
        self.cache: dict[str, np.ndarray] | None = None  # real cut tensors (prefix mode)

    def model(self, a: int, b: int) -> bytes:
        return self.index.segment_bytes(a, b, inputs=self.cuts[a], outputs=self.cuts[b])

    def feeds(self, a: int, b: int) -> dict[str, np.ndarray]:
        return model_feeds(self.job, self.index, self.cuts[a], self.cache)

    def whole(self) -> Segment:
        return (0, self.index.n)

    def profiled(self) -> Profiled:
        index, n = self.index, self.index.n
        positions = index.segment_nodes(0, n, self.cuts[n])
        renamed = nodes.renamed_for_profiling(index.extract(0, n), positions)
        producers = {o: p for p, node in enumerate(index.nodes) for o in node.output if o}
        return renamed.SerializeToString(), self.feeds(0, n), producers


class PartSource(Source):
    """Segments mode: each segment as the lab cut it, from the cache by its hash; inputs
    seeded per tensor name exactly as in model mode, so both modes time the same thing."""

    def __init__(self, cache_dir: Path, job: proto.Job):
        self.cache_dir = cache_dir
        self.job = job
        self.parts = {p.segment: p for p in job.parts}

    def model(self, a: int, b: int) -> bytes:
        part = self.parts[(a, b)]
        path = model_cache.cached_model(self.cache_dir, part.sha256, part.path)
        return path.read_bytes()

    def feeds(self, a: int, b: int) -> dict[str, np.ndarray]:
        return self._random(self.parts[(a, b)])

    def _random(self, part: proto.Part) -> dict[str, np.ndarray]:
        return {
            t.name: runtimes.random_tensor(
                runtimes.TensorSpec(t.name, tuple(t.shape), t.elem_type), self.job.seed
            )
            for t in part.inputs
        }

    def _profile_part(self) -> proto.Part:
        if self.job.profile_part is None:
            raise ValueError("the lab sent no whole model to profile per node")
        return self.job.profile_part

    def whole(self) -> Segment:
        return self._profile_part().segment

    def profiled(self) -> Profiled:
        part = self._profile_part()
        path = model_cache.cached_model(self.cache_dir, part.sha256, part.path)
        return path.read_bytes(), self._random(part), dict(self.job.producers)


# -- process entry -----------------------------------------------------------------------------


def _watch_stdin(agent: Agent, stdin: TextIO) -> None:
    """Control lines after the job; EOF means the lab is gone: stop."""
    with contextlib.suppress(OSError, ValueError):
        for line in stdin:
            agent.control(line)
    agent.stop.set()
    agent.running.set()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="OMDP device agent (JSON lines on stdio)")
    parser.add_argument("--cache", default=None, help="model cache folder (for a job)")
    args = parser.parse_args(argv)
    agent = Agent(sys.stdout, args.cache)

    def on_signal(signum: int, frame: object) -> None:  # stop between runs
        agent.stop.set()
        agent.running.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    agent.hello()
    line = sys.stdin.readline(proto.MAX_LINE_BYTES)
    if not line.strip():
        agent.log("no job on stdin: nothing to do")
        agent.emit(proto.Done(0, 0, True, 0.0))
        return 0
    try:
        job = proto.Job.from_dict(proto.parse_line(line))
    except proto.ProtocolError as exc:
        agent.emit(proto.SegmentError(None, f"bad job line: {exc}", "job"))
        agent.emit(proto.Done(0, 1, False, 0.0))
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
