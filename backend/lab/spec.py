"""The chain a lab emulates: a normal `devices.toml` plus an optional `[device.lab]` table
per device (`cpu`, `cpus`, `memory_mib`, `python`).

`backend.chain` reads and validates the chain itself and only lets `[device.lab]` through;
the lab's fields are checked here, with the file's line, before anything is created, and
the link figures are checked against what the lab can emulate faithfully.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import math
import os
import re
import shutil
import subprocess
import tomllib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from backend.chain import Chain, DeviceSpec, format_cpus, load_devices, parse_cpus
from backend.errors import OmdpError

MAX_DEVICES = 32  # one /30 of the management /24 each, with room to spare
MIN_CPU_SHARE = 0.01
MIN_MEMORY_MIB = 64  # below this a Python with numpy does not start
MIN_RATE_MBPS = 0.1
MAX_RATE_MBPS = 300.0  # the user-space relay keeps up to about this on a busy 2-core machine
MAX_LATENCY_MS = 1000.0
LAB_FIELDS = ("cpu", "cpus", "memory_mib", "python")


@dataclass(frozen=True)
class Limits:
    """What `[device.lab]` asks for; None: no limit (the lab machine's own)."""

    cpu: float | None = None  # a share of CPU time: 0.25 = a quarter of one CPU
    cpus: tuple[int, ...] | None = None  # the CPUs it may run on (a cpuset)
    memory_mib: int | None = None
    python: str | None = None  # absolute path of the interpreter the device runs

    def to_dict(self) -> dict[str, Any]:
        d = {k: v for k, v in asdict(self).items() if v is not None}
        if self.cpus is not None:
            d["cpus"] = format_cpus(list(self.cpus))
        return d


@dataclass
class LabSpec:
    """A validated chain and the limits of each of its devices (same order)."""

    chain: Chain
    limits: list[Limits]
    source: str
    warnings: list[str] = field(default_factory=list)

    @property
    def devices(self) -> list[DeviceSpec]:
        return self.chain.devices

    def digest(self) -> str:
        """What is emulated, independent of comments and layout: a lab is "the same" when
        this is."""
        body = {
            "devices": [d.to_dict() for d in self.chain.devices],
            "links": [
                [lk.src, lk.dst, lk.bandwidth_mbps, lk.latency_ms] for lk in self.chain.links
            ],
            "limits": [lim.to_dict() for lim in self.limits],
        }
        return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]


def load_lab_spec(path: str | os.PathLike[str]) -> LabSpec:
    """Read `devices.toml` for a lab; OmdpError with file:line on any problem."""
    chain = load_devices(path)
    source = str(path)
    text = Path(path).read_text(encoding="utf-8")  # load_devices read it: it is readable
    raw_devices = tomllib.loads(text).get("device", [])
    if len(chain.devices) > MAX_DEVICES:
        raise OmdpError(
            f"{source}: {len(chain.devices)} devices; a lab holds at most {MAX_DEVICES}",
            "emulate a shorter chain",
        )
    lines = _LabLines(text)
    limits = [
        _limits(source, lines, k, raw.get("lab"), d)
        for k, (raw, d) in enumerate(zip(raw_devices, chain.devices, strict=True))
    ]
    for link in chain.links:
        _check_link(source, link)
    return LabSpec(chain, limits, source, list(chain.warnings))


def _check_link(source: str, link: Any) -> None:
    where = f"{source}:{link.line}: " if link.line else f"{source}: "
    who = f"link '{link.src}' → '{link.dst}'"
    if not MIN_RATE_MBPS <= link.bandwidth_mbps <= MAX_RATE_MBPS:
        raise OmdpError(
            f"{where}{who}: the lab shapes {MIN_RATE_MBPS:g} to "
            f"{MAX_RATE_MBPS:g} Mbit/s, not {link.bandwidth_mbps:g}",
            "give a bandwidth_mbps in that range",
        )
    if link.latency_ms > MAX_LATENCY_MS:
        raise OmdpError(
            f"{where}{who}: the lab emulates latencies up to "
            f"{MAX_LATENCY_MS:g} ms, not {link.latency_ms:g}",
            "give a smaller latency_ms",
        )


class _LabLines:
    """Line numbers of each device's `[device.lab]` table and its keys (tomllib gives none).

    A `[device.lab]` header belongs to the `[[device]]` above it; an inline `lab = {...}`
    sits on one line of the device's table."""

    def __init__(self, text: str):
        self.lines = text.splitlines()
        self.device_lines: list[int] = []
        self.lab_lines: dict[int, int] = {}
        for i, line in enumerate(self.lines, 1):
            if re.match(r"\s*\[\[\s*device\s*\]\]", line):
                self.device_lines.append(i)
            elif re.match(r"\s*\[\s*device\s*\.\s*lab\s*\]", line) and self.device_lines:
                self.lab_lines[len(self.device_lines) - 1] = i
            elif re.match(r"\s*lab\s*=", line) and self.device_lines:
                self.lab_lines.setdefault(len(self.device_lines) - 1, i)

    def table(self, k: int) -> int:
        return self.lab_lines.get(k, self.device_lines[k] if k < len(self.device_lines) else 1)

    def key(self, k: int, key: str) -> int:
        start = self.table(k)
        if self.lines[start - 1].lstrip().startswith("lab"):
            return start  # inline table: one line
        pat = re.compile(rf"\s*[\"']?{re.escape(key)}[\"']?\s*=")
        for ln in range(start + 1, len(self.lines) + 1):
            text = self.lines[ln - 1]
            if re.match(r"\s*\[", text):
                break
            if pat.match(text):
                return ln
        return start


