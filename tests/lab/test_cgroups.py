"""cgroup limits on fake v1 and v2 trees (the files a kernel would read), and the
choice of the CFS period."""

from __future__ import annotations

from pathlib import Path

import pytest

from backend.errors import OmdpError
from backend.lab import cgroups
from backend.lab.cgroups import Hierarchy, LabCgroups
from backend.lab.spec import Limits

HYBRID = """\
tmpfs /sys/fs/cgroup tmpfs rw,relatime,mode=755 0 0
cgroup /sys/fs/cgroup/cpu cgroup rw,relatime,cpu 0 0
cgroup /sys/fs/cgroup/cpuset cgroup rw,relatime,cpuset 0 0
cgroup /sys/fs/cgroup/memory cgroup rw,relatime,memory 0 0
cgroup2 /sys/fs/cgroup/unified cgroup2 rw,relatime 0 0
"""


def test_period_keeps_the_quota_above_a_millisecond() -> None:
    assert (cgroups.period_us(0.25), cgroups.quota_us(0.25)) == (100_000, 25_000)
    assert (cgroups.period_us(2.0), cgroups.quota_us(2.0)) == (100_000, 200_000)
    assert (cgroups.period_us(0.01), cgroups.quota_us(0.01)) == (100_000, 1_000)
    assert cgroups.quota_us(0.01) >= cgroups.MIN_QUOTA_US


def test_detect_v1_on_a_hybrid_machine() -> None:
    h = cgroups.detect(HYBRID)
    assert h.version == 1
    assert h.mounts == {
        "cpu": Path("/sys/fs/cgroup/cpu"),
        "cpuset": Path("/sys/fs/cgroup/cpuset"),
        "memory": Path("/sys/fs/cgroup/memory"),
    }


def test_detect_v2(tmp_path: Path) -> None:
    (tmp_path / "cgroup.controllers").write_text("cpuset cpu io memory pids\n")
    h = cgroups.detect(f"cgroup2 {tmp_path} cgroup2 rw,nsdelegate 0 0\n")
    assert h == Hierarchy(2, {"": tmp_path})


def test_detect_nothing() -> None:
    with pytest.raises(OmdpError, match="no cgroup cpu controller"):
        cgroups.detect("proc /proc proc rw 0 0\n")


def fake_v1(root: Path) -> Hierarchy:
    mounts = {c: root / c for c in ("cpu", "cpuset", "memory")}
    for m in mounts.values():
        m.mkdir()
    (root / "cpuset" / "cpuset.cpus").write_text("0-1\n")
    (root / "cpuset" / "cpuset.mems").write_text("0\n")
    return Hierarchy(1, mounts)


def test_v1_limits(tmp_path: Path) -> None:
    groups = LabCgroups(fake_v1(tmp_path), "abc123")
    groups.create("d0", Limits(cpu=0.25, cpus=(1,), memory_mib=512))
    groups.create("d1", Limits())
    lab = "omdp-lab-abc123"
    assert (tmp_path / "cpu" / lab / "d0" / "cpu.cfs_quota_us").read_text() == "25000\n"
    assert (tmp_path / "cpu" / lab / "d0" / "cpu.cfs_period_us").read_text() == "100000\n"
    assert (tmp_path / "cpuset" / lab / "cpuset.cpus").read_text() == "0-1\n"
    assert (tmp_path / "cpuset" / lab / "d0" / "cpuset.cpus").read_text() == "1\n"
    assert (tmp_path / "cpuset" / lab / "d0" / "cpuset.mems").read_text() == "0\n"
    assert (
        tmp_path / "memory" / lab / "d0" / "memory.limit_in_bytes"
    ).read_text() == f"{512 << 20}\n"
    assert (tmp_path / "cpu" / lab / "d1").is_dir()  # tracked, not limited
    assert not (tmp_path / "cpu" / lab / "d1" / "cpu.cfs_quota_us").exists()
    assert groups.limits("d0") == {
        "cpu": 0.25,
        "cpu_period_us": 100000,
        "cpus": "1",
        "memory_mib": 512,
    }
    assert groups.limits("d1") == {}
    groups.add("d0", 4242)
    assert (tmp_path / "cpu" / lab / "d0" / "cgroup.procs").read_text() == "4242\n"
    assert (tmp_path / "cpuset" / lab / "d0" / "cgroup.procs").read_text() == "4242\n"
    assert groups.pids() == {4242}


def test_v2_limits(tmp_path: Path) -> None:
    (tmp_path / "cgroup.controllers").write_text("cpuset cpu memory\n")
    (tmp_path / "cgroup.subtree_control").write_text("cpu memory\n")
    groups = LabCgroups(Hierarchy(2, {"": tmp_path}), "abc123")
    groups.create("d0", Limits(cpu=0.5, cpus=(0,), memory_mib=1024))
    leaf = tmp_path / "omdp-lab-abc123" / "d0"
    assert (leaf / "cpu.max").read_text() == "50000 100000\n"
    assert (leaf / "cpuset.cpus").read_text() == "0\n"
    assert (leaf / "memory.max").read_text() == f"{1024 << 20}\n"
    # cpuset was not enabled at the root: the lab enables what its limits need
    assert (tmp_path / "cgroup.subtree_control").read_text() == "+cpuset\n"
    assert groups.limits("d0") == {
        "cpu": 0.5,
        "cpu_period_us": 100000,
        "cpus": "0",
        "memory_mib": 1024,
    }


def test_v2_without_the_controller(tmp_path: Path) -> None:
    (tmp_path / "cgroup.controllers").write_text("cpu\n")
    groups = LabCgroups(Hierarchy(2, {"": tmp_path}), "abc123")
    with pytest.raises(OmdpError, match="no memory controller"):
        groups.create("d0", Limits(memory_mib=1024))
