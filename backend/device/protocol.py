"""The agent's wire protocol (version 1): the job the lab sends, the events the agent answers.

Stdlib only, so it ships to devices with the agent and the lab imports it without numpy or
onnx: both ends encode and decode with this one module. One JSON object per line:

- lab -> agent: the `job` line, then optional control lines `pause` / `resume` / `stop`
  (bare words or `{"type": ...}`); EOF on stdin means the lab went away.
- agent -> lab: `hello` first (protocol, versions, host facts), then per segment
  `progress` and `result` or `error` (a failing segment never stops the others),
  optionally `node_times`, and `done` last (also after a stop request).

A device is never trusted: `decode` accepts a line only if it is a known message with
exactly its fields, of the right types, with finite numbers and bounded sizes, and
`Conversation` accepts an event only if it answers the job that was sent (its segments,
once each, in a conversation that starts with `hello` and ends with `done`). Anything else
is a `ProtocolError` naming what is wrong, so the lab fails that device and stores nothing
from the line.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from dataclasses import MISSING, asdict, dataclass, field, fields
from typing import Any, Tuple, Union

PROTOCOL_VERSION = 1
MAX_LINE_BYTES = 16 << 20  # a result of 10^5 samples or the node times of a 10^5-node model
MAX_TEXT = 64 << 10  # characters in one message, detail or name
MAX_POSITION = 2**31 - 1  # node positions (and so segment ends)
MAX_ITEMS = 1 << 20  # segments in one job
MAX_MS = 1e9  # about 11 days: any time above is not a measurement
MAX_PLAIN_ITEMS = 4096  # scalars in a free-form mapping (host facts, runtime options)

Segment = Tuple[int, int]  # typing's alias: devices run Python 3.8

PHASES = ("inputs", "load", "timing", "node_times", "paused")
ERROR_KINDS = ("extract", "inputs", "load", "run", "job", "node_times")
STOP_REASONS = ("ci", "max_runs", "max_seconds")
# numpy dtype of each ONNX TensorProto data type (fixed by the ONNX standard), so a device
# without onnx can make inputs for the segments the lab cut
TENSOR_DTYPES = {
    1: "float32", 2: "uint8", 3: "int8", 4: "uint16", 5: "int16", 6: "int32", 7: "int64",
    9: "bool", 10: "float16", 11: "float64", 12: "uint32", 13: "uint64", 14: "complex64",
    15: "complex128",
}  # fmt: skip
STAT_FIELDS = (
    "count", "median", "p10", "p90", "mean", "std", "min", "max", "ci_low", "ci_high", "rel_ci"
)  # fmt: skip


class ProtocolError(ValueError):
    """A line that is not a valid protocol message, or not a valid answer to the job."""


# -- checking values -----------------------------------------------------------------------


def _int(value: Any, what: str, lo: int = 0, hi: int = MAX_POSITION) -> int:
    if type(value) is not int or not lo <= value <= hi:
        raise ProtocolError(f"{what} must be an integer in {lo}..{hi}, got {_show(value)}")
    return value


def _number(value: Any, what: str, lo: float = 0.0, hi: float = MAX_MS) -> float:
    if type(value) not in (int, float) or not math.isfinite(value) or not lo <= value <= hi:
        raise ProtocolError(f"{what} must be a finite number in {lo:g}..{hi:g}, got {_show(value)}")
    return float(value)


def _text(value: Any, what: str, limit: int = MAX_TEXT) -> str:
    if type(value) is not str or len(value) > limit:
        raise ProtocolError(f"{what} must be text of at most {limit} characters: {_show(value)}")
    return value


def _choice(value: Any, what: str, choices: tuple[str, ...]) -> str:
    if value not in choices or type(value) is not str:
        raise ProtocolError(f"{what} must be one of {', '.join(choices)}, got {_show(value)}")
    return value


def _bool(value: Any, what: str) -> bool:
    if type(value) is not bool:
        raise ProtocolError(f"{what} must be true or false, got {_show(value)}")
    return value


def _segment(value: Any, what: str = "segment") -> Segment:
    if type(value) not in (list, tuple) or len(value) != 2:
        raise ProtocolError(f"{what} must be [start, end], got {_show(value)}")
    a = _int(value[0], f"{what} start")
    b = _int(value[1], f"{what} end")
    if a >= b:
        raise ProtocolError(f"{what} [{a}, {b}] is empty or reversed (start must be < end)")
    return (a, b)


def _mapping(value: Any, what: str, limit: int = MAX_PLAIN_ITEMS) -> dict[str, Any]:
    if type(value) is not dict or len(value) > limit:
        raise ProtocolError(f"{what} must be an object of at most {limit} entries")
    for key in value:
        _text(key, f"a key of {what}", 200)
    return value


def _plain(value: Any, what: str, depth: int = 3) -> Any:
    """Free-form data (host facts, runtime options): JSON scalars, lists and objects,
    shallow and small, numbers finite."""
    budget = [MAX_PLAIN_ITEMS]

    def walk(v: Any, level: int) -> None:
        budget[0] -= 1
        if budget[0] < 0:
            raise ProtocolError(f"{what} is too large")
        if type(v) is str:
            _text(v, what)
        elif v is None or type(v) is bool:
            pass
        elif type(v) is int:
            _int(v, what, -(2**63), 2**63 - 1)
        elif type(v) is float:
            if not math.isfinite(v):
                raise ProtocolError(f"{what} holds a non-finite number")
        elif type(v) in (list, dict) and level < depth:
            items = v.values() if type(v) is dict else v
            if type(v) is dict:
                _mapping(v, what)
            for item in items:
                walk(item, level + 1)
        else:
            raise ProtocolError(f"{what} must be plain data, got {_show(v)}")

    walk(value, 0)
    return value


def _show(value: Any) -> str:
    """A short, inert rendering of a bad value for an error message."""
    text = repr(value) if not isinstance(value, str) else json.dumps(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _fields_of(d: dict[str, Any], cls: type, name: str) -> dict[str, Any]:
    """The message's fields: every required one present, none unknown."""
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(d) - known)
    if unknown:
        raise ProtocolError(f"'{name}' has unknown field(s): {', '.join(map(_show, unknown))}")
    required = {
        f.name for f in fields(cls) if MISSING is f.default and MISSING is f.default_factory
    }
    missing = sorted(required - set(d))
    if missing:
        raise ProtocolError(f"'{name}' lacks field(s): {', '.join(missing)}")
    return d


