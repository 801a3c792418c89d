"""Bringing a lab up, reading its status, taking it down: the lab's use cases.

`up` validates everything first (the chain, the limits, privileges, tools), then builds;
if any step fails, what was built is removed before the error is reported. `down` finds
the lab's objects by their names (derived from the folder, see layout.py), not only from
the state file, so a lab whose `up` was killed halfway, or whose state file was damaged,
still comes down whole; it never touches an object whose name is not the lab's.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import pwd
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from backend.errors import OmdpError
from backend.files import atomic_write
from backend.lab import cgroups, chainfile, host, layout, netns, shaping, sshd
from backend.lab import state as lab_state
from backend.lab.processes import kill_all, spawn
from backend.lab.spec import LabSpec, load_lab_spec
from backend.lab.state import DeviceState, LabState, LinkState

RELAY_SCRIPT = Path(__file__).with_name("relay.py")
GLOBAL_LOCK = Path("/run/lock/omdp-lab.lock")


@dataclass
class Report:
    """What a lab command did or found: `state` is up, degraded, down or none."""

    folder: str
    state: str
    action: str = ""  # up: built, already up, repaired, rebuilt; down: removed, nothing
    status: dict[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # from the chain (e.g. a missing link)

    def to_dict(self) -> dict[str, Any]:
        return {
            "folder": self.folder,
            "state": self.state,
            "action": self.action,
            **self.status,
            "problems": list(self.problems),
            "warnings": list(self.warnings),
        }


# -- locking ---------------------------------------------------------------------------------


@contextlib.contextmanager
def _locked(path: Path, what: str) -> Iterator[None]:
    """An exclusive lock on `path`, or one line saying another command holds it."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise OmdpError(
            f"cannot lock {path}: {exc.strerror or exc}", "check the folder's rights"
        ) from None
    try:
        deadline = time.monotonic() + 30.0
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise OmdpError(
                        f"another `omdp lab` command is working on {what}",
                        "wait for it to finish and run this again",
                    ) from None
                time.sleep(0.1)
        yield
    finally:
        os.close(fd)


def _folder_lock(folder: Path) -> contextlib.AbstractContextManager[None]:
    return _locked(folder / ".lab.lock", str(folder))


def _global_lock() -> contextlib.AbstractContextManager[None]:
    where = GLOBAL_LOCK if GLOBAL_LOCK.parent.is_dir() else Path("/tmp/omdp-lab.lock")
    return _locked(where, "the lab addresses of this machine")


# -- the pieces of a lab on this machine -------------------------------------------------------


def _leftovers(lid: str) -> tuple[list[str], list[str]]:
    """The namespaces and lab-machine interfaces with this lab's names."""
    spaces = [n for n in netns.names() if layout.owned_namespace(lid, n)]
    ifaces = [
        str(i.get("ifname"))
        for i in netns.links()
        if layout.owned_interface(lid, str(i.get("ifname")))
    ]
    return spaces, ifaces


def _cgroups(lid: str) -> cgroups.LabCgroups | None:
    try:
        return cgroups.LabCgroups(cgroups.detect(), lid)
    except OmdpError:
        return None


def teardown(folder: Path, lid: str) -> tuple[bool, list[str]]:
    """Remove every object of the lab in `folder` (found by name); (anything found, what
    could not be removed)."""
    spaces, ifaces = _leftovers(lid)
    groups = _cgroups(lid)
    found = bool(spaces or ifaces or (groups and groups.exists()))
    pids: set[int] = set()
    for ns in spaces:
        pids.update(netns.pids(ns))
    if groups:
        pids.update(groups.pids())
    stuck = kill_all(pids)
    if groups:  # whatever the device processes started while we were killing
        stuck = kill_all(set(stuck) | groups.pids())
    for dev in ifaces:  # both ends go at once, without waiting for the namespace to die
        netns.delete_link(dev)
    for ns in spaces:
        netns.delete(ns)
    problems = [f"process {p} would not stop" for p in stuck]
    if groups:
        for _ in range(50):
            left = groups.remove()
            if not left:
                break
            time.sleep(0.05)
        problems += left
    spaces, ifaces = _leftovers(lid)
    problems += [f"namespace {n} is still there" for n in spaces]
    problems += [f"interface {i} is still there" for i in ifaces]
    for stale in (lab_state.path(folder), folder / "devices.toml"):  # they name a dead lab
        with contextlib.suppress(FileNotFoundError):
            stale.unlink()
    return found, problems


