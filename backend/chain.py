"""The chain of devices and the links between them, read from a `devices.toml`.

`[[device]]` tables in chain order (first = where the input is produced), `[[link]]`
tables between consecutive devices. Every mistake is reported as `file:line: what (fix)`;
tomllib gives no line numbers for values, so the table's and key's lines are found by
scanning the text. See docs/devices.md.
"""

from __future__ import annotations

import difflib
import itertools
import math
import os
import re
import tomllib
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from backend.device.runtimes import (
    ORT_GRAPH_OPT,
    OV_PERF_HINTS,
    OV_PRECISIONS,
    RUNTIME_OPTIONS,
    RUNTIMES,
    RuntimeConfig,
)
from backend.errors import OmdpError
from backend.files import read_text
from backend.remote.target import SSH_FIELDS

KINDS = ("local", "ssh")
DEFAULT_BANDWIDTH_MBPS = 100.0
DEFAULT_LATENCY_MS = 0.0

# Limits checked before anything is allocated (a devices file is a few hundred bytes).
MAX_FILE_BYTES = 1 << 20
MAX_NAME = 64  # device names appear in file names, tables and LINK=VALUE arguments
MAX_CPU = 4095  # CPU numbers 0..4095 (Linux's default NR_CPUS is at most 4096)
MAX_THREADS = 1024
NAME_FORBIDDEN = "/\\="  # path separators (file names) and '=' (LINK=VALUE arguments)

ORT_ONLY = tuple(k for k in RUNTIME_OPTIONS["onnxruntime"] if k not in RUNTIME_OPTIONS["openvino"])
OV_ONLY = tuple(k for k in RUNTIME_OPTIONS["openvino"] if k not in RUNTIME_OPTIONS["onnxruntime"])
# `python` also applies to local devices: another interpreter or venv of this machine
SSH_ONLY = tuple(k for k in SSH_FIELDS if k != "python")


@dataclass
class DeviceSpec:
    """One device of the chain. Runtime options left None use the runtime's defaults."""

    name: str
    kind: str = "local"
    runtime: str = "onnxruntime"
    threads: int | None = None
    inter_threads: int | None = None
    graph_opt: str | None = None
    providers: list[str] | None = None
    ov_device: str | None = None
    precision: str | None = None
    perf_hint: str | None = None
    cpus: list[int] | None = None  # pin the local agent (os.sched_setaffinity)
    gflops: float | None = None  # rough speed, only for the plan's time estimate
    # ssh devices (see docs/ssh.md); validated by backend.remote.target.target_from_spec
    host: str | None = None
    port: int | None = None
    user: str | None = None
    identity: str | None = None
    known_hosts: str | None = None
    python: str | None = None
    workdir: str | None = None
    ssh_config: str | None = None
    address: str | None = None  # how the other devices reach this one (link measurement)
    connect_timeout: float | None = None
    line: int = 0  # where its table starts in the file (0: not from a file)

    def runtime_config(self) -> RuntimeConfig:
        """The runtime configuration this device measures with. Pinned to CPUs without an
        explicit thread count, it uses one thread per pinned CPU."""
        cfg = RuntimeConfig(name=self.runtime)
        threads = self.threads or (len(self.cpus) if self.cpus else None)
        cfg.threads = threads
        for key in (*ORT_ONLY, *OV_ONLY):
            value = getattr(self, key)
            if value is not None:
                setattr(cfg, key, value)
        return cfg

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None and k != "line"}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DeviceSpec:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


@dataclass
class LinkSpec:
    """The link from device `src` to the next device `dst` in the chain."""

    src: str
    dst: str
    bandwidth_mbps: float = DEFAULT_BANDWIDTH_MBPS
    latency_ms: float = DEFAULT_LATENCY_MS
    default: bool = False  # not in the file: the defaults were used
    line: int = 0

    @property
    def name(self) -> str:
        return link_name(self.src, self.dst)

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k != "line"}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LinkSpec:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


def link_name(src: str, dst: str) -> str:
    """A link is named "a-b" after the two devices it joins, in chain order."""
    return f"{src}-{dst}"


def shared_link_name(devices: Sequence[str]) -> tuple[str, int, int] | None:
    """(name, i, j) when links i < j of this chain get the same name (device names with
    '-', e.g. a → b-c and a-b → c are both "a-b-c"), else None."""
    seen: dict[str, int] = {}
    for i, (a, b) in enumerate(itertools.pairwise(devices)):
        name = link_name(a, b)
        if name in seen:
            return name, seen[name], i
        seen[name] = i
    return None