# -- the job (lab -> agent) ----------------------------------------------------------------


@dataclass
class TimingSettings:
    """When to stop timing a segment (see runtimes.py): part of the job, and what bounds
    the number of samples a result may carry."""

    warmup: int = 3
    min_runs: int = 10
    max_runs: int = 1000
    max_seconds: float = 10.0  # budget for the timed runs of one segment
    target_rel_ci: float = 0.02  # stop when the median's CI half-width / median is below
    confidence: float = 0.95

    @classmethod
    def from_dict(cls, d: Any) -> TimingSettings:
        d = _fields_of(_mapping(d, "timing"), cls, "timing")
        t = cls(**d)
        _int(t.warmup, "timing warmup", 0, 10**6)
        _int(t.min_runs, "timing min_runs", 1, 10**6)
        _int(t.max_runs, "timing max_runs", t.min_runs, 10**6)
        _number(t.max_seconds, "timing max_seconds", 1e-6, 1e7)
        _number(t.target_rel_ci, "timing target_rel_ci", 0.0, 1e3)
        _number(t.confidence, "timing confidence", 0.5, 0.999999)
        return t


MODES = ("model", "segments")


@dataclass
class TensorInfo:
    """An input of a segment the lab cut: what the agent needs to make its values."""

    name: str
    shape: list[int]
    elem_type: int  # ONNX TensorProto data type (TENSOR_DTYPES)


@dataclass
class Part:
    """A segment the lab cut (segments mode, for a device without onnx): its file in the
    agent's model cache by content hash, and its inputs."""

    segment: Segment
    sha256: str
    inputs: list[TensorInfo]
    path: str | None = None  # where to copy it from into the cache (a local agent)

    @classmethod
    def from_dict(cls, d: Any) -> Part:
        d = _fields_of(_mapping(d, "a part"), cls, "part")
        if not re.fullmatch(r"[0-9a-f]{64}", str(d["sha256"])):
            raise ProtocolError(f"a part's sha256 must be 64 hex digits: {_show(d['sha256'])}")
        if d.get("path") is not None:
            _text(d["path"], "a part's path", 4096)
        if type(d["inputs"]) is not list or len(d["inputs"]) > MAX_PLAIN_ITEMS:
            raise ProtocolError("a part's inputs must be a list")
        inputs = []
        for t in d["inputs"]:
            t = _fields_of(_mapping(t, "a part input"), TensorInfo, "part input")
            if type(t["shape"]) is not list or len(t["shape"]) > 64:
                raise ProtocolError(f"the shape of part input {_show(t['name'])} must be a list")
            inputs.append(
                TensorInfo(
                    _text(t["name"], "a part input name", 4096),
                    [_int(dim, "a dim", 0, 2**40) for dim in t["shape"]],
                    _int(t["elem_type"], "an elem_type", 1, 64),
                )
            )
        return cls(_segment(d["segment"], "a part"), d["sha256"], inputs, d.get("path"))


