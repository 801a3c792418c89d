"""Link shaping with `tc`: a token bucket (TBF) sets each direction's rate on the sending
device's side of the link; `netem` adds the latency where the kernel has it, otherwise the
user-space relay does (backend/lab/relay.py).

The bucket is kept small (one frame, or 200 µs of traffic at high rates): a bucket of B
bytes lets B bytes leave at once after an idle spell, which a real link never does, and
shortens every transfer by B / rate. Its queue is generous (200 ms of traffic, at least
1 MiB): TCP's small-queue limit keeps it short in practice, and a tail drop in the
sender's own qdisc would make TCP back off for no reason a real link would give.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from backend.lab import netns

RELAY = "relay"
NETEM = "netem"
FRAME_BYTES = 1600  # an Ethernet frame of MTU 1500 with headers, rounded up


@dataclass(frozen=True)
class Shape:
    """One direction of one link."""

    rate_mbps: float
    latency_ms: float

    @property
    def rate_bytes(self) -> int:
        return round(self.rate_mbps * 1e6 / 8)

    @property
    def burst_bytes(self) -> int:
        return max(FRAME_BYTES, round(self.rate_bytes * 200e-6))

    @property
    def limit_bytes(self) -> int:
        return max(1 << 20, round(self.rate_bytes * 0.2))


def tbf_args(shape: Shape) -> list[str]:
    return [
        "tbf",
        "rate",
        f"{shape.rate_bytes * 8}bit",
        "burst",
        str(shape.burst_bytes),
        "limit",
        str(shape.limit_bytes),
    ]


def commands(dev: str, shape: Shape, method: str) -> list[list[str]]:
    """The `tc` arguments that shape `dev`'s egress. With netem: netem at the root (the
    delay) feeding a TBF child (the rate); with the relay: TBF alone."""
    if method == NETEM:
        return [
            [
                "qdisc",
                "replace",
                "dev",
                dev,
                "root",
                "handle",
                "1:",
                "netem",
                "delay",
                f"{shape.latency_ms:g}ms",
                "limit",
                "100000",
            ],
            ["qdisc", "replace", "dev", dev, "parent", "1:1", "handle", "10:", *tbf_args(shape)],
        ]
    return [["qdisc", "replace", "dev", dev, "root", "handle", "1:", *tbf_args(shape)]]


def apply(ns: str, dev: str, shape: Shape, method: str) -> None:
    for args in commands(dev, shape, method):
        netns.run(["tc", "-n", ns, *args], f"shape {dev} in {ns} ({' '.join(args[5:])})")


def netem_available(ns: str) -> bool:
    """Whether this kernel has netem: try it on `ns`'s loopback (the lab's own)."""
    try:
        netns.run(
            ["tc", "-n", ns, "qdisc", "add", "dev", "lo", "root", "netem", "delay", "1ms"],
            "probe netem",
        )
    except Exception:
        return False
    netns.run(
        ["tc", "-n", ns, "qdisc", "del", "dev", "lo", "root"], "remove the netem probe", check=False
    )
    return True


def read(ns: str, dev: str) -> list[dict[str, Any]]:
    """The qdiscs in force on `dev` (tc's JSON)."""
    out = netns.run(
        ["tc", "-j", "-n", ns, "qdisc", "show", "dev", dev],
        f"read the qdiscs of {dev} in {ns}",
        check=False,
    )
    try:
        data = json.loads(out or "[]")
    except ValueError:
        return []
    return [q for q in data if isinstance(q, dict)]


def problem(qdiscs: list[dict[str, Any]], shape: Shape, method: str) -> str | None:
    """What differs between the qdiscs in force and `shape` (None: it is in force)."""
    tbf = next((q for q in qdiscs if q.get("kind") == "tbf"), None)
    if tbf is None:
        return "no rate limit (tbf) in force"
    rate = (tbf.get("options") or {}).get("rate")
    if not isinstance(rate, int | float) or abs(rate - shape.rate_bytes) > 0.01 * shape.rate_bytes:
        return f"rate {rate!r} B/s in force instead of {shape.rate_bytes} B/s"
    if method == NETEM and not any(q.get("kind") == "netem" for q in qdiscs):
        return "no netem delay in force"
    return None