def _limits(source: str, lines: _LabLines, k: int, raw: Any, device: DeviceSpec) -> Limits:
    if raw is None:
        return Limits()
    who = f"device '{device.name}'"

    def fail(key: str | None, what: str, fix: str) -> OmdpError:
        line = lines.key(k, key) if key else lines.table(k)
        return OmdpError(f"{source}:{line}: {who}: [device.lab] {what}", fix)

    if not isinstance(raw, dict):
        raise fail(None, "must be a table", "write [device.lab] with cpu, cpus, memory_mib, python")
    for key in raw:
        if key not in LAB_FIELDS:
            close = difflib.get_close_matches(key, LAB_FIELDS, n=1)
            hint = f"did you mean '{close[0]}'?" if close else f"known: {', '.join(LAB_FIELDS)}"
            raise fail(key, f"unknown field '{key}'", hint)
    ncpu = len(_online_cpus())
    cpu = raw.get("cpu")
    if cpu is not None:
        if (
            isinstance(cpu, bool)
            or not isinstance(cpu, int | float)
            or not math.isfinite(cpu)
            or not MIN_CPU_SHARE <= cpu <= ncpu
        ):
            raise fail(
                "cpu",
                f"cpu must be a share of CPU time in {MIN_CPU_SHARE:g}..{ncpu} "
                f"(this machine has {ncpu} CPUs), not {cpu!r}",
                "e.g. cpu = 0.25 for a quarter of one CPU",
            )
        cpu = float(cpu)
    cpus = raw.get("cpus")
    if cpus is not None:
        cpus = _cpu_list(cpus, lambda what, fix: fail("cpus", what, fix))
        if cpu is not None and cpu > len(cpus):
            raise fail(
                "cpu",
                f"cpu = {cpu:g} is more than the {len(cpus)} CPU(s) in cpus",
                "lower cpu or list more cpus",
            )
        outside = sorted(set(device.cpus or []) - set(cpus))
        if outside:
            raise fail(
                "cpus",
                f"the device pins its agent to cpu {outside[0]}, which is not "
                f"in its lab cpus {format_cpus(cpus)}",
                "make the device's `cpus` a subset of [device.lab] cpus",
            )
    memory = raw.get("memory_mib")
    if memory is not None:
        total = _total_memory_mib()
        if (
            isinstance(memory, bool)
            or not isinstance(memory, int)
            or not MIN_MEMORY_MIB <= memory <= total
        ):
            raise fail(
                "memory_mib",
                f"memory_mib must be an integer in {MIN_MEMORY_MIB}.."
                f"{total} (this machine's memory), not {memory!r}",
                "e.g. memory_mib = 2048",
            )
    python = raw.get("python")
    if python is not None:
        python = _interpreter(python, lambda what, fix: fail("python", what, fix))
    return Limits(cpu, tuple(cpus) if cpus is not None else None, memory, python)


def _cpu_list(value: Any, fail: Any) -> list[int]:
    """`cpus` as chain.parse_cpus reads it, bounded by this machine's CPUs before any list
    is built (a range of 4×10^9 must not be expanded)."""
    online = _online_cpus()
    top = max(online)
    numbers = (
        re.findall(r"\d+", value)
        if isinstance(value, str)
        else (value if isinstance(value, list) else [value])
    )
    if isinstance(value, list) and len(value) > top + 1:
        raise fail(
            f"cpus lists {len(value)} CPUs; this machine has {len(online)}",
            f"use CPUs from {format_cpus(online)}",
        )
    for n in numbers:
        if isinstance(n, bool) or not isinstance(n, int | str):
            continue  # parse_cpus says what is wrong with it
        if (int(n) if isinstance(n, int) or len(n) < 10 else top + 1) > top:
            raise fail(
                f"cpu {n} does not exist here (CPUs: {format_cpus(online)})",
                "list CPUs of this machine",
            )
    try:
        cpus = parse_cpus(value)
    except ValueError as exc:
        raise fail(f"cpus {exc}", 'e.g. cpus = "0-1" or cpus = [0]') from None
    missing = [c for c in cpus if c not in online]
    if missing:
        raise fail(
            f"cpu {missing[0]} is not available here (CPUs: {format_cpus(online)})",
            "list CPUs of this machine",
        )
    return cpus


def _interpreter(value: Any, fail: Any) -> str:
    if not isinstance(value, str) or not value.strip() or "\n" in value:
        raise fail(
            f"python must be an interpreter's name or path, not {value!r}",
            'e.g. python = "python3.8"',
        )
    found = shutil.which(value.strip())
    if found is None or os.path.isdir(found):
        raise fail(
            f"python '{value}' is not an executable on this machine",
            "install it, or give its full path",
        )
    # The interpreter itself, not a wrapper: a pyenv shim, for one, needs the user's shell
    # environment, which an SSH session on the device does not have.
    try:
        done = subprocess.run(
            [found, "-c", "import sys; print(sys.executable)"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise fail(f"python '{value}' does not run: {exc}", "give a working interpreter") from None
    real = done.stdout.strip()
    if done.returncode != 0 or not os.path.isabs(real) or not os.path.isfile(real):
        why = next((ln for ln in done.stderr.splitlines() if ln.strip()), "no sys.executable")
        raise fail(
            f"python '{value}' does not run: {why.strip()[:200]}", "give a working interpreter"
        )
    return real


def _online_cpus() -> list[int]:
    try:
        return sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - Linux has it
        return list(range(os.cpu_count() or 1))


def _total_memory_mib() -> int:
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) // 1024
    except (OSError, ValueError, IndexError):
        pass
    return 1 << 20
