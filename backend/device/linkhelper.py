"""The device side of link measurement: a byte server and a timing client over TCP or stdio.

Runs as a plain file with the device's python (`python -I linkhelper.py stdio|listen|
connect`), stdlib only. `LinkSettings` and `exchanges()` are shared with the lab's client
(backend/remote/links.py): the measurement is described once, as a generator of
exchanges each sent its seconds back, and each side only moves the bytes.

Wire: the client sends `e` (the server answers `e`), `u` + 8-byte length + payload (the
server answers `k` once it has it all), `d` + 8-byte length (the server sends that many
bytes), and `q` to end. The listener accepts exactly one connection (closing its socket at
once), checks a one-time token, serves a bounded number of bytes for a bounded time and
exits; every mode also exits when its stdin closes, so nothing is left listening.
Replies to the lab are one JSON object per line on stdout.
"""

from __future__ import annotations

import argparse
import contextlib
import hmac
import json
import os
import select
import socket
import struct
import sys
import threading
import time
from collections.abc import Generator
from dataclasses import dataclass
from statistics import median
from typing import Any

TOKEN_BYTES = 32  # hex on the wire: 64 characters
HEADER = struct.Struct(">Q")
READY = b"R"  # the stdio server is up (the interpreter started)


@dataclass(frozen=True)
class LinkSettings:
    """How much to measure: bounded in rounds, bytes and time."""

    rounds: int = 10  # echo round trips
    repeats: int = 3  # transfers per payload size
    min_bytes: int = 16 << 10
    max_bytes: int = 16 << 20
    target_s: float = 0.3  # stop growing the payload once a transfer takes this long
    direction: str = "u"  # "u": client → server, "d": server → client
    max_seconds: float = 60.0

    def budget_bytes(self) -> int:
        """The most payload bytes these settings can move (the listener's hard bound)."""
        total, size = 0, self.min_bytes
        while size <= self.max_bytes:
            total += size * self.repeats
            size *= 4
        return total + 64 * self.rounds + (1 << 16)


@dataclass(frozen=True)
class Exchange:
    """One timed step of the client: send `header` then `payload` bytes, read `reply`."""

    header: bytes
    payload: int
    reply: int


def exchanges(settings: LinkSettings) -> Generator[Exchange, float, dict[str, Any]]:
    """The measurement: echo round trips, then transfers of growing payloads (stopping
    once one takes `target_s`, after at least three sizes). Send each exchange's seconds
    back; the return value is {"rtt": [s, ...], "transfers": [[bytes, s], ...]}."""
    rtt: list[float] = []
    for _ in range(settings.rounds):
        rtt.append((yield Exchange(b"e", 0, 1)))
    transfers: list[list[float]] = []
    size, sizes = settings.min_bytes, 0
    started = time.monotonic()
    while size <= settings.max_bytes:
        times: list[float] = []
        for _ in range(settings.repeats):
            if settings.direction == "u":
                step = Exchange(b"u" + HEADER.pack(size), size, 1)
            else:
                step = Exchange(b"d" + HEADER.pack(size), 0, size)
            times.append((yield step))
        transfers += [[size, t] for t in times]
        sizes += 1
        late = time.monotonic() - started > settings.max_seconds / 2
        if sizes >= 3 and (median(times) >= settings.target_s or late):
            break
        size *= 4
    return {"rtt": rtt, "transfers": transfers}


# -- a byte channel over file descriptors (stdio pipes or a socket) --------------------------


class Channel:
    """Blocking reads with a deadline and a byte budget, over raw file descriptors."""

    def __init__(self, rfd: int, wfd: int, deadline: float, max_bytes: int):
        self.rfd, self.wfd = rfd, wfd
        self.deadline = deadline
        self.left = max_bytes

    def _count(self, n: int) -> None:
        self.left -= n
        if self.left < 0:
            raise OverflowError("byte budget exhausted")

    def _chunk(self, n: int) -> bytes:
        wait = self.deadline - time.monotonic()
        if wait <= 0 or not select.select([self.rfd], [], [], wait)[0]:
            raise TimeoutError("time budget exhausted")
        chunk = os.read(self.rfd, min(n, 1 << 20))
        if not chunk:
            raise EOFError("peer closed")
        return chunk

    def read_exact(self, n: int) -> bytes:
        self._count(n)
        parts, got = [], 0
        while got < n:
            parts.append(self._chunk(n - got))
            got += len(parts[-1])
        return b"".join(parts)

    def discard(self, n: int) -> None:
        """Read and drop n bytes without keeping them."""
        self._count(n)
        while n > 0:
            n -= len(self._chunk(n))

    def write_all(self, data: bytes | memoryview) -> None:
        self._count(len(data))
        view = memoryview(data)
        while view:
            view = view[os.write(self.wfd, view) :]

    def send_payload(self, n: int, block: bytes) -> None:
        while n > 0:
            k = min(n, len(block))
            self.write_all(block[:k])
            n -= k