@dataclass
class Job:
    """Everything the agent needs; one JSON line."""

    model_sha256: str
    items: list[Segment]
    runtime: dict[str, Any]  # runtimes.RuntimeConfig.to_dict(), checked by the agent
    timing: TimingSettings = field(default_factory=TimingSettings)
    seed: int = 0
    model_path: str | None = None  # where to copy the model from into the cache
    input_shapes: dict[str, list[int]] = field(default_factory=dict)
    inputs: str = "random"  # "random" | "prefix" (real intermediates from a prefix run)
    npy: dict[str, str] = field(default_factory=dict)  # model input -> .npy file (prefix)
    node_times_runs: int = 0  # > 0: also profile the whole model per node
    cpus: list[int] | None = None  # pin the agent to these CPUs
    parts: list[Part] = field(default_factory=list)  # segments mode: the lab's cut segments
    # segments mode with per-node times: the whole model, nodes renamed for profiling, and
    # the position that produces each tensor
    profile_part: Part | None = None
    producers: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["items"] = [list(i) for i in self.items]
        for part in d["parts"] + ([d["profile_part"]] if d["profile_part"] else []):
            part["segment"] = list(part["segment"])
        return d

    def to_line(self) -> str:
        return json.dumps({"type": "job", **self.to_dict()}, separators=(",", ":"))

    @classmethod
    def from_dict(cls, d: Any) -> Job:
        d = dict(_mapping(d, "job"))
        if d.pop("type", "job") != "job":
            raise ProtocolError("the first line must be the job")
        d = _fields_of(d, cls, "job")
        if not re.fullmatch(r"[0-9a-f]{64}", str(d.get("model_sha256"))):
            raise ProtocolError(f"model_sha256 must be 64 hex digits: {_show(d['model_sha256'])}")
        items = d.get("items")
        if type(items) is not list or len(items) > MAX_ITEMS:
            raise ProtocolError(f"items must be a list of at most {MAX_ITEMS} segments")
        d["items"] = [_segment(i, "an item") for i in items]
        d["runtime"] = _plain(_mapping(d["runtime"], "runtime"), "runtime")
        d["timing"] = TimingSettings.from_dict(d.get("timing", {}))
        _int(d.get("seed", 0), "seed", 0, 2**32 - 1)
        if d.get("model_path") is not None:
            _text(d["model_path"], "model_path", 4096)
        shapes = _mapping(d.get("input_shapes", {}), "input_shapes")
        for name, dims in shapes.items():
            if type(dims) is not list or len(dims) > 64:
                raise ProtocolError(f"input shape of '{name}' must be a list of dims")
            for dim in dims:
                _int(dim, f"a dim of '{name}'", 1, 2**40)
        _choice(d.get("inputs", "random"), "inputs", ("random", "prefix"))
        for name, path in _mapping(d.get("npy", {}), "npy").items():
            _text(path, f"npy path of '{name}'", 4096)
        _int(d.get("node_times_runs", 0), "node_times_runs", 0, 10**4)
        cpus = d.get("cpus")
        if cpus is not None:
            if type(cpus) is not list or not 0 < len(cpus) <= 4096:
                raise ProtocolError("cpus must be a non-empty list of CPU numbers")
            for c in cpus:
                _int(c, "a cpu", 0, 1 << 20)
        parts = d.get("parts", [])
        if type(parts) is not list or len(parts) > MAX_ITEMS:
            raise ProtocolError(f"parts must be a list of at most {MAX_ITEMS} segments")
        d["parts"] = [Part.from_dict(p) for p in parts]
        if d.get("profile_part") is not None:
            d["profile_part"] = Part.from_dict(d["profile_part"])
        producers = _mapping(d.get("producers", {}), "producers", MAX_ITEMS)
        for name, position in producers.items():
            _int(position, f"the producer of {_show(name)}")
        if d["parts"]:
            cut = {p.segment for p in d["parts"]}
            lacking = [list(i) for i in d["items"] if i not in cut]
            if lacking:
                raise ProtocolError(f"no part for item(s) {lacking[:3]} of a segments-mode job")
        return cls(**d)


