"""Network namespaces and interfaces, through iproute2's `ip`.

Thin on purpose: each function is one `ip` command (or a read of its JSON output), and a
failing command becomes one line naming what was being done and `ip`'s own message.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from backend.errors import OmdpError

TIMEOUT_S = 20.0


def run(argv: Sequence[str], doing: str, check: bool = True) -> str:
    """Run a command; its stdout, or OmdpError with `doing` and its first error line."""
    try:
        done = subprocess.run(
            list(argv), capture_output=True, text=True, timeout=TIMEOUT_S, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise OmdpError(f"cannot {doing}: {exc}", "check that iproute2 works here") from None
    if check and done.returncode != 0:
        first = next((ln for ln in done.stderr.splitlines() if ln.strip()), "failed")
        raise OmdpError(
            f"cannot {doing}: {first.strip()}",
            "see `omdp lab status`; `omdp lab down` removes what was made",
        )
    return done.stdout


def ip(*args: str, ns: str | None = None, doing: str = "", check: bool = True) -> str:
    argv = ["ip", *(["-n", ns] if ns else []), *args]
    return run(argv, doing or " ".join(argv), check)


def exec_argv(ns: str, argv: Sequence[str]) -> list[str]:
    """`argv` run inside namespace `ns`."""
    return ["ip", "netns", "exec", ns, *argv]


def names() -> list[str]:
    """Every named network namespace on the machine."""
    out = run(["ip", "-j", "netns", "list"], "list network namespaces")
    try:
        return [str(e["name"]) for e in json.loads(out or "[]")]
    except (ValueError, KeyError, TypeError):
        return [line.split()[0] for line in out.splitlines() if line.strip()]


def add(name: str) -> None:
    ip("netns", "add", name, doing=f"create network namespace {name}")
    ip("link", "set", "dev", "lo", "up", ns=name, doing=f"bring up lo in {name}")
    # No IPv6: no router solicitations or address detection noise on the emulated links.
    sysctl(name, "net.ipv6.conf.all.disable_ipv6", "1")
    sysctl(name, "net.ipv6.conf.default.disable_ipv6", "1")


def delete(name: str) -> None:
    ip("netns", "delete", name, doing=f"delete network namespace {name}", check=False)


def pids(name: str) -> list[int]:
    """Every process whose network namespace is `name` (all of them are the lab's)."""
    out = run(["ip", "netns", "pids", name], f"list the processes in {name}", check=False)
    return [int(p) for p in out.split() if p.isdigit()]


def sysctl(ns: str, key: str, value: str) -> None:
    """Set a network sysctl of `ns` (its /proc/sys/net is the namespace's own)."""
    path = "/proc/sys/" + key.replace(".", "/")
    run(exec_argv(ns, ["sh", "-c", 'echo "$1" > "$2"', "sh", value, path]), f"set {key} in {ns}")


def disable_ipv6(dev: str) -> None:
    """No IPv6 on an interface of the lab machine (no link-local address, no router
    solicitations from the lab's management links)."""
    with contextlib.suppress(OSError):
        Path(f"/proc/sys/net/ipv6/conf/{dev}/disable_ipv6").write_text("1\n")


def veth(a: str, a_ns: str | None, b: str, b_ns: str | None) -> None:
    """A veth pair: `a` in namespace `a_ns` and `b` in `b_ns` (None: the lab machine's)."""
    argv = [
        "link",
        "add",
        "name",
        a,
        *(["netns", a_ns] if a_ns else []),
        "type",
        "veth",
        "peer",
        "name",
        b,
        *(["netns", b_ns] if b_ns else []),
    ]
    ip(*argv, doing=f"create the veth pair {a}/{b}")


def address(ns: str | None, dev: str, cidr: str) -> None:
    ip("addr", "add", cidr, "dev", dev, ns=ns, doing=f"address {dev} with {cidr}")


def up(ns: str | None, dev: str) -> None:
    ip("link", "set", "dev", dev, "up", ns=ns, doing=f"bring up {dev}")


def links(ns: str | None = None) -> list[dict[str, Any]]:
    """`ip -j addr` of a namespace: each interface with its state and addresses."""
    out = ip("-j", "addr", "show", ns=ns, doing="list interfaces", check=False)
    try:
        data = json.loads(out or "[]")
    except ValueError:
        return []
    return [d for d in data if isinstance(d, dict)]


def delete_link(dev: str) -> None:
    ip("link", "delete", "dev", dev, doing=f"delete interface {dev}", check=False)


def taken_networks() -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """Networks this machine already addresses or routes (any table)."""
    nets: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
    for link in links():
        for a in link.get("addr_info", []):
            try:
                nets.append(ipaddress.ip_network(f"{a['local']}/{a['prefixlen']}", strict=False))
            except (KeyError, ValueError):
                continue
    out = ip("-j", "-4", "route", "show", "table", "all", doing="list routes", check=False)
    try:
        routes = json.loads(out or "[]")
    except ValueError:
        routes = []
    for r in routes:
        dst = r.get("dst") if isinstance(r, dict) else None
        if dst and dst != "default":
            try:
                nets.append(ipaddress.ip_network(dst, strict=False))
            except ValueError:
                continue
    return nets
