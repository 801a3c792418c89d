"""Helpers for the lab's tests: writing chains, listing what a lab has on the machine,
running commands inside its namespaces, and the skip reason where a lab cannot be made."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from backend.errors import OmdpError
from backend.lab import cgroups, host, layout, processes

PROBE = Path(__file__).with_name("probe.py")


def why_no_lab() -> str | None:
    """Why a lab cannot be made here (None: it can). Only a lack of privileges or tools
    skips the integration tests; CI here runs as root with both installed (.ci/run)."""
    try:
        host.require_privileges()
        host.require_tools()
        cgroups.detect()
    except OmdpError as exc:
        return str(exc)
    return None


def _value(v: Any) -> str:
    return (
        json.dumps(v)
        if not isinstance(v, dict)
        else ("{ " + ", ".join(f"{k} = {_value(x)}" for k, x in v.items()) + " }")
    )


def write_chain(path: Path, devices: list[dict], links: list[dict]) -> Path:
    """A devices.toml: `devices` as [[device]] tables (a "lab" key becomes [device.lab]),
    `links` as [[link]] tables."""
    out = []
    for d in devices:
        out.append("[[device]]")
        out += [f"{k} = {_value(v)}" for k, v in d.items() if k != "lab"]
        if "lab" in d:
            out.append("[device.lab]")
            out += [f"{k} = {_value(v)}" for k, v in d["lab"].items()]
        out.append("")
    for lk in links:
        out += ["[[link]]", *[f"{k} = {_value(v)}" for k, v in lk.items()], ""]
    path.write_text("\n".join(out))
    return path


def lab_objects(lid: str, folder: Path) -> dict[str, list[str]]:
    """Everything on the machine that belongs to the lab `lid`: namespaces, interfaces and
    their qdiscs on the lab machine, cgroups, processes (sshd and relays, live ones) and
    listening sockets of those processes."""
    spaces = [
        ln.split()[0]
        for ln in _out(["ip", "netns", "list"]).splitlines()
        if ln.startswith(layout.ns_prefix(lid))
    ]
    links = [
        m
        for m in re.findall(r"^\d+: ([^:@]+)", _out(["ip", "-o", "link"]), re.M)
        if m.startswith(layout.mgmt_if_prefix(lid))
    ]
    qdiscs = [
        ln for ln in _out(["tc", "qdisc", "show"]).splitlines() if layout.mgmt_if_prefix(lid) in ln
    ]
    groups = [str(p) for p in Path("/sys/fs/cgroup").glob(f"*/{layout.cgroup_name(lid)}")]
    groups += [str(p) for p in Path("/sys/fs/cgroup").glob(layout.cgroup_name(lid))]
    procs = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z" and (str(folder) in cmd or layout.ns_prefix(lid) in cmd):
            procs.append(f"{pid} {cmd.strip()}")
    pids = {p.split()[0] for p in procs}
    sockets = [
        ln for ln in _out(["ss", "-ltnpH"]).splitlines() if any(f"pid={p}," in ln for p in pids)
    ]
    return {
        "namespaces": spaces,
        "interfaces": links,
        "qdiscs": qdiscs,
        "cgroups": groups,
        "processes": procs,
        "listening": sockets,
    }


def _out(argv: list[str]) -> str:
    return subprocess.run(argv, capture_output=True, text=True, check=False).stdout


def in_ns(ns: str, argv: list[str], **kw: Any) -> subprocess.Popen:
    return subprocess.Popen(["ip", "netns", "exec", ns, *argv], **kw)


def probe_link(up_ns: str, down_ns: str, address: str, rate_mbps: float) -> dict[str, Any]:
    """Latency and goodput of the link towards `address`, measured by tests/lab/probe.py
    (independently of `omdp links measure`)."""
    server = in_ns(
        down_ns,
        [sys.executable, "-I", str(PROBE), "serve", address, "5201"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None and server.stdout.readline().strip() == "ready"
        done = subprocess.run(
            [
                "ip",
                "netns",
                "exec",
                up_ns,
                sys.executable,
                "-I",
                str(PROBE),
                "measure",
                address,
                "5201",
                str(rate_mbps),
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        return json.loads(done.stdout)
    finally:
        server.kill()
        server.wait()


def kill_device(folder: Path, index: int) -> list[int]:
    """Kill every process of device `index` (its sshd, sessions and agent), as a device
    that crashes would lose them; the pids killed."""
    lid = layout.lab_id(folder)
    groups = cgroups.LabCgroups(cgroups.detect(), lid)
    pids: set[int] = set()
    for d in groups.slot_dirs(f"d{index}"):
        pids.update(int(p) for p in (d / "cgroup.procs").read_text().split())
    crash(pids)
    return sorted(pids)


def crash(pids: set[int] | list[int]) -> None:
    """SIGKILL `pids` and wait until each has exited (gone or a zombie): a kill returns
    before the process is dead, and a check made in between would still see it running."""
    for p in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(p, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if all((s := processes.stat(p)) is None or s[0] == "Z" for p in pids):
            return
        time.sleep(0.01)
    raise AssertionError(f"processes {sorted(pids)} still running 10 s after SIGKILL")