def _relay_argv(st: LabState, link: LinkState, slot: layout.LinkSlot) -> list[str]:
    bdp_frames = int(link.bandwidth_mbps * 1e6 / 8 * (link.latency_ms + 100) / 1e3 / 1500)
    return netns.exec_argv(
        slot.namespace,
        [
            sys.executable,
            "-I",
            str(RELAY_SCRIPT),
            "src",
            "dst",
            "--tag",
            slot.namespace,
            "--delay-ms",
            f"{link.latency_ms:g}",
            "--rate-mbps",
            f"{link.bandwidth_mbps:g}",
            "--limit",
            str(max(10000, 2 * bdp_frames)),
        ],
    )


def _start_relay(folder: Path, st: LabState, i: int) -> None:
    slot = st.layout().links[i]
    logs = folder / "links"
    logs.mkdir(exist_ok=True)
    st.links[i].relay = spawn(_relay_argv(st, st.links[i], slot), logs / f"{i}.log")


def _start_sshd(folder: Path, st: LabState, i: int, tools: dict[str, str]) -> None:
    slot = st.layout().devices[i]
    dev = folder / "devices" / slot.folder
    config = sshd.write_config(dev, slot.host, layout.SSH_PORT, folder / "authorized_keys")
    log = dev / "sshd.log"
    proc = spawn(
        netns.exec_argv(slot.namespace, sshd.argv(tools["sshd"], config, log)), dev / "sshd.out"
    )
    st.devices[i].sshd = proc
    cgroups.LabCgroups(cgroups.detect(), st.lab_id).add(f"d{i}", proc.pid)
    if not sshd.wait_listening(slot.host, layout.SSH_PORT, proc.alive):
        tail = sshd.log_tail(log) or sshd.log_tail(dev / "sshd.out")
        raise OmdpError(
            f"the sshd of device '{slot.name}' did not start" + (f": {tail}" if tail else ""),
            f"see {log}",
        )


def _management(lid: str, spec: LabSpec) -> layout.Layout:
    """The device namespaces and the management links from the lab machine, under the
    machine-wide lock (two labs must not pick the same free /24)."""
    links = [(lk.bandwidth_mbps, lk.latency_ms) for lk in spec.chain.links]
    with _global_lock():
        net = layout.choose_mgmt_net(lid, netns.taken_networks())
        lay = layout.plan(lid, [d.name for d in spec.devices], links, net)
        for slot in lay.devices:
            netns.add(slot.namespace)
            netns.veth(slot.mgmt_if, None, "mgmt", slot.namespace)
            netns.disable_ipv6(slot.mgmt_if)
            netns.address(None, slot.mgmt_if, f"{slot.lab_ip}/30")
            netns.address(slot.namespace, "mgmt", f"{slot.host}/30")
            netns.up(None, slot.mgmt_if)
            netns.up(slot.namespace, "mgmt")
    return lay


def _chain_link(folder: Path, st: LabState, lay: layout.Layout, link: layout.LinkSlot) -> None:
    """One shaped link between consecutive devices (through its relay's namespace when the
    latency is the relay's)."""
    up, down = lay.devices[link.index], lay.devices[link.index + 1]
    assert up.next_ip is not None and down.address is not None
    if st.latency == shaping.RELAY:
        netns.add(link.namespace)
        netns.veth("next", up.namespace, "src", link.namespace)
        netns.veth("prev", down.namespace, "dst", link.namespace)
        netns.up(link.namespace, "src")
        netns.up(link.namespace, "dst")
    else:
        netns.veth("next", up.namespace, "prev", down.namespace)
    netns.address(up.namespace, "next", f"{up.next_ip}/30")
    netns.address(down.namespace, "prev", f"{down.address}/30")
    netns.up(up.namespace, "next")
    netns.up(down.namespace, "prev")
    shape = shaping.Shape(link.bandwidth_mbps, link.latency_ms)
    shaping.apply(up.namespace, "next", shape, st.latency)
    shaping.apply(down.namespace, "prev", shape, st.latency)
    if st.latency == shaping.RELAY:
        _start_relay(folder, st, link.index)


def _device(
    folder: Path,
    st: LabState,
    slot: layout.DeviceSlot,
    groups: cgroups.LabCgroups,
    tools: dict[str, str],
) -> str:
    """A device's cgroup, folders, host key and sshd; its known_hosts line."""
    groups.create(f"d{slot.index}", st.devices[slot.index].limits)
    dev = folder / "devices" / slot.folder
    (dev / "work").mkdir(parents=True, exist_ok=True)
    sshd.keygen(dev / sshd.HOST_KEY, f"{slot.name}@omdp-lab-{st.lab_id}")
    _start_sshd(folder, st, slot.index, tools)
    return sshd.known_hosts_line(slot.host, layout.SSH_PORT, sshd.public_key(dev / sshd.HOST_KEY))