def link_names(devices: Sequence[str]) -> tuple[str, ...]:
    """The chain's link names in order. They are unique: a chain where two links would
    share a name is an error, so a LINK=VALUE argument always means exactly one link."""
    shared = shared_link_name(devices)
    if shared is not None:
        name, i, j = shared
        raise OmdpError(
            f"the link name {name!r} would mean two links ({_arrow(devices, i)} and "
            f"{_arrow(devices, j)})",
            "rename a device so that link names differ (e.g. '_' instead of '-')",
        )
    return tuple(link_name(a, b) for a, b in itertools.pairwise(devices))


def _arrow(devices: Sequence[str], i: int) -> str:
    return f"{devices[i]!r} → {devices[i + 1]!r}"


@dataclass
class Chain:
    devices: list[DeviceSpec]
    links: list[LinkSpec]  # len(devices) - 1, in chain order
    source: str | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def names(self) -> list[str]:
        return [d.name for d in self.devices]

    @property
    def link_names(self) -> tuple[str, ...]:
        return link_names(self.names)

    def device(self, name: str) -> DeviceSpec:
        for d in self.devices:
            if d.name == name:
                return d
        raise KeyError(name)

    @classmethod
    def of(cls, devices: list[DeviceSpec], links: list[LinkSpec] | None = None) -> Chain:
        """A chain built in code; missing links get the defaults."""
        given = {(lk.src, lk.dst): lk for lk in links or []}
        full = [
            given.get((a.name, b.name), LinkSpec(a.name, b.name, default=True))
            for a, b in itertools.pairwise(devices)
        ]
        return cls(list(devices), full)


# -- reading devices.toml --------------------------------------------------------------------

_DEVICE_TYPES: dict[str, tuple[type, ...]] = {
    "name": (str,),
    "kind": (str,),
    "runtime": (str,),
    "threads": (int,),
    "inter_threads": (int,),
    "graph_opt": (str,),
    "providers": (list,),
    "ov_device": (str,),
    "precision": (str,),
    "perf_hint": (str,),
    "cpus": (list, str, int),
    "gflops": (int, float),
    "host": (str,),
    "port": (int,),
    "user": (str,),
    "identity": (str,),
    "known_hosts": (str,),
    "python": (str,),
    "workdir": (str,),
    "ssh_config": (str,),
    "address": (str,),
    "connect_timeout": (int, float),
    "lab": (dict,),  # [device.lab]: emulated-lab limits, read by backend.lab.spec
}
_LINK_TYPES: dict[str, tuple[type, ...]] = {
    "from": (str,),
    "to": (str,),
    "bandwidth_mbps": (int, float),
    "latency_ms": (int, float),
}
_CHOICES = {
    "runtime": RUNTIMES,
    "graph_opt": ORT_GRAPH_OPT,
    "precision": OV_PRECISIONS,
    "perf_hint": OV_PERF_HINTS,
}


class _Text:
    """Line numbers for tables and keys, found by scanning the file's text."""

    def __init__(self, path: str, text: str):
        self.path = path
        self.lines = text.splitlines()
        self.headers: list[tuple[int, str]] = []  # (line, header text) for every [..] header
        for i, line in enumerate(self.lines, 1):
            m = re.match(r"\s*(\[\[?)\s*([A-Za-z0-9_.\"' -]+?)\s*\]\]?\s*(#.*)?$", line)
            if m:
                self.headers.append((i, m.group(2).strip("\"' ") if m.group(1) == "[[" else ""))

    def table_line(self, name: str, k: int) -> int:
        """Line of the k-th `[[name]]` header (1 when not found, e.g. inline tables)."""
        found = [ln for ln, h in self.headers if h == name]
        return found[k] if k < len(found) else 1

    def key_line(self, table_line: int, key: str) -> int:
        end = next((ln for ln, _ in self.headers if ln > table_line), len(self.lines) + 1)
        pat = re.compile(rf"\s*[\"']?{re.escape(key)}[\"']?\s*=")
        for ln in range(table_line + 1, end):
            if pat.match(self.lines[ln - 1]):
                return ln
        return table_line

    def fail(self, line: int, message: str) -> OmdpError:
        return OmdpError(f"{self.path}:{line}: {message}")