def control_command(line: str) -> str | None:
    """The control word of a lab line ("pause" | "resume" | "stop"), None if it is none."""
    word = line.strip()
    if word.startswith("{"):
        try:
            word = json.loads(word).get("type")
        except (ValueError, AttributeError, RecursionError):
            return None
    return word if word in ("pause", "resume", "stop") else None


# -- events (agent -> lab) -----------------------------------------------------------------


@dataclass
class Hello:
    protocol: int
    agent: str
    pid: int
    versions: dict[str, str | None]
    host: dict[str, Any]
    mode: str = "model"  # "model": the agent cuts the segments; "segments": the lab does


@dataclass
class AgentProgress:
    done: int
    total: int
    segment: Segment | None
    phase: str  # one of PHASES


@dataclass
class Result:
    segment: Segment
    load_ms: float
    samples: list[float]
    stats: dict[str, float | None]  # runtimes.Stats fields
    stop: str  # why timing stopped: one of STOP_REASONS
    runtime: dict[str, Any]  # name, version, options and device/provider actually used
    warmup_ms: list[float] = field(default_factory=list)
    # temperature and CPU frequency before and after the timed runs (probe.snapshot)
    conditions: dict[str, Any] = field(default_factory=dict)


@dataclass
class SegmentError:
    segment: Segment | None  # None: the whole job failed (bad model, no runtime)
    message: str  # one line, the runtime's own words
    kind: str  # one of ERROR_KINDS
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


Event = Union[Hello, AgentProgress, Result, SegmentError, NodeTimes, Done]
_NAMES: dict[type, str] = {
    Hello: "hello",
    AgentProgress: "progress",
    Result: "result",
    SegmentError: "error",
    NodeTimes: "node_times",
    Done: "done",
}


def name_of(event: Event) -> str:
    return _NAMES[type(event)]


def encode(event: Event) -> str:
    """One JSON line (no newline) for an event; non-finite numbers are refused."""
    d = asdict(event)
    if isinstance(event, NodeTimes):
        d["times"] = {str(k): v for k, v in event.times.items()}
    return json.dumps({"type": _NAMES[type(event)], **d}, separators=(",", ":"), allow_nan=False)


def _samples(value: Any, what: str, most: int) -> list[float]:
    if type(value) is not list or len(value) > most:
        raise ProtocolError(f"{what} must be a list of at most {most} times")
    return [_number(v, f"a value of {what}") for v in value]


def _hello(d: dict[str, Any]) -> Hello:
    versions = _mapping(d["versions"], "versions", 64)
    for key, v in versions.items():
        if v is not None:
            _text(v, f"version of {key}", 200)
    return Hello(
        _int(d["protocol"], "protocol", 0, 2**31),
        _text(d["agent"], "agent", 200),
        _int(d["pid"], "pid", 0, 2**31),
        versions,
        _plain(_mapping(d["host"], "host", 256), "host"),
        _choice(d.get("mode", "model"), "mode", MODES),
    )


def _progress(d: dict[str, Any]) -> AgentProgress:
    seg = d["segment"]
    return AgentProgress(
        _int(d["done"], "done", 0, MAX_ITEMS),
        _int(d["total"], "total", 0, MAX_ITEMS),
        None if seg is None else _segment(seg),
        _choice(d["phase"], "phase", PHASES),
    )


def _result(d: dict[str, Any]) -> Result:
    stats = _mapping(d["stats"], "stats", len(STAT_FIELDS))
    for key, v in stats.items():
        _choice(key, "a stats field", STAT_FIELDS)
        if key == "count":
            _int(v, "stats count", 1, 10**7)
        elif v is not None or key not in ("ci_low", "ci_high", "rel_ci"):
            _number(v, f"stats {key}", 0.0, MAX_MS if key != "rel_ci" else 1e12)
    runtime = _plain(_mapping(d["runtime"], "runtime", 16), "runtime")
    _text(runtime.get("name", ""), "runtime name", 200)
    return Result(
        _segment(d["segment"]),
        _number(d["load_ms"], "load_ms"),
        _samples(d["samples"], "samples", 10**7),
        stats,
        _choice(d["stop"], "stop", STOP_REASONS),
        runtime,
        _samples(d.get("warmup_ms", []), "warmup_ms", 10**6),
        _conditions(d.get("conditions", {})),
    )