def _build(folder: Path, spec: LabSpec, tools: dict[str, str]) -> LabState:
    lid = layout.lab_id(folder)
    hierarchy = cgroups.detect()
    user = pwd.getpwuid(os.geteuid()).pw_name
    (folder / "devices").mkdir(exist_ok=True)
    sshd.keygen(folder / "lab_key", f"omdp-lab-{lid}")
    atomic_write(folder / "authorized_keys", sshd.public_key(folder / "lab_key") + "\n", mode=0o600)
    lay = _management(lid, spec)
    method = shaping.NETEM if shaping.netem_available(lay.devices[0].namespace) else shaping.RELAY
    st = LabState(
        str(folder),
        lid,
        spec.digest(),
        spec.source,
        method,
        hierarchy.version,
        lay.mgmt_net,
        user,
        [DeviceState(d.name, lim) for d, lim in zip(spec.devices, spec.limits, strict=True)],
        [LinkState(lk.src, lk.dst, lk.bandwidth_mbps, lk.latency_ms) for lk in spec.chain.links],
    )
    for link in lay.links:
        _chain_link(folder, st, lay, link)
    groups = cgroups.LabCgroups(hierarchy, lid)
    known = [_device(folder, st, slot, groups, tools) for slot in lay.devices]
    atomic_write(folder / "known_hosts", "\n".join(known) + "\n", mode=0o600)
    atomic_write(
        folder / "ssh_config",
        "# The lab's devices are reached with the settings in devices.toml only.\n",
        mode=0o600,
    )
    pythons = [lim.python or sys.executable for lim in spec.limits]
    atomic_write(folder / "devices.toml", chainfile.render(spec, lay, folder, user, pythons))
    st.save()
    return st


# -- health ------------------------------------------------------------------------------------


def examine(st: LabState) -> tuple[dict[str, Any], list[str], list[str]]:
    """The lab as it is now: (status, structural problems, dead processes)."""
    lay = st.layout()
    spaces = set(netns.names())
    root_links = {str(i.get("ifname")): i for i in netns.links()}
    groups = _cgroups(st.lab_id)
    broken: list[str] = []
    dead: list[str] = []
    devices = []
    for slot, dstate in zip(lay.devices, st.devices, strict=True):
        who = f"device '{slot.name}'"
        if slot.namespace not in spaces:
            broken.append(f"{who}: namespace {slot.namespace} is gone")
        mgmt = root_links.get(slot.mgmt_if)
        if mgmt is None or "UP" not in mgmt.get("flags", []):
            broken.append(f"{who}: management interface {slot.mgmt_if} is gone or down")
        running = dstate.sshd is not None and dstate.sshd.alive()
        listening = running and sshd.banner(slot.host, layout.SSH_PORT, 1.0) is not None
        if not listening:
            dead.append(f"{who}: sshd is {'not answering' if running else 'not running'}")
        limits = groups.limits(f"d{slot.index}") if groups and slot.namespace in spaces else {}
        if groups is None or not groups.slot_dirs(f"d{slot.index}"):
            broken.append(f"{who}: its cgroup is gone")
        devices.append(
            {
                "name": slot.name,
                "namespace": slot.namespace,
                "host": slot.host,
                "port": layout.SSH_PORT,
                "address": slot.address,
                "workdir": str(Path(st.folder) / "devices" / slot.folder / "work"),
                "python": dstate.limits.python or sys.executable,
                "limits": dstate.limits.to_dict(),
                "in_force": limits,
                "sshd": {
                    "pid": dstate.sshd.pid if dstate.sshd else None,
                    "running": running,
                    "listening": listening,
                },
            }
        )
    links = []
    for lslot, lstate in zip(lay.links, st.links, strict=True):
        who = f"link '{lslot.src}' → '{lslot.dst}'"
        shape = shaping.Shape(lslot.bandwidth_mbps, lslot.latency_ms)
        shaped = {}
        for ns, dev, way in (
            (lay.devices[lslot.index].namespace, "next", "forward"),
            (lay.devices[lslot.index + 1].namespace, "prev", "back"),
        ):
            issue = (
                shaping.problem(shaping.read(ns, dev), shape, st.latency)
                if ns in spaces
                else "its device namespace is gone"
            )
            shaped[way] = issue is None
            if issue:
                broken.append(f"{who} ({way}): {issue}")
        entry: dict[str, Any] = {
            "from": lslot.src,
            "to": lslot.dst,
            "bandwidth_mbps": lslot.bandwidth_mbps,
            "latency_ms": lslot.latency_ms,
            "shaping": "tbf",
            "shaped": shaped,
            "latency_method": st.latency,
        }
        if st.latency == shaping.RELAY:
            if lslot.namespace not in spaces:
                broken.append(f"{who}: namespace {lslot.namespace} is gone")
            alive = lstate.relay is not None and lstate.relay.alive()
            if not alive:
                dead.append(f"{who}: the latency relay is not running")
            entry["relay"] = {
                "namespace": lslot.namespace,
                "running": alive,
                "pid": lstate.relay.pid if lstate.relay else None,
            }
        links.append(entry)
    status = {
        "lab_id": st.lab_id,
        "latency_method": st.latency,
        "cgroup": f"v{st.cgroup}",
        "management_network": st.mgmt_net,
        "devices_file": str(Path(st.folder) / "devices.toml"),
        "devices": devices,
        "links": links,
    }
    return status, broken, dead