def load_devices(path: str | os.PathLike) -> Chain:
    """Read and validate a devices file; OmdpError with file:line on any problem."""
    text = read_text(
        path,
        "devices file",
        MAX_FILE_BYTES,
        "give the chain's devices.toml (see examples/devices.toml, docs/devices.md)",
    )
    return parse_devices(text, str(path))


def parse_devices(text: str, path: str = "devices.toml") -> Chain:
    src = _Text(path, text)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        m = re.search(r"line (\d+)", str(exc))
        line = int(m.group(1)) if m else 1
        msg = re.sub(r"\s*\(at line \d+, column \d+\)", "", str(exc))
        raise src.fail(line, f"invalid TOML: {msg} (fix the syntax on this line)") from exc
    for key in data:
        if key not in ("device", "link"):
            raise src.fail(
                _top_line(src, key),
                f"unknown section {_show(key)} (only [[device]] and [[link]] tables belong here)",
            )
    raw_devices = data.get("device", [])
    if not isinstance(raw_devices, list) or not raw_devices:
        raise src.fail(1, "no devices (add a [[device]] table per device, in chain order)")
    devices: list[DeviceSpec] = []
    for k, raw in enumerate(raw_devices):
        devices.append(_device(src, k, raw, devices))
    shared = shared_link_name([d.name for d in devices])
    if shared is not None:
        name, i, j = shared
        raise src.fail(
            src.key_line(devices[j + 1].line, "name"),
            f"device {_show(devices[j + 1].name)}: the link name {_show(name)} "
            f"would mean two links ({_arrow([d.name for d in devices], i)} and "
            f"{_arrow([d.name for d in devices], j)}); rename a device (e.g. '_' "
            "instead of '-')",
        )
    raw_links = data.get("link", [])
    if not isinstance(raw_links, list):
        raise src.fail(_top_line(src, "link"), "'link' must be [[link]] tables")
    given: dict[tuple[str, str], LinkSpec] = {}
    names = [d.name for d in devices]
    for k, raw in enumerate(raw_links):
        link = _link(src, k, raw, names)
        if (link.src, link.dst) in given:
            raise src.fail(
                link.line,
                f"link {_arrow([link.src, link.dst], 0)} is given twice "
                f"(first on line {given[(link.src, link.dst)].line}; keep one)",
            )
        given[(link.src, link.dst)] = link
    links: list[LinkSpec] = []
    warnings: list[str] = []
    for a, b in itertools.pairwise(names):
        if (a, b) in given:
            links.append(given[(a, b)])
        else:
            links.append(LinkSpec(a, b, default=True))
            warnings.append(
                f"{path}: no [[link]] from {_show(a)} to {_show(b)}: using "
                f"{DEFAULT_BANDWIDTH_MBPS:g} Mbit/s and {DEFAULT_LATENCY_MS:g} ms"
            )
    return Chain(devices, links, path, warnings)


def _top_line(src: _Text, key: str) -> int:
    pat = re.compile(rf"\s*\[*\s*[\"']?{re.escape(key)}[\"']?\s*[\]=]")
    return next((i for i, ln in enumerate(src.lines, 1) if pat.match(ln)), 1)


def _show(value: Any, width: int = 60) -> str:
    """A value from the file as it may appear in a one-line message: quoted, control
    characters escaped, long values cut."""
    text = repr(value)
    return text if len(text) <= width else text[: width - 1] + "…"


def _number(value: Any) -> float:
    """A TOML number as a float (integers too large for a float become inf)."""
    try:
        return float(value)
    except OverflowError:
        return math.inf if value > 0 else -math.inf


def _check_type(
    src: _Text, line: int, who: str, key: str, value: Any, types: tuple[type, ...]
) -> None:
    if isinstance(value, bool) or not isinstance(value, types):
        names = {int: "an integer", str: "a string", list: "a list", dict: "a table"}
        want = "a number" if float in types else " or ".join(names[t] for t in types)
        raise src.fail(line, f"{who}: {key} must be {want}, not {_show(value)}")


def _unknown(src: _Text, line: int, who: str, key: str, known) -> OmdpError:
    close = difflib.get_close_matches(key, list(known), n=1)
    hint = f"did you mean '{close[0]}'?" if close else f"known: {', '.join(sorted(known))}"
    return src.fail(line, f"{who}: unknown field {_show(key)} ({hint})")


