"""Every name and address of a lab, derived from its folder and its chain.

Everything a lab creates on the machine carries the lab's id (a hash of its folder), so
labs in different folders never collide and `down` removes exactly what its own `up`
made: namespaces `omdp-<id>-d<i>` (device i) and `omdp-<id>-l<i>` (the relay of link i),
management interfaces `om<id>m<i>` on the lab machine (the only names outside the lab's
namespaces, 15 characters at most), cgroups `omdp-lab-<id>`.

Inside a device's namespace: `mgmt` (to the lab machine, unshaped), `prev` (towards the
upstream device) and `next` (downstream). Inside a link's namespace: `src` (facing the
upstream device) and `dst`. Management addresses come from a free /24 of 10.0.0.0/8
(a /30 per device); chain links use 172.30.<i>.0/30, which exist only inside the lab's
namespaces (devices have no route anywhere else).
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from backend.errors import OmdpError

ID_RE = re.compile(r"[0-9a-f]{6}")
MGMT_POOL = ipaddress.ip_network("10.0.0.0/8")
MGMT_FIRST = 10 << 24 | 200 << 16  # search from 10.200.0.0
CHAIN_NET = "172.30.{i}.{host}"
SSH_PORT = 22


def lab_id(folder: str | os.PathLike[str]) -> str:
    """Six hex digits naming the lab in `folder` (its real path)."""
    return hashlib.sha256(os.path.realpath(folder).encode()).hexdigest()[:6]


def ns_prefix(lid: str) -> str:
    return f"omdp-{lid}-"


def mgmt_if_prefix(lid: str) -> str:
    return f"om{lid}m"


def cgroup_name(lid: str) -> str:
    return f"omdp-lab-{lid}"


def owned_namespace(lid: str, name: str) -> bool:
    """Whether a namespace name is one this lab creates (and so may delete)."""
    return re.fullmatch(rf"{re.escape(ns_prefix(lid))}[dl]\d{{1,2}}", name) is not None


def owned_interface(lid: str, name: str) -> bool:
    return re.fullmatch(rf"{re.escape(mgmt_if_prefix(lid))}\d{{1,2}}", name) is not None


def device_folder(index: int, name: str) -> str:
    """The device's folder under `DIR/devices/` (any device name gives a safe one)."""
    slug = re.sub(r"[^A-Za-z0-9._-]", "_", name).strip(".")[:40] or "device"
    return f"{index:02d}-{slug}"


@dataclass(frozen=True)
class DeviceSlot:
    index: int
    name: str
    namespace: str
    mgmt_if: str  # on the lab machine
    lab_ip: str  # the lab machine's end of the management link
    host: str  # the device's management address: where its sshd listens
    address: str | None  # where the upstream device reaches it (None: the first device)
    next_ip: str | None  # its end of the link to the next device
    folder: str


@dataclass(frozen=True)
class LinkSlot:
    index: int
    src: str
    dst: str
    namespace: str  # where the relay runs (unused with netem)
    bandwidth_mbps: float
    latency_ms: float


@dataclass(frozen=True)
class Layout:
    lab_id: str
    mgmt_net: str
    devices: tuple[DeviceSlot, ...]
    links: tuple[LinkSlot, ...]

    def namespaces(self, relay: bool) -> list[str]:
        names = [d.namespace for d in self.devices]
        return names + ([lk.namespace for lk in self.links] if relay else [])


def plan(lid: str, names: list[str], links: Iterable[tuple[float, float]], mgmt_net: str) -> Layout:
    """The layout of a chain of `names` with `links` (bandwidth, latency) in chain order."""
    net = ipaddress.ip_network(mgmt_net)
    base = int(net.network_address)
    devices = []
    for i, name in enumerate(names):
        devices.append(
            DeviceSlot(
                index=i,
                name=name,
                namespace=f"{ns_prefix(lid)}d{i}",
                mgmt_if=f"{mgmt_if_prefix(lid)}{i}",
                lab_ip=str(ipaddress.ip_address(base + 4 * i + 1)),
                host=str(ipaddress.ip_address(base + 4 * i + 2)),
                address=CHAIN_NET.format(i=i - 1, host=2) if i else None,
                next_ip=CHAIN_NET.format(i=i, host=1) if i + 1 < len(names) else None,
                folder=device_folder(i, name),
            )
        )
    slots = tuple(
        LinkSlot(i, names[i], names[i + 1], f"{ns_prefix(lid)}l{i}", bw, lat)
        for i, (bw, lat) in enumerate(links)
    )
    return Layout(lid, str(net), tuple(devices), slots)


def choose_mgmt_net(
    lid: str, taken: Iterable[ipaddress.IPv4Network | ipaddress.IPv6Network]
) -> str:
    """A /24 of 10.0.0.0/8 that overlaps nothing routed or addressed on this machine,
    searched from a place that depends on the lab's id (concurrent labs rarely race)."""
    taken4 = [n for n in taken if n.version == 4 and n.prefixlen > 0]  # not the default route
    start = int(lid, 16) % 10240
    for k in range(10240):
        slot = (start + k) % 10240
        net = ipaddress.ip_network((MGMT_FIRST + (slot << 8), 24))
        if not any(net.overlaps(t) for t in taken4):
            return str(net)
    raise OmdpError(
        "no free /24 left in 10.200.0.0-10.239.255.0 for the lab's management network",
        "take down other labs (omdp lab down DIR)",
    )


def check_folder(folder: Path) -> Path:
    """The lab's folder, absolute; its path goes into sshd configs, so no line breaks or
    double quotes."""
    if any(c in str(folder) for c in '\n\r"'):
        raise OmdpError(
            f"the lab folder {str(folder)!r} contains a line break or a quote",
            "choose a plainer folder name",
        )
    return Path(os.path.abspath(folder))
