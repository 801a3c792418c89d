"""CPU and memory limits per device, with cgroups (v1 controllers, or the unified v2 tree).

Every device gets a cgroup, limited or not: its sshd is put there, so everything it starts
(sessions, the agent) is limited the same way and can be found and stopped by `down`.

CPU shares use CFS bandwidth control with the kernel's default 100 ms period: a quarter
share runs 25 ms, then waits 75 ms. Shorter periods spread a segment over more, smaller
slices, but every pause costs the throttled process its warm caches: measured here on a
MatMul segment (125 ms unthrottled), a quarter share took 1.45× more CPU time per run at
10 ms, 1.3× at 50 ms and 1.1× at 100 ms — a "4× slower" device became 5-6× slower. The
price of the long period is granularity: a segment's time varies by up to one period's
pause (75 ms at a quarter share), so segments of a few hundred ms or more are timed
evenly (p90/p10 ≈ 1.1) while a 100 ms one spreads up to ≈ 1.3-1.4 (docs/lab.md).
"""

from __future__ import annotations

import contextlib
import math
import os
from dataclasses import dataclass
from pathlib import Path

from backend.errors import OmdpError
from backend.lab.layout import cgroup_name
from backend.lab.spec import Limits

PERIOD_US = 100_000  # the kernel's default; see the module docstring
MIN_QUOTA_US = 1_000
V1_CONTROLLERS = ("cpu", "cpuset", "memory")


def period_us(share: float) -> int:
    """The CFS period for a CPU share: 100 ms, longer only to keep the quota ≥ 1 ms."""
    return max(PERIOD_US, math.ceil(MIN_QUOTA_US / share))


def quota_us(share: float) -> int:
    return round(share * period_us(share))


@dataclass(frozen=True)
class Hierarchy:
    """Where the controllers are: v1, one mount per controller; v2, one tree."""

    version: int
    mounts: dict[str, Path]  # v1: controller → mount point; v2: {"": root}

    @property
    def label(self) -> str:
        return f"cgroup v{self.version}"


def detect(mounts_text: str | None = None) -> Hierarchy:
    """The cgroup layout of this machine, from /proc/self/mounts. v1 controllers win on a
    hybrid machine (there the v2 tree has no controllers)."""
    if mounts_text is None:
        try:
            mounts_text = Path("/proc/self/mounts").read_text(encoding="utf-8")
        except OSError:
            mounts_text = ""
    v1: dict[str, Path] = {}
    v2: list[Path] = []
    for line in mounts_text.splitlines():
        parts = line.split()
        if len(parts) < 4:
            continue
        where, kind, options = Path(parts[1]), parts[2], parts[3].split(",")
        if kind == "cgroup":
            for c in V1_CONTROLLERS:
                if c in options:
                    v1.setdefault(c, where)
        elif kind == "cgroup2":
            v2.append(where)
    if "cpu" in v1:
        return Hierarchy(1, v1)
    for root in v2:
        with contextlib.suppress(OSError):
            if "cpu" in (root / "cgroup.controllers").read_text().split():
                return Hierarchy(2, {"": root})
    raise OmdpError(
        "no cgroup cpu controller is mounted on this machine",
        "mount cgroups (v1 cpu controller or cgroup2 with cpu) and try again",
    )


def _write(path: Path, value: str) -> None:
    try:
        path.write_text(value + "\n")
    except OSError as exc:
        raise OmdpError(
            f"cannot write {value!r} to {path}: {exc.strerror or exc}",
            "check the cgroup rights (the lab needs root)",
        ) from None


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