def device_name_problem(name: str) -> str | None:
    """Why `name` cannot name a device, or None."""
    if not name:
        return "is empty"
    if len(name) > MAX_NAME:
        return f"is longer than {MAX_NAME} characters"
    if not name.isprintable():
        return "contains control characters"
    bad = [c for c in NAME_FORBIDDEN if c in name]
    if bad:
        return f"contains {bad[0]!r} (names appear in file names and in LINK=VALUE arguments)"
    return None


def _device(src: _Text, k: int, raw: Any, previous: list[DeviceSpec]) -> DeviceSpec:
    tline = src.table_line("device", k)
    if not isinstance(raw, dict):
        raise src.fail(tline, "each device must be a [[device]] table")
    name = raw.get("name")
    who = f"device {_show(name)}" if isinstance(name, str) and name else f"device #{k + 1}"
    if "name" not in raw:
        raise src.fail(tline, f'{who}: no name (add name = "...")')
    for key, value in raw.items():
        line = src.key_line(tline, key)
        if key not in _DEVICE_TYPES:
            raise _unknown(src, line, who, key, _DEVICE_TYPES)
        _check_type(src, line, who, key, value, _DEVICE_TYPES[key])
    line_of = lambda key: src.key_line(tline, key)  # noqa: E731
    name = str(name).strip()
    problem = device_name_problem(name)
    if problem is not None:
        raise src.fail(line_of("name"), f"{who}: the name {problem}")
    dup = next((d for d in previous if d.name == name), None)
    if dup is not None:
        raise src.fail(
            line_of("name"),
            f"{who}: the name is already used on line {dup.line} (names must be unique)",
        )
    kind = raw.get("kind", "local")
    if kind not in KINDS:
        raise src.fail(
            line_of("kind"), f"{who}: kind {_show(kind)} is unknown (use {' or '.join(KINDS)})"
        )
    for key, value in raw.items():
        if key in _CHOICES and value not in _CHOICES[key]:
            raise src.fail(
                line_of(key),
                f"{who}: {key} {_show(value)} is unknown (use {' or '.join(_CHOICES[key])})",
            )
    runtime = raw.get("runtime", "onnxruntime")
    wrong = ORT_ONLY if runtime == "openvino" else OV_ONLY
    for key in wrong:
        if key in raw:
            raise src.fail(
                line_of(key),
                f"{who}: {key} is an option of "
                f"{'onnxruntime' if runtime == 'openvino' else 'openvino'}, not "
                f"{runtime} (remove it or change runtime)",
            )
    for key in SSH_ONLY:
        if key in raw and kind != "ssh":
            raise src.fail(line_of(key), f'{who}: {key} only applies to kind = "ssh" (remove it)')
    python = raw.get("python")
    if python is not None and (not python.strip() or not python.isprintable()):
        raise src.fail(line_of("python"), f"{who}: python must be an interpreter command")
    for key, top in (("threads", MAX_THREADS), ("inter_threads", MAX_THREADS), ("port", 65535)):
        if key in raw and not 1 <= raw[key] <= top:
            bound = "at least 1" if raw[key] < 1 else f"at most {top}"
            raise src.fail(line_of(key), f"{who}: {key} must be {bound}, not {_show(raw[key])}")
    if "gflops" in raw and not 0 < _number(raw["gflops"]) < math.inf:
        raise src.fail(
            line_of("gflops"),
            f"{who}: gflops must be a positive finite number, not {_show(raw['gflops'])}",
        )
    providers = raw.get("providers")
    if providers is not None and (
        not providers
        or not all(isinstance(p, str) and p.isprintable() and p.strip() for p in providers)
    ):
        raise src.fail(
            line_of("providers"),
            f'{who}: providers must be a list of names, e.g. ["CPUExecutionProvider"]',
        )
    cpus = None
    if "cpus" in raw:
        try:
            cpus = parse_cpus(raw["cpus"])
        except ValueError as exc:
            raise src.fail(line_of("cpus"), f"{who}: cpus {exc}") from exc
        available = _available_cpus()
        missing = [c for c in cpus if available is not None and c not in available]
        if kind == "local" and available is not None and missing:
            raise src.fail(
                line_of("cpus"),
                f"{who}: cpu {missing[0]} is not available on "
                f"this machine (available: {format_cpus(sorted(available))})",
            )
    values = {k: v for k, v in raw.items() if k not in ("name", "cpus", "lab")}
    for key in ("gflops", "connect_timeout"):
        if key in values:
            values[key] = _number(values[key])
    spec = DeviceSpec(name=name, cpus=cpus, line=tline, **values)
    if kind == "ssh":
        from backend.remote.target import target_from_spec

        target_from_spec(spec, src.path)  # host given, identity exists, fields make sense
    return spec


