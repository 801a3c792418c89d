"""An independent measure of a link, run inside the lab's namespaces (stdlib only):

- latency: half the median of TCP ping-pong round trips (1 byte each way, no Nagle);
- rate: a warm-up transfer (TCP's window opens), then transfers of two sizes; the rate is
  the size difference over the time difference, so the round trip and any fixed cost
  cancel out. Reported as goodput (TCP payload bytes), which is 1448/1514 of the line rate
  on Ethernet with TCP timestamps.

`python probe.py serve ADDR PORT` accepts one connection; `python probe.py measure ADDR
PORT RATE_MBPS` prints {"rtt_ms": [...], "goodput_mbps": x} as JSON.
"""

from __future__ import annotations

import json
import os
import socket
import statistics
import sys
import time


def serve(addr: str, port: int) -> None:
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((addr, port))
    srv.listen(1)
    srv.settimeout(30)
    print("ready", flush=True)
    conn, _ = srv.accept()
    srv.close()
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    with conn:
        while op := conn.recv(1):
            if op == b"e":
                conn.sendall(b"e")
            elif op == b"u":
                left = int.from_bytes(conn.recv(8, socket.MSG_WAITALL), "big")
                while left:
                    got = len(conn.recv(min(left, 1 << 20)))
                    if not got:
                        return
                    left -= got
                conn.sendall(b"k")


def measure(addr: str, port: int, rate_mbps: float) -> dict[str, object]:
    conn = socket.create_connection((addr, port), timeout=60)
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    rtt = []
    for _ in range(20):
        t0 = time.perf_counter()
        conn.sendall(b"e")
        conn.recv(1)
        rtt.append(time.perf_counter() - t0)
    block = os.urandom(1 << 20)

    def upload(n: int) -> float:
        t0 = time.perf_counter()
        conn.sendall(b"u" + n.to_bytes(8, "big"))
        left = n
        while left:
            k = min(left, len(block))
            conn.sendall(block[:k])
            left -= k
        conn.recv(1)
        return time.perf_counter() - t0

    big = max(256 << 10, int(rate_mbps * 1e6 / 8 * 0.4))  # about 0.4 s on the link
    small = big // 4
    upload(big)  # warm-up: the congestion window opens
    rates = []
    for _ in range(3):
        t_small, t_big = upload(small), upload(big)
        rates.append((big - small) * 8 / (t_big - t_small) / 1e6)
    conn.sendall(b"q")
    conn.close()
    return {"rtt_ms": [t * 1e3 for t in rtt], "goodput_mbps": statistics.median(rates)}


if __name__ == "__main__":
    if sys.argv[1] == "serve":
        serve(sys.argv[2], int(sys.argv[3]))
    else:
        print(json.dumps(measure(sys.argv[2], int(sys.argv[3]), float(sys.argv[4]))))
