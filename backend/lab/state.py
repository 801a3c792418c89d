"""The lab's state file, `DIR/lab.json`: what `up` built, so `status` and `down` can find
it again from another process.

It is read as untrusted input (a damaged or edited file must not make `down` touch what
the lab did not create): every field is checked, and the names of the machine's objects
are not stored at all but derived again from the folder (backend/lab/layout.py).
"""

from __future__ import annotations

import ipaddress
import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from backend.errors import OmdpError
from backend.files import atomic_write
from backend.lab import layout
from backend.lab.processes import Proc
from backend.lab.spec import Limits

FORMAT = 1
FILE = "lab.json"
METHODS = ("relay", "netem")


@dataclass
class DeviceState:
    name: str
    limits: Limits = field(default_factory=Limits)
    sshd: Proc | None = None


@dataclass
class LinkState:
    src: str
    dst: str
    bandwidth_mbps: float
    latency_ms: float
    relay: Proc | None = None


@dataclass
class LabState:
    folder: str
    lab_id: str
    digest: str
    source: str
    latency: str  # "relay" or "netem"
    cgroup: int  # 1 or 2
    mgmt_net: str
    user: str
    devices: list[DeviceState]
    links: list[LinkState]

    def layout(self) -> layout.Layout:
        return layout.plan(
            self.lab_id,
            [d.name for d in self.devices],
            [(lk.bandwidth_mbps, lk.latency_ms) for lk in self.links],
            self.mgmt_net,
        )

    def to_json(self) -> str:
        body = asdict(self)
        for d, state in zip(body["devices"], self.devices, strict=True):
            d["limits"] = state.limits.to_dict()
        return json.dumps({"format": FORMAT, **body}, indent=2) + "\n"

    def save(self) -> None:
        atomic_write(Path(self.folder) / FILE, self.to_json(), mode=0o600)


def path(folder: Path) -> Path:
    return folder / FILE


def load(folder: Path) -> LabState | None:
    """The state of the lab in `folder`; None if there is none; OmdpError if damaged."""
    p = path(folder)
    if not p.exists():
        return None
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise _damaged(p, f"not readable JSON ({type(exc).__name__})") from None
    try:
        return _parse(data, folder)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise _damaged(p, str(exc) or type(exc).__name__) from None


def _damaged(p: Path, what: str) -> OmdpError:
    return OmdpError(
        f"the lab state {p} is damaged: {what}",
        f"run `omdp lab down {p.parent}` (it finds what the lab made by its "
        "names) and bring the lab up again",
    )


def _need(cond: bool, what: str) -> None:
    if not cond:
        raise ValueError(what)


def _str(d: dict[str, Any], key: str, limit: int = 4096) -> str:
    v = d[key]
    _need(isinstance(v, str) and 0 < len(v) <= limit and "\0" not in v, f"bad {key}")
    return v


def _num(d: dict[str, Any], key: str, lo: float, hi: float) -> float:
    v = d[key]
    _need(
        isinstance(v, int | float)
        and not isinstance(v, bool)
        and math.isfinite(v)
        and lo <= v <= hi,
        f"bad {key}",
    )
    return float(v)


def _proc(v: Any) -> Proc | None:
    if v is None:
        return None
    _need(isinstance(v, dict), "bad process")
    pid, started = v["pid"], v["started"]
    _need(
        all(isinstance(x, int) and not isinstance(x, bool) for x in (pid, started))
        and 1 < pid < 1 << 22
        and 0 <= started < 1 << 62,
        "bad process",
    )
    return Proc(pid, started)


def _limits(v: Any) -> Limits:
    _need(isinstance(v, dict), "bad limits")
    cpu, cpus, mem, python = v.get("cpu"), v.get("cpus"), v.get("memory_mib"), v.get("python")
    _need(
        cpu is None or (isinstance(cpu, int | float) and math.isfinite(cpu) and cpu > 0), "bad cpu"
    )
    _need(mem is None or (isinstance(mem, int) and 0 < mem < 1 << 40), "bad memory_mib")
    _need(python is None or isinstance(python, str), "bad python")
    cpu_list = None
    if cpus is not None:
        _need(isinstance(cpus, str) and len(cpus) < 4096, "bad cpus")
        from backend.chain import parse_cpus

        _need(all(len(n) < 5 for n in cpus.replace("-", ",").split(",")), "bad cpus")
        cpu_list = tuple(parse_cpus(cpus))
    return Limits(float(cpu) if cpu is not None else None, cpu_list, mem, python)


def _parse(data: Any, folder: Path) -> LabState:
    _need(isinstance(data, dict), "not an object")
    _need(data.get("format") == FORMAT, f"format {data.get('format')!r} is not {FORMAT}")
    lid = _str(data, "lab_id")
    _need(layout.ID_RE.fullmatch(lid) is not None, "bad lab_id")
    where = _str(data, "folder")
    real = os.path.realpath(folder)
    if lid != layout.lab_id(folder) or os.path.realpath(where) != real:
        raise ValueError(
            f"it belongs to a lab brought up in {where!r} (labs cannot move: "
            "take it down where it was brought up)"
        )
    latency = _str(data, "latency")
    _need(latency in METHODS, "bad latency method")
    cgroup = data["cgroup"]
    _need(cgroup in (1, 2) and not isinstance(cgroup, bool), "bad cgroup version")
    net = ipaddress.ip_network(_str(data, "mgmt_net"))
    _need(
        net.version == 4 and net.prefixlen == 24 and net.subnet_of(layout.MGMT_POOL),  # type: ignore[arg-type]
        "bad mgmt_net",
    )
    raw_devices, raw_links = data["devices"], data["links"]
    _need(isinstance(raw_devices, list) and 0 < len(raw_devices) <= 32, "bad devices")
    _need(isinstance(raw_links, list) and len(raw_links) == len(raw_devices) - 1, "bad links")
    devices = []
    for d in raw_devices:
        _need(isinstance(d, dict), "bad device")
        devices.append(
            DeviceState(_str(d, "name", 256), _limits(d.get("limits", {})), _proc(d.get("sshd")))
        )
    names = [d.name for d in devices]
    _need(len(set(names)) == len(names), "device names repeat")
    links = []
    for i, lk in enumerate(raw_links):
        _need(isinstance(lk, dict), "bad link")
        src, dst = _str(lk, "src", 256), _str(lk, "dst", 256)
        _need((src, dst) == (names[i], names[i + 1]), "links do not follow the chain")
        links.append(
            LinkState(
                src,
                dst,
                _num(lk, "bandwidth_mbps", 0.01, 1e5),
                _num(lk, "latency_ms", 0, 1e5),
                _proc(lk.get("relay")),
            )
        )
    return LabState(
        where,
        lid,
        _str(data, "digest", 64),
        _str(data, "source"),
        latency,
        cgroup,
        str(net),
        _str(data, "user", 64),
        devices,
        links,
    )