def _link(src: _Text, k: int, raw: Any, names: list[str]) -> LinkSpec:
    tline = src.table_line("link", k)
    if not isinstance(raw, dict):
        raise src.fail(tline, "each link must be a [[link]] table")
    who = f"link #{k + 1}"
    if isinstance(raw.get("from"), str) and isinstance(raw.get("to"), str):
        who = f"link {_show(raw['from'])} → {_show(raw['to'])}"
    for key, value in raw.items():
        line = src.key_line(tline, key)
        if key not in _LINK_TYPES:
            raise _unknown(src, line, who, key, _LINK_TYPES)
        _check_type(src, line, who, key, value, _LINK_TYPES[key])
    for key in ("from", "to"):
        if key not in raw:
            raise src.fail(tline, f"{who}: no '{key}' (name the devices it connects)")
        if raw[key] not in names:
            raise src.fail(
                src.key_line(tline, key),
                f"{who}: no device named {_show(raw[key])} (devices: {', '.join(names)})",
            )
    a, b = names.index(raw["from"]), names.index(raw["to"])
    if b != a + 1:
        chain = " → ".join(names)
        raise src.fail(tline, f"{who}: links connect consecutive devices in chain order ({chain})")
    if "bandwidth_mbps" not in raw:
        raise src.fail(tline, f"{who}: no bandwidth_mbps (add bandwidth_mbps = <Mbit/s>)")
    bw = _number(raw["bandwidth_mbps"])
    if not 0 < bw < math.inf:
        raise src.fail(
            src.key_line(tline, "bandwidth_mbps"),
            f"{who}: bandwidth_mbps must "
            f"be a positive finite number, not {_show(raw['bandwidth_mbps'])}",
        )
    lat = _number(raw.get("latency_ms", DEFAULT_LATENCY_MS))
    if not 0 <= lat < math.inf:
        raise src.fail(
            src.key_line(tline, "latency_ms"),
            f"{who}: latency_ms must be a finite number, 0 or more, not {_show(raw['latency_ms'])}",
        )
    return LinkSpec(raw["from"], raw["to"], bw, lat, False, tline)


# -- CPU lists -------------------------------------------------------------------------------


def parse_cpus(value: Any) -> list[int]:
    """[0, 2] or "0,2-3" or 1 → sorted unique CPU numbers."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = [value]
    if isinstance(value, str):
        out: list[int] = []
        for part in value.split(","):
            part = part.strip()
            m = re.fullmatch(r"([0-9]{1,12})(?:-([0-9]{1,12}))?", part)
            if not m:
                raise ValueError(
                    f'{_show(value)} is not a CPU list (write e.g. "0-1,3" or '
                    f"[0, 1]; CPU numbers go up to {MAX_CPU})"
                )
            lo, hi = int(m.group(1)), int(m.group(2) or m.group(1))
            if hi < lo:
                raise ValueError(f"range '{part}' goes backwards")
            if hi > MAX_CPU:
                raise ValueError(f"'{part}' goes beyond CPU {MAX_CPU}, the largest CPU number")
            out.extend(range(lo, hi + 1))
        value = out
    if (
        not isinstance(value, list)
        or not value
        or not all(isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in value)
    ):
        raise ValueError(f"{_show(value)} is not a list of CPU numbers (e.g. [0, 1])")
    if max(value) > MAX_CPU:
        raise ValueError(f"{_show(max(value))} is beyond CPU {MAX_CPU}, the largest CPU number")
    return sorted(set(value))


def format_cpus(cpus: list[int]) -> str:
    parts, i = [], 0
    while i < len(cpus):
        j = i
        while j + 1 < len(cpus) and cpus[j + 1] == cpus[j] + 1:
            j += 1
        parts.append(str(cpus[i]) if i == j else f"{cpus[i]}-{cpus[j]}")
        i = j + 1
    return ",".join(parts)


def _available_cpus() -> set[int] | None:
    try:
        return set(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return None


def cpu_set(device: DeviceSpec) -> frozenset[int]:
    """The CPUs a local device may use (all of this machine's when not pinned)."""
    if device.cpus:
        return frozenset(device.cpus)
    return frozenset(_available_cpus() or range(os.cpu_count() or 1))
