"""A chain stage: one device's part of a chained validation run (`omdp validate`).

Ships with the device package and runs with the device's python, 3.8 or later:
`python stage.py --cache DIR` there, `python -m backend.device.stage` here. Stdin carries
the job (one JSON line), then the lab's control lines; stdout one JSON event per line
(the final stage's output tensors follow their `output` line as raw bytes).

What a stage does with its job: load its segment (from the content-hash model cache, cut
the same way the profiler cuts it, run with the device's runtime and options) or nothing
(a relay, or a source that only sends the input); open its links to the neighbouring
stages (`tensorwire`: one token-checked TCP connection each way, device to device, not
through the lab); estimate each downstream link's clock offset by round trips; then, per
frame, receive the tensors of its cut, run, and send the tensors of the next cut on.
Every step is stamped with this host's monotonic clock and reported per frame; the lab
puts the clocks together (backend/validation/report.py).

Events: `hello`, `listening` {side, port}, `loaded` {load_ms, runtime}, `clock` {offset_s,
rtt_s} (of the downstream link), `ready`, `solo` {ms} (the segment timed alone, when
asked), `frame` {i, start, recv, compute, send, end},
`output` {t} + bytes (final stage), `done`, or `error` {message, phase} and exit 1.
Control lines: `peers` {up, down} (where to connect), `solo` (time the segment alone,
before the frames), `go` (the source runs one frame:
the latency objective) or `run` (it runs them all: the throughput objective). EOF on stdin
means the lab is gone: the stage exits at once.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import sys
import threading
import traceback
from typing import Any

import numpy as np

if __package__:  # backend.device.stage, or python -m backend.device.stage
    from . import cache as model_cache
    from . import runtimes, segments
    from . import tensorwire as wire
else:  # plain files side by side on a device
    import cache as model_cache  # type: ignore[no-redef]
    import runtimes  # type: ignore[no-redef]
    import segments  # type: ignore[no-redef]
    import tensorwire as wire  # type: ignore[no-redef]

MAX_JOB_BYTES = 1 << 20
MODES = ("latency", "throughput")
SIDES = ("listen", "connect")
LINK_ERRORS = (EOFError, OSError)  # the neighbour went away: its failure, not this one's


class JobError(ValueError):
    """A job line this stage cannot run."""


class StageJob:
    """The job, checked field by field (the lab builds it; a device still checks it)."""

    def __init__(self, d: Any):
        if type(d) is not dict:
            raise JobError("the job must be a JSON object")
        self.model_sha256 = _text(d, "model_sha256")
        self.model_path = d.get("model_path")
        self.input_shapes = d.get("input_shapes") or {}
        self.runtime = d.get("runtime")
        seg = d.get("segment")
        if seg is not None and not (
            type(seg) is list and len(seg) == 2 and all(type(x) is int for x in seg)
        ):
            raise JobError("segment must be [start, end] or null")
        self.segment = None if seg is None else (seg[0], seg[1])
        if self.segment is not None and self.runtime is None:
            raise JobError("a stage with a segment needs a runtime")
        self.npy = d.get("npy") or {}  # model input -> .npy path (the source only)
        self.sends = [str(x) for x in d.get("sends") or []]  # cut tensors passed on
        self.upstream = _choice(d.get("upstream"), "upstream")
        self.downstream = _choice(d.get("downstream"), "downstream")
        self.up_token = str(d.get("up_token") or "").encode()
        self.down_token = str(d.get("down_token") or "").encode()
        self.bind = str(d.get("bind") or "0.0.0.0")
        self.final = d.get("final") is True
        self.frames = _count(d, "frames", 1, 100000)
        self.warmup = _count(d, "warmup", 0, 1000)
        self.mode = d.get("mode")
        if self.mode not in MODES:
            raise JobError(f"mode must be one of {', '.join(MODES)}")
        self.clock_rounds = _count(d, "clock_rounds", 1, 1000)
        self.solo_runs = _count(d, "solo_runs", 0, 1000)
        self.budget = _count(d, "budget", 0, 1 << 44)
        self.timeout = float(d.get("timeout") or 60.0)
        self.cpus = d.get("cpus")

    @property
    def source(self) -> bool:
        return self.upstream is None

    @property
    def total(self) -> int:
        return self.warmup + self.frames


def _text(d: dict, key: str) -> str:
    v = d.get(key)
    if type(v) is not str or not v:
        raise JobError(f"{key} must be text")
    return v


def _choice(v: Any, what: str) -> str | None:
    if v is not None and v not in SIDES:
        raise JobError(f"{what} must be listen, connect or null")
    return v


def _count(d: dict, key: str, lo: int, hi: int) -> int:
    v = d.get(key)
    if type(v) is not int or not lo <= v <= hi:
        raise JobError(f"{key} must be an integer in {lo}..{hi}")
    return v


class Stage:
    """One run of one job; events go to `out` (a binary stream) under a lock."""

    def __init__(self, job: StageJob, cache_dir: str | None, out: Any, stdin: Any):
        self.job = job
        self.cache_dir = cache_dir
        self.out = out
        self.stdin = stdin
        self.lock = threading.Lock()
        self.phase = "load"
        self.runner: Any = None
        self.feeds: dict[str, np.ndarray] = {}
        self.up: wire.Link | None = None
        self.down: wire.Link | None = None
        self.go: queue.Queue = queue.Queue()
        self.solo_feeds: dict[str, np.ndarray] = {}

    # -- output --------------------------------------------------------------------------

    def emit(self, obj: dict, payload: list | None = None) -> None:
        line = (json.dumps(obj) + "\n").encode()
        with self.lock:
            self.out.write(line)
            for a in payload or []:
                if a.nbytes:
                    self.out.write(a.reshape(-1).view(np.uint8).data)
            self.out.flush()

    def fail(self, exc: BaseException) -> None:
        self.emit(
            {
                "type": "error",
                "phase": self.phase,
                "message": runtimes.clean_message(exc),
                "detail": traceback.format_exc(limit=3),
            }
        )

    # -- setup ---------------------------------------------------------------------------

    def load(self) -> None:
        job = self.job
        self.emit({"type": "hello", "pid": os.getpid(), "versions": runtimes.versions()})
        if job.cpus:
            os.sched_setaffinity(0, job.cpus)
        if job.segment is not None:
            config = runtimes.RuntimeConfig.from_dict(dict(job.runtime or {}))
            if job.cpus and config.threads is None:
                config.threads = len(job.cpus)
            if not self.cache_dir:
                raise ValueError("the stage was started without --cache: it has no model cache")
            path = model_cache.cached_model(self.cache_dir, job.model_sha256, job.model_path)
            model, lazy = segments.load_lazy(str(path))
            index = segments.prepare(model, job.input_shapes, lazy)
            cuts = index.all_crossings()
            a, b = job.segment
            data = index.segment_bytes(a, b, inputs=cuts[a], outputs=cuts[b])
            self.runner = runtimes.load(data, config)
            self.solo_feeds = {
                name: runtimes.random_tensor(runtimes.tensor_spec(index.value_info[name]), 0)
                for name in cuts[a]
            }
            self.emit(
                {
                    "type": "loaded",
                    "load_ms": self.runner.load_ms,
                    "runtime": {
                        "name": self.runner.runtime,
                        "version": self.runner.version,
                        "options": self.runner.options,
                    },
                }
            )
        for name, path in sorted(job.npy.items()):
            model_cache.check_cached_input(path)
            self.feeds[name] = np.load(path, allow_pickle=False)

    def connect(self) -> None:
        """Listen where told, say the ports, take the peers line, connect, then accept:
        connecting first never waits (the listener's backlog holds the connection)."""
        job = self.job
        self.phase = "connect"
        listeners = {}
        for side, how in (("up", job.upstream), ("down", job.downstream)):
            if how == "listen":
                listeners[side] = wire.listen(job.bind)
                self.emit(
                    {"type": "listening", "side": side, "port": listeners[side].getsockname()[1]}
                )
        peers: dict = {}
        if job.upstream == "connect" or job.downstream == "connect":
            line = self.stdin.readline(MAX_JOB_BYTES)
            msg = json.loads(line) if line.strip() else {}
            if msg.get("type") != "peers":
                raise ValueError("expected the peers line from the lab")
            peers = msg
        token = {"up": job.up_token, "down": job.down_token}
        links: dict = {}
        for side, how in (("up", job.upstream), ("down", job.downstream)):
            if how == "connect":
                peer = peers.get(side) or {}
                links[side] = wire.connect(
                    str(peer.get("host")),
                    int(peer.get("port", 0)),
                    token[side],
                    job.timeout,
                    job.budget,
                )
        for side, srv in listeners.items():
            links[side] = wire.accept(srv, token[side], job.timeout, job.budget)
        self.up, self.down = links.get("up"), links.get("down")

    def sync_clocks(self) -> None:
        """Answer the upstream's rounds, then measure the downstream link's offset."""
        self.phase = "clock"
        if self.up is not None:
            for _ in range(self.job.clock_rounds):
                if self.up.read_kind() != wire.CLOCK:
                    raise ValueError("the upstream stage broke the clock exchange")
                self.up.answer_clock()
        if self.down is not None:
            offset, trip = self.down.clock_rounds(self.job.clock_rounds)
            self.emit({"type": "clock", "offset_s": offset, "rtt_s": trip})

    # -- frames --------------------------------------------------------------------------

    def run(self) -> None:
        job = self.job
        self.phase = "frames"
        incoming: queue.Queue = queue.Queue(maxsize=2)
        outgoing: queue.Queue = queue.Queue(maxsize=2)
        threads = [threading.Thread(target=self._control, daemon=True)]
        if self.up is not None:
            threads.append(threading.Thread(target=self._receive, args=(incoming,), daemon=True))
        if self.down is not None:
            threads.append(threading.Thread(target=self._send, args=(outgoing,), daemon=True))
        for t in threads:
            t.start()
        self.emit({"type": "ready"})
        last: dict[str, np.ndarray] = {}
        for k in range(job.total):
            record: dict = {"type": "frame", "i": k}
            raw = None
            if job.source:
                if job.mode == "latency" or k == 0:
                    self._wait_go()
                arrays = self.feeds
                record["start"] = wire.clock()
            else:
                try:
                    item = incoming.get(timeout=job.timeout)
                except queue.Empty:
                    raise TimeoutError(
                        f"no frame from the upstream stage within {job.timeout:g} s"
                    ) from None
                if isinstance(item, BaseException):
                    self.phase = "link" if isinstance(item, LINK_ERRORS) else self.phase
                    raise item
                frame, arrays, raw, t_recv = item
                if frame != k:
                    raise ValueError(f"frame {frame} arrived when {k} was expected")
                record["recv"] = t_recv
            if self.runner is not None:
                t0 = wire.clock()
                values = self.runner.run(arrays)
                t1 = wire.clock()
                arrays = {n: values[i] for i, n in enumerate(self.runner.output_names())}
                record["compute"] = [t0, t1]
                raw = None
            if self.down is not None:
                outgoing.put((k, {n: arrays[n] for n in job.sends}, raw, record))
            else:
                record["end"] = wire.clock()
                self.emit(record)
            last = arrays
        if self.down is not None:
            outgoing.put(None)
            threads[-1].join()
        if job.final:
            outs = [np.ascontiguousarray(last[n]) for n in job.sends]
            specs = [[n, a.dtype.str, list(a.shape), a.nbytes] for n, a in zip(job.sends, outs)]
            self.emit({"type": "output", "t": specs}, outs)
        self.emit({"type": "done"})

    def _wait_go(self) -> None:
        word = self.go.get()
        if word is None:
            raise EOFError("the lab closed the stage's input")

    def _control(self) -> None:
        """Lab control lines: go / run; EOF means the lab is gone."""
        try:
            for line in iter(lambda: self.stdin.readline(MAX_JOB_BYTES), ""):
                word = line.strip().strip('"')
                if word in ("go", "run"):
                    self.go.put(word)
                elif word == "solo":
                    self._solo()
        except (OSError, ValueError):
            pass
        os._exit(3)

    def _solo(self) -> None:
        """Time the segment alone, now, on random inputs of its shapes (one run to warm
        up): what the device does at this moment without the chain around it. The lab
        asks one stage at a time, before the frames."""
        times = []
        if self.runner is not None:
            feeds = {**self.solo_feeds, **self.feeds}
            for k in range(self.job.solo_runs + 1):
                t0 = wire.clock()
                self.runner.run({n: feeds[n] for n in self.solo_feeds})
                if k:
                    times.append((wire.clock() - t0) * 1e3)
        self.emit({"type": "solo", "ms": times})

    def _receive(self, incoming: queue.Queue) -> None:
        assert self.up is not None
        try:
            for _ in range(self.job.total):
                if self.up.read_kind() != wire.FRAME:
                    raise ValueError("the upstream stage sent something other than a frame")
                frame, arrays, raw = self.up.read_frame_body()
                incoming.put((frame, arrays, raw, wire.clock()))
        except BaseException as exc:
            incoming.put(exc)

    def _send(self, outgoing: queue.Queue) -> None:
        assert self.down is not None
        try:
            while True:
                item = outgoing.get()
                if item is None:
                    return
                k, arrays, raw, record = item
                t0 = wire.clock()
                if raw is not None:  # a relay passes the message on as it came
                    self.down.send(raw)
                else:
                    self.down.send_frame(k, arrays)
                record["send"] = [t0, wire.clock()]
                self.emit(record)
        except BaseException as exc:
            self.phase = "link" if isinstance(exc, LINK_ERRORS) else "send"
            self.fail(exc)
            os._exit(1)


def main(argv: list | None = None) -> int:
    parser = argparse.ArgumentParser(description="OMDP chain stage (JSON lines on stdio)")
    parser.add_argument("--cache", default=None, help="model cache folder")
    args = parser.parse_args(argv)
    out = sys.stdout.buffer
    stdin = sys.stdin
    try:
        job = StageJob(json.loads(stdin.readline(MAX_JOB_BYTES) or "null"))
    except (ValueError, JobError) as exc:
        out.write(
            (json.dumps({"type": "error", "phase": "job", "message": str(exc)}) + "\n").encode()
        )
        out.flush()
        return 2
    stage = Stage(job, args.cache, out, stdin)
    try:
        stage.load()
        stage.connect()
        stage.sync_clocks()
        stage.run()
    except BaseException as exc:
        stage.fail(exc)
        out.flush()
        os._exit(1)
    for link in (stage.up, stage.down):
        if link is not None:
            link.close()
    out.flush()
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main())