def _conditions(value: Any) -> dict[str, Any]:
    d = _mapping(value, "conditions", 2)
    for key, snap in d.items():
        _choice(key, "a conditions key", ("before", "after"))
        _plain(_mapping(snap, f"conditions {key}", 32), f"conditions {key}", depth=1)
    return d


def _error(d: dict[str, Any]) -> SegmentError:
    seg = d["segment"]
    return SegmentError(
        None if seg is None else _segment(seg),
        _text(d["message"], "message"),
        _choice(d["kind"], "kind", ERROR_KINDS),
        _text(d.get("detail", ""), "detail"),
    )


def _node_times(d: dict[str, Any]) -> NodeTimes:
    raw = _mapping(d["times"], "times", MAX_PLAIN_ITEMS * 64)
    times: dict[int, float] = {}
    for key, ms in raw.items():
        if not re.fullmatch(r"0|[1-9][0-9]{0,9}", key):
            raise ProtocolError(f"a node position must be a number, got {_show(key)}")
        times[_int(int(key), "a node position")] = _number(ms, f"time of node {key}")
    return NodeTimes(
        _text(d["runtime"], "runtime", 200),
        _int(d["runs"], "runs", 1, 10**4),
        times,
        _number(d["unattributed_ms"], "unattributed_ms"),
        _number(d["total_ms"], "total_ms"),
    )


def _done(d: dict[str, Any]) -> Done:
    return Done(
        _int(d["completed"], "completed", 0, MAX_ITEMS),
        _int(d["errors"], "errors", 0, MAX_ITEMS + 1),
        _bool(d["stopped"], "stopped"),
        _number(d["seconds"], "seconds", 0.0, 1e9),
    )


_DECODERS: dict[str, tuple[type, Any]] = {
    "hello": (Hello, _hello),
    "progress": (AgentProgress, _progress),
    "result": (Result, _result),
    "error": (SegmentError, _error),
    "node_times": (NodeTimes, _node_times),
    "done": (Done, _done),
}


def parse_line(line: str | bytes, limit: int = MAX_LINE_BYTES) -> dict[str, Any]:
    """A JSON object from one line, or ProtocolError (too long, not JSON, too deep)."""
    if len(line) > limit:
        raise ProtocolError(f"a line of {len(line)} bytes (the limit is {limit})")
    try:
        obj = json.loads(line, parse_constant=_no_constant)
    except (ValueError, RecursionError, UnicodeDecodeError) as exc:
        head = line[:80] if isinstance(line, str) else line[:80].decode("utf-8", "replace")
        raise ProtocolError(f"not a JSON message ({type(exc).__name__}): {_show(head)}") from None
    if type(obj) is not dict:
        raise ProtocolError(f"not a JSON object: {_show(obj)}")
    return obj


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number")


def decode(line: str | bytes) -> Event:
    """The event on one line; ProtocolError unless it is exactly a valid message."""
    d = parse_line(line)
    kind = d.pop("type", None)
    if kind not in _DECODERS:
        raise ProtocolError(f"unknown message type {_show(kind)}")
    cls, check = _DECODERS[kind]
    try:
        event: Event = check(_fields_of(d, cls, kind))
        return event
    except ProtocolError as exc:
        raise ProtocolError(f"bad '{kind}' message: {exc}") from None


# -- the conversation ------------------------------------------------------------------------