class LabCgroups:
    """The cgroups of one lab: `omdp-lab-<id>/<slot>` under each controller used."""

    def __init__(self, hierarchy: Hierarchy, lid: str):
        self.h = hierarchy
        self.name = cgroup_name(lid)

    def _lab_dirs(self) -> list[Path]:
        return [m / self.name for m in self.h.mounts.values()]

    def _dir(self, controller: str, slot: str) -> Path:
        return self.h.mounts[controller if self.h.version == 1 else ""] / self.name / slot

    def exists(self) -> bool:
        return any(d.is_dir() for d in self._lab_dirs())

    def create(self, slot: str, limits: Limits) -> None:
        """The device's cgroup, with its limits (none: a cgroup that only tracks it)."""
        if self.h.version == 2:
            self._create_v2(slot, limits)
        else:
            self._create_v1(slot, limits)

    def _create_v1(self, slot: str, limits: Limits) -> None:
        cpu = self._mkdir("cpu", slot)
        if limits.cpu is not None:
            _write(cpu / "cpu.cfs_period_us", str(period_us(limits.cpu)))
            _write(cpu / "cpu.cfs_quota_us", str(quota_us(limits.cpu)))
        if limits.cpus is not None:
            self._need("cpuset")
            lab = self._dir("cpuset", slot).parent
            root = lab.parent
            self._mkdir("cpuset", slot)
            for key in ("cpuset.cpus", "cpuset.mems"):  # v1 children start empty
                if not _read(lab / key):
                    _write(lab / key, _read(root / key) or "0")
            leaf = self._dir("cpuset", slot)
            _write(leaf / "cpuset.mems", _read(lab / "cpuset.mems") or "0")
            _write(leaf / "cpuset.cpus", ",".join(map(str, limits.cpus)))
        if limits.memory_mib is not None:
            self._need("memory")
            leaf = self._mkdir("memory", slot)
            size = str(limits.memory_mib << 20)
            _write(leaf / "memory.limit_in_bytes", size)
            if (leaf / "memory.memsw.limit_in_bytes").exists():  # no swapping around it
                _write(leaf / "memory.memsw.limit_in_bytes", size)

    def _create_v2(self, slot: str, limits: Limits) -> None:
        root = self.h.mounts[""]
        wanted = [
            c
            for c, on in (
                ("cpu", limits.cpu is not None),
                ("cpuset", limits.cpus is not None),
                ("memory", limits.memory_mib is not None),
            )
            if on
        ]
        available = (_read(root / "cgroup.controllers") or "").split()
        missing = [c for c in wanted if c not in available]
        if missing:
            raise OmdpError(
                f"the cgroup v2 tree at {root} has no {', '.join(missing)} controller",
                "enable it in the kernel or drop that limit",
            )
        enabled = (_read(root / "cgroup.subtree_control") or "").split()
        for c in wanted:  # a controller must be enabled at every level above the leaf
            if c not in enabled:
                _write(root / "cgroup.subtree_control", f"+{c}")
        leaf = self._mkdir("", slot)
        lab = leaf.parent
        on = (_read(lab / "cgroup.subtree_control") or "").split()
        for c in wanted:
            if c not in on:
                _write(lab / "cgroup.subtree_control", f"+{c}")
        if limits.cpu is not None:
            _write(leaf / "cpu.max", f"{quota_us(limits.cpu)} {period_us(limits.cpu)}")
        if limits.cpus is not None:
            _write(leaf / "cpuset.cpus", ",".join(map(str, limits.cpus)))
        if limits.memory_mib is not None:
            _write(leaf / "memory.max", str(limits.memory_mib << 20))
            if (leaf / "memory.swap.max").exists():
                _write(leaf / "memory.swap.max", "0")

    def _need(self, controller: str) -> None:
        if controller not in self.h.mounts:
            raise OmdpError(
                f"the cgroup {controller} controller is not mounted here",
                "mount it, or drop the limit that needs it",
            )

    def _mkdir(self, controller: str, slot: str) -> Path:
        leaf = self._dir(controller, slot)
        try:
            leaf.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OmdpError(
                f"cannot create the cgroup {leaf}: {exc.strerror or exc}",
                "check the cgroup rights (the lab needs root)",
            ) from None
        return leaf

    def slot_dirs(self, slot: str) -> list[Path]:
        return [d / slot for d in self._lab_dirs() if (d / slot).is_dir()]

    def add(self, slot: str, pid: int) -> None:
        """Move a process (and what it starts later) into the device's cgroups."""
        for d in self.slot_dirs(slot):
            _write(d / "cgroup.procs", str(pid))

    def pids(self) -> set[int]:
        """Every process in any of the lab's cgroups."""
        found: set[int] = set()
        for lab in self._lab_dirs():
            if not lab.is_dir():
                continue
            for procs in [lab / "cgroup.procs", *lab.glob("*/cgroup.procs")]:
                found.update(int(p) for p in (_read(procs) or "").split() if p.isdigit())
        return found

    def limits(self, slot: str) -> dict[str, object]:
        """The limits in force on a device's cgroup, as status shows them."""
        out: dict[str, object] = {}
        if self.h.version == 1:
            cpu = self._dir("cpu", slot)
            quota, period = _read(cpu / "cpu.cfs_quota_us"), _read(cpu / "cpu.cfs_period_us")
            if quota and period and quota.lstrip("-").isdigit() and int(quota) > 0:
                out["cpu"] = round(int(quota) / int(period), 4)
                out["cpu_period_us"] = int(period)
            if "cpuset" in self.h.mounts and self._dir("cpuset", slot).is_dir():
                out["cpus"] = _read(self._dir("cpuset", slot) / "cpuset.cpus")
            if "memory" in self.h.mounts and self._dir("memory", slot).is_dir():
                size = _read(self._dir("memory", slot) / "memory.limit_in_bytes")
                if size and size.isdigit() and int(size) < 1 << 60:
                    out["memory_mib"] = int(size) >> 20
            return out
        leaf = self._dir("", slot)
        cpu_max = (_read(leaf / "cpu.max") or "max").split()
        if cpu_max and cpu_max[0].isdigit() and len(cpu_max) == 2:
            out["cpu"] = round(int(cpu_max[0]) / int(cpu_max[1]), 4)
            out["cpu_period_us"] = int(cpu_max[1])
        cpus = _read(leaf / "cpuset.cpus")
        if cpus:
            out["cpus"] = cpus
        mem = _read(leaf / "memory.max")
        if mem and mem.isdigit():
            out["memory_mib"] = int(mem) >> 20
        return out

    def remove(self) -> list[str]:
        """Remove the lab's cgroups (their processes must be gone); what could not be."""
        left = []
        for lab in self._lab_dirs():
            if not lab.is_dir():
                continue
            for leaf in [p for p in lab.iterdir() if p.is_dir()]:
                with contextlib.suppress(OSError):
                    os.rmdir(leaf)
            try:
                os.rmdir(lab)
            except FileNotFoundError:
                pass
            except OSError as exc:
                left.append(f"cgroup {lab}: {exc.strerror or exc}")
        return left