def _repair(folder: Path, st: LabState, tools: dict[str, str]) -> None:
    """Start again the sshd and relays that are not running (the rest is intact)."""
    lay = st.layout()
    for i, link in enumerate(st.links):
        if st.latency == shaping.RELAY and not (link.relay and link.relay.alive()):
            _start_relay(folder, st, i)
    for i, (slot, dev) in enumerate(zip(lay.devices, st.devices, strict=True)):
        running = dev.sshd is not None and dev.sshd.alive()
        if running and sshd.banner(slot.host, layout.SSH_PORT, 1.0):
            continue
        if dev.sshd is not None and running:
            kill_all([dev.sshd.pid])
        _start_sshd(folder, st, i, tools)
    st.save()


# -- the use cases -----------------------------------------------------------------------------


def _prepare(folder: str | os.PathLike[str]) -> Path:
    path = layout.check_folder(Path(folder))
    if path.exists() and not path.is_dir():
        raise OmdpError(f"{path} is a file, not a folder", "give a folder for the lab (--dir)")
    return path


def up(devices_file: str | os.PathLike[str], folder: str | os.PathLike[str]) -> Report:
    """Bring the lab of `devices_file` up in `folder` (or say it is up, or repair it)."""
    path = _prepare(folder)
    spec = load_lab_spec(devices_file)
    host.require_privileges()
    tools = host.require_tools()
    if path.is_dir():
        old = lab_state.load(path)  # a damaged state file stops here, before any change
        if old is not None and old.digest != spec.digest():
            raise OmdpError(
                f"{path} holds a lab of another chain (from {old.source})",
                f"take it down first: omdp lab down {path}",
            )
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise OmdpError(
            f"cannot create the lab folder {path}: {exc.strerror or exc}",
            "choose a folder you can write to",
        ) from None
    host.ensure_privsep_dir()
    with _folder_lock(path):
        report = _up_locked(path, spec, tools)
    report.warnings = list(spec.warnings)
    return report


def _up_locked(path: Path, spec: LabSpec, tools: dict[str, str]) -> Report:
    old = lab_state.load(path)
    action = "built"
    if old is not None:
        _, broken, dead = examine(old)
        if not broken and not dead:
            return _report(path, old, "already up")
        if not broken:
            _repair(path, old, tools)
            return _report(path, old, "repaired")
        action = "rebuilt"
    lid = layout.lab_id(path)
    teardown(path, lid)  # remains of a lab whose `up` or processes died
    try:
        st = _build(path, spec, tools)
    except BaseException:
        teardown(path, lid)
        raise
    return _report(path, st, action)


def _report(path: Path, st: LabState, action: str) -> Report:
    status, broken, dead = examine(st)
    problems = broken + dead
    return Report(str(path), "up" if not problems else "degraded", action, status, problems)


def status(folder: str | os.PathLike[str]) -> Report:
    """The lab in `folder` as it is now."""
    path = _prepare(folder)
    if not path.is_dir():
        raise OmdpError(
            f"no lab in {path}: the folder does not exist",
            "bring one up: omdp lab up devices.toml --dir " + str(path),
        )
    host.require_privileges()
    host.require_tools()
    st = lab_state.load(path)
    if st is None:
        spaces, ifaces = _leftovers(layout.lab_id(path))
        if spaces or ifaces:
            return Report(
                str(path),
                "degraded",
                "",
                {},
                [
                    f"no state file, but {len(spaces)} namespace(s) and {len(ifaces)} "
                    f"interface(s) of this lab remain: run omdp lab down {path}"
                ],
            )
        raise OmdpError(f"no lab in {path}", f"bring one up: omdp lab up devices.toml --dir {path}")
    return _report(path, st, "")


def down(folder: str | os.PathLike[str]) -> Report:
    """Take the lab in `folder` down; harmless when there is none."""
    path = _prepare(folder)
    if not path.is_dir():
        return Report(str(path), "none", "nothing")
    host.require_privileges()
    host.require_tools()
    with _folder_lock(path):
        found, problems = teardown(path, layout.lab_id(path))
    state = "down" if not problems else "degraded"
    return Report(str(path), state, "removed" if found else "nothing", {}, problems)