class Conversation:
    """Checks a stream of events against the job it answers: `hello` first in a protocol
    we speak, progress and answers only for the job's segments, each segment answered
    once, per-node times only when asked for (and for real positions), nothing after
    `done`, whose counts must match what was seen.

    `noise` non-JSON lines are tolerated before `hello` (an SSH login may print a banner).
    """

    def __init__(self, job: Job, nodes: int | None = None, noise: int = 0):
        self.job = job
        self.owed = Counter(job.items)  # answers still due per segment (a job may repeat one)
        self.nodes = nodes
        self.noise = noise
        self.hello: Hello | None = None
        self.done: Done | None = None
        self.results = 0
        self.segment_errors = 0
        self.job_failed = False
        self.node_times_seen = False

    def feed(self, line: str) -> Event | None:
        """The event on this line (checked), or None for a blank or tolerated line."""
        if not line.strip():
            return None
        try:
            event = decode(line)
        except ProtocolError:
            if self.hello is None and self.noise > 0 and not line.lstrip().startswith("{"):
                self.noise -= 1
                return None
            raise
        self.accept(event)
        return event

    def accept(self, event: Event) -> None:
        """Check one decoded event in context; ProtocolError if it does not fit."""
        kind = name_of(event)
        if self.done is not None:
            raise ProtocolError(f"'{kind}' after 'done'")
        if self.hello is None and not isinstance(event, Hello):
            raise ProtocolError(f"expected 'hello' first, got '{kind}'")
        if isinstance(event, Hello):
            if self.hello is not None:
                raise ProtocolError("a second 'hello'")
            if event.protocol != PROTOCOL_VERSION:
                raise ProtocolError(
                    f"the agent speaks protocol {event.protocol}, this lab speaks "
                    f"{PROTOCOL_VERSION}"
                )
            self.hello = event
        elif isinstance(event, AgentProgress):
            self._progress(event)
        elif isinstance(event, Result):
            self._answer(event.segment)
            if not 1 <= len(event.samples) <= self.job.timing.max_runs:
                raise ProtocolError(
                    f"result for {list(event.segment)} has {len(event.samples)} samples, the "
                    f"job allows 1..{self.job.timing.max_runs}"
                )
            if len(event.warmup_ms) > self.job.timing.warmup:
                raise ProtocolError(f"result for {list(event.segment)} has too many warm-ups")
            count = event.stats.get("count")
            if count is not None and count != len(event.samples):
                raise ProtocolError(
                    f"result for {list(event.segment)} says {count} samples but carries "
                    f"{len(event.samples)}"
                )
            self.results += 1
        elif isinstance(event, SegmentError):
            self._error(event)
        elif isinstance(event, NodeTimes):
            self._node_times(event)
        else:
            self._done(event)

    def _progress(self, event: AgentProgress) -> None:
        if not event.done <= event.total <= len(self.job.items):
            raise ProtocolError(
                f"progress {event.done}/{event.total} does not fit a job of "
                f"{len(self.job.items)} segments"
            )
        seg = event.segment
        if seg is not None and seg not in self.owed and event.phase != "node_times":
            raise ProtocolError(f"progress for segment {list(seg)}, which the job never asked for")

    def _answer(self, seg: Segment) -> None:
        if seg not in self.owed:
            raise ProtocolError(f"an answer for segment {list(seg)}, which the job never asked for")
        if self.owed[seg] == 0:
            raise ProtocolError(f"a second answer for segment {list(seg)}")
        self.owed[seg] -= 1

    def _error(self, event: SegmentError) -> None:
        if event.kind == "node_times":
            if not self.job.node_times_runs:
                raise ProtocolError("per-node times failed, but the job did not ask for them")
            return
        if event.segment is None:
            if event.kind not in ("job", "inputs"):
                raise ProtocolError(f"an error of kind '{event.kind}' names no segment")
            self.job_failed = self.job_failed or event.kind == "job"
            return
        self._answer(event.segment)
        self.segment_errors += 1

    def _node_times(self, event: NodeTimes) -> None:
        if not self.job.node_times_runs or self.node_times_seen:
            raise ProtocolError("per-node times the job did not ask for (or sent twice)")
        if self.nodes is not None and any(p >= self.nodes for p in event.times):
            raise ProtocolError(f"per-node times for a position past the {self.nodes} nodes")
        self.node_times_seen = True

    def _done(self, event: Done) -> None:
        if event.completed != self.results:
            raise ProtocolError(f"'done' counts {event.completed} results, {self.results} arrived")
        if event.errors < self.segment_errors:
            raise ProtocolError(
                f"'done' counts {event.errors} errors, {self.segment_errors} arrived"
            )
        left = sum(self.owed.values())
        if left and not event.stopped and not self.job_failed:
            raise ProtocolError(
                f"'done' without a stop, yet {left} of the job's segments were not answered"
            )
        self.done = event