def serve(chan: Channel) -> None:
    """Answer the client until `q`, EOF or a budget ends."""
    block = os.urandom(1 << 20)
    while True:
        op = chan.read_exact(1)
        if op == b"e":
            chan.write_all(b"e")
        elif op == b"u":
            (n,) = HEADER.unpack(chan.read_exact(HEADER.size))
            chan.discard(n)
            chan.write_all(b"k")
        elif op == b"d":
            (n,) = HEADER.unpack(chan.read_exact(HEADER.size))
            chan.send_payload(n, block)
        else:
            return


def run_client(chan: Channel, settings: LinkSettings) -> dict[str, Any]:
    """Time `exchanges` over a blocking channel (the device-to-device client)."""
    block = os.urandom(min(settings.max_bytes, 1 << 20))
    steps = exchanges(settings)
    try:
        step = next(steps)
        while True:
            t0 = time.perf_counter()
            chan.write_all(step.header)
            chan.send_payload(step.payload, block)
            chan.discard(step.reply)
            step = steps.send(time.perf_counter() - t0)
    except StopIteration as stop:
        chan.write_all(b"q")
        return dict(stop.value)


# -- modes -------------------------------------------------------------------------------------


def _exit_with_stdin() -> None:
    """Exit when the lab closes our stdin (job over, cancelled, or connection gone)."""

    def watch() -> None:
        with contextlib.suppress(OSError):
            while os.read(0, 4096):  # raw: a buffered stdin held here would block exit
                pass
        os._exit(3)

    threading.Thread(target=watch, daemon=True).start()


def _say(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def _read_token() -> bytes:
    """The first stdin line, read raw (never in argv: other users could see it in ps)."""
    line = b""
    while not line.endswith(b"\n") and len(line) <= 2 * TOKEN_BYTES + 2:
        c = os.read(0, 1)
        if not c:
            break
        line += c
    return line.strip()


def _listen(args: argparse.Namespace) -> int:
    token = _read_token()
    family = socket.AF_INET6 if ":" in args.bind else socket.AF_INET
    srv = socket.socket(family, socket.SOCK_STREAM)
    try:
        srv.bind((args.bind, 0))
        srv.listen(1)
        srv.settimeout(args.accept_timeout)
        _say({"port": srv.getsockname()[1]})
        _exit_with_stdin()
        try:
            conn, _ = srv.accept()
        except TimeoutError:
            _say({"error": f"no connection within {args.accept_timeout:g} s"})
            return 1
    finally:
        srv.close()  # one connection only: nothing stays listening
    with conn:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        deadline = time.monotonic() + args.max_seconds
        chan = Channel(conn.fileno(), conn.fileno(), deadline, args.max_bytes + 2 * TOKEN_BYTES)
        try:
            got = chan.read_exact(len(token))
            if not token or not hmac.compare_digest(got, token):
                _say({"error": "wrong token from the peer: connection refused"})
                return 1
            serve(chan)
        except (EOFError, TimeoutError, OverflowError, OSError) as exc:
            _say({"error": f"measurement stopped: {exc}"})
            return 1
    _say({"ok": True})
    return 0


def _connect(args: argparse.Namespace) -> int:
    token = _read_token()
    _exit_with_stdin()
    settings = LinkSettings(**json.loads(args.settings))
    try:
        conn = socket.create_connection((args.host, args.port), timeout=args.connect_timeout)
    except OSError as exc:
        _say({"error": f"cannot reach {args.host}:{args.port}: {exc.strerror or exc}"})
        return 1
    with conn:
        conn.settimeout(None)
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        deadline = time.monotonic() + settings.max_seconds
        budget = settings.budget_bytes() + 2 * TOKEN_BYTES
        chan = Channel(conn.fileno(), conn.fileno(), deadline, budget)
        try:
            chan.write_all(token)
            _say(run_client(chan, settings))
        except (EOFError, TimeoutError, OverflowError, OSError) as exc:
            _say({"error": f"measurement stopped: {exc}"})
            return 1
    return 0


def _stdio(args: argparse.Namespace) -> int:
    deadline = time.monotonic() + args.max_seconds
    chan = Channel(sys.stdin.fileno(), sys.stdout.fileno(), deadline, args.max_bytes)
    sys.stdout.buffer.write(READY)
    sys.stdout.buffer.flush()
    try:
        serve(chan)
    except (EOFError, TimeoutError, OverflowError, OSError):
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="OMDP link helper (device side)")
    sub = parser.add_subparsers(dest="mode", required=True)
    p = sub.add_parser("stdio", help="serve the measurement on stdin/stdout")
    p.add_argument("--max-bytes", type=int, default=1 << 30)
    p.add_argument("--max-seconds", type=float, default=120.0)
    p = sub.add_parser("listen", help="accept one token-checked TCP connection and serve it")
    p.add_argument("--bind", default="0.0.0.0")
    p.add_argument("--accept-timeout", type=float, default=15.0)
    p.add_argument("--max-bytes", type=int, required=True)
    p.add_argument("--max-seconds", type=float, default=60.0)
    p = sub.add_parser("connect", help="measure towards a listener")
    p.add_argument("--host", required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--settings", required=True, help="LinkSettings fields as JSON")
    p.add_argument("--connect-timeout", type=float, default=5.0)
    args = parser.parse_args(argv)
    modes = {"stdio": _stdio, "listen": _listen, "connect": _connect}
    return modes[args.mode](args)


if __name__ == "__main__":
    sys.exit(main())
