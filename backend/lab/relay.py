"""A delaying relay: the latency of a link where the kernel has no `netem`.

It runs in a link's own network namespace, between the two veth ends that face the two
devices, and copies every Ethernet frame from one side to the other after the link's
one-way latency plus the frame's serialisation time at the link's rate (the moment its
last bit would arrive over a real link of that rate). Bandwidth itself is shaped by the
kernel (TBF on each device's side); this process only delays. Frames are timed from the
kernel's receive timestamp, so the relay's own wake-up lag does not add to the latency as
long as it stays below it, and frames of one direction always leave in arrival order.

Frames travel with their virtio-net header (PACKET_VNET_HDR): checksum offload and GSO
metadata pass through unchanged, so the receiving device accepts what the sender did not
checksum itself.

Stdlib only, run as a script by file path (`python -I relay.py A B --delay-ms 5 ...`):
it must not depend on where the lab's code is installed. Exits on SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import os
import select
import signal
import socket
import struct
import sys
import time

ETH_P_ALL = 0x0003
SOL_PACKET = 263
PACKET_VNET_HDR = 15
PACKET_IGNORE_OUTGOING = 23
SO_TIMESTAMPNS = 35
SCM_TIMESTAMPNS = SO_TIMESTAMPNS
VNET_HDR = 10
MAX_FRAME = 65536 + VNET_HDR
_TS = struct.Struct("qq")


def open_side(ifname: str, rcvbuf: int) -> socket.socket:
    """A raw packet socket on `ifname` that sees frames arriving on it (not ours)."""
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    s.setsockopt(SOL_PACKET, PACKET_VNET_HDR, 1)
    s.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
    s.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    for opt in (33, socket.SO_RCVBUF):  # SO_RCVBUFFORCE (root), else what is allowed
        try:
            s.setsockopt(socket.SOL_SOCKET, opt, rcvbuf)
            break
        except OSError:
            continue
    s.bind((ifname, ETH_P_ALL))
    s.setblocking(False)
    return s


class Direction:
    """Frames received on `src`, waiting for their time to leave on `dst`."""

    def __init__(
        self, src: socket.socket, dst: socket.socket, delay_ns: int, ns_per_byte: float, limit: int
    ):
        self.src, self.dst = src, dst
        self.delay_ns = delay_ns
        self.ns_per_byte = ns_per_byte
        self.limit = limit
        self.queue: collections.deque[tuple[int, bytes]] = collections.deque()
        self.last_due = 0
        self.dropped = 0

    def drain(self) -> None:
        """Read every frame waiting on the socket and schedule it."""
        while True:
            try:
                data, anc, _flags, _addr = self.src.recvmsg(MAX_FRAME, 64)
            except (BlockingIOError, InterruptedError):
                return
            stamp = time.time_ns()
            for level, kind, value in anc:
                if level == socket.SOL_SOCKET and kind == SCM_TIMESTAMPNS:
                    sec, nsec = _TS.unpack(value[: _TS.size])
                    stamp = sec * 1_000_000_000 + nsec
            if len(self.queue) >= self.limit:
                self.dropped += 1
                continue
            due = stamp + self.delay_ns + int((len(data) - VNET_HDR) * self.ns_per_byte)
            due = max(due, self.last_due)  # never reorder a direction
            self.last_due = due
            self.queue.append((due, data))

    def flush(self, now: int) -> None:
        """Send every frame whose time has come."""
        q = self.queue
        while q and q[0][0] <= now:
            try:
                self.dst.send(q.popleft()[1])
            except (BlockingIOError, OSError):
                self.dropped += 1

    def next_due(self) -> int | None:
        return self.queue[0][0] if self.queue else None


def run(a: str, b: str, delay_ms: float, rate_mbps: float, limit: int, rcvbuf: int) -> None:
    sa, sb = open_side(a, rcvbuf), open_side(b, rcvbuf)
    delay_ns = int(delay_ms * 1e6)
    ns_per_byte = 8e3 / rate_mbps if rate_mbps > 0 else 0.0
    ways = [
        Direction(sa, sb, delay_ns, ns_per_byte, limit),
        Direction(sb, sa, delay_ns, ns_per_byte, limit),
    ]
    by_fd = {sa.fileno(): ways[0], sb.fileno(): ways[1]}
    fds = list(by_fd)
    while True:
        now = time.time_ns()
        dues = [d for w in ways if (d := w.next_due()) is not None]
        timeout = max(0.0, (min(dues) - now) / 1e9) if dues else None
        ready, _, _ = select.select(fds, [], [], timeout)
        for fd in ready:
            by_fd[fd].drain()
        now = time.time_ns()
        for w in ways:
            w.flush(now)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="delay frames between two interfaces")
    p.add_argument("a", help="interface facing the upstream device")
    p.add_argument("b", help="interface facing the downstream device")
    p.add_argument("--delay-ms", type=float, required=True, help="one-way latency")
    p.add_argument(
        "--rate-mbps",
        type=float,
        default=0.0,
        help="link rate, for each frame's serialisation time (0: none)",
    )
    p.add_argument("--limit", type=int, default=10000, help="frames held per direction")
    p.add_argument("--rcvbuf", type=int, default=8 << 20)
    p.add_argument("--tag", default="", help="a name for the process list (the link's)")
    args = p.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    with contextlib.suppress(OSError, AttributeError):  # prompt wake-ups when it can
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(10))
    with contextlib.suppress(KeyboardInterrupt):
        run(args.a, args.b, args.delay_ms, args.rate_mbps, args.limit, args.rcvbuf)
    return 0


if __name__ == "__main__":
    sys.exit(main())
