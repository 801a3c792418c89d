"""Tensors between devices over TCP: one-time-token connections, framed arrays, clock offsets.

Shipped with the device package and written for Python 3.8 (stdlib + numpy). Used by the
chain stage (`stage.py`): each device sends the tensors crossing its cut straight to the
next device of the chain.

Wire, after the connecting side has sent the 64-character token the lab gave both ends:

- a frame: `F` + 4-byte header length + JSON header {"i": frame, "t": [[name, dtype,
  shape, nbytes], ...]} + the arrays' raw bytes, back to back (C order, the dtype's own
  byte order);
- a clock round: `C` + the sender's clock (8-byte double); the receiver answers at once
  with its clock at receipt and at reply (two doubles). From the four stamps the sender
  gets the round trip and the offset of the receiver's clock (NTP's formula); the round
  with the shortest trip gives the estimate.

Every read is bounded: a header at most MAX_HEADER bytes, a connection at most the byte
budget the lab set, a dtype only a plain number type.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import socket
import struct
import time
from typing import Any

import numpy as np

TOKEN_CHARS = 64
MAX_HEADER = 1 << 20
HEADER_LEN = struct.Struct(">I")
STAMP = struct.Struct(">d")
STAMPS = struct.Struct(">dd")
NUMBER_KINDS = "biuf"  # bool, signed, unsigned, float: what a cut tensor may be
FRAME, CLOCK = b"F", b"C"


def clock() -> float:
    """The one clock a stage stamps with: monotonic, high resolution, per host."""
    return time.perf_counter()


class Link:
    """One TCP connection between two neighbouring stages, with a byte budget."""

    def __init__(self, sock: socket.socket, budget: int):
        self.sock = sock
        self.left = budget
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()

    # -- bytes ---------------------------------------------------------------------------

    def read_into(self, view: memoryview) -> None:
        self.left -= len(view)
        if self.left < 0:
            raise OverflowError("the peer sent more than the run's byte budget")
        got = 0
        while got < len(view):
            n = self.sock.recv_into(view[got:])
            if n == 0:
                raise EOFError("the peer closed the connection")
            got += n

    def read_exact(self, n: int) -> bytes:
        buf = bytearray(n)
        self.read_into(memoryview(buf))
        return bytes(buf)

    def send(self, data: Any) -> None:
        self.sock.sendall(data)

    # -- frames --------------------------------------------------------------------------

    def send_frame(self, frame: int, arrays: dict[str, np.ndarray]) -> None:
        """One frame: the header, then each array's bytes (no copy when contiguous)."""
        parts = [(name, np.ascontiguousarray(a)) for name, a in arrays.items()]
        head = json.dumps(
            {"i": frame, "t": [[n, a.dtype.str, list(a.shape), a.nbytes] for n, a in parts]}
        ).encode()
        self.send(FRAME + HEADER_LEN.pack(len(head)) + head)
        for _, a in parts:
            if a.nbytes:
                self.send(a.reshape(-1).view(np.uint8).data)

    def read_kind(self) -> bytes:
        return self.read_exact(1)

    def read_frame_body(self) -> tuple[int, dict[str, np.ndarray], bytes]:
        """After an `F`: (frame number, arrays, the raw message for a relay to pass on)."""
        (size,) = HEADER_LEN.unpack(self.read_exact(HEADER_LEN.size))
        if size > MAX_HEADER:
            raise ValueError(f"a frame header of {size} bytes (at most {MAX_HEADER})")
        head = self.read_exact(size)
        frame, specs = parse_header(head)
        total = sum(nbytes for _, _, _, nbytes in specs)
        body = bytearray(total)
        self.read_into(memoryview(body))
        arrays: dict[str, np.ndarray] = {}
        at = 0
        for name, dtype, shape, nbytes in specs:
            arrays[name] = np.frombuffer(body, dtype, count=nbytes // dtype.itemsize, offset=at)
            arrays[name] = arrays[name].reshape(shape)
            at += nbytes
        raw = FRAME + HEADER_LEN.pack(size) + head + bytes(body)
        return frame, arrays, raw

    # -- clocks --------------------------------------------------------------------------

    def clock_rounds(self, rounds: int) -> tuple[float, float]:
        """As the upstream end: (offset of the peer's clock minus ours, round trip), both
        in seconds, from the round with the shortest trip."""
        best: tuple[float, float] | None = None
        for _ in range(rounds):
            t1 = clock()
            self.send(CLOCK + STAMP.pack(t1))
            t2, t3 = STAMPS.unpack(self.read_exact(STAMPS.size))
            t4 = clock()
            trip = (t4 - t1) - (t3 - t2)
            offset = ((t2 - t1) + (t3 - t4)) / 2
            if best is None or trip < best[1]:
                best = (offset, trip)
        assert best is not None
        return best

    def answer_clock(self) -> None:
        """As the downstream end, after a `C`: stamp the receipt and reply."""
        t2 = clock()
        self.read_exact(STAMP.size)
        self.send(STAMPS.pack(t2, clock()))


def parse_header(head: bytes) -> tuple[int, list[tuple[str, np.dtype, tuple[int, ...], int]]]:
    """A frame header, checked: plain number dtypes, sizes that match the shapes."""
    obj = json.loads(head.decode("utf-8"))
    if type(obj) is not dict or type(obj.get("i")) is not int or type(obj.get("t")) is not list:
        raise ValueError("a malformed frame header")
    specs = []
    for item in obj["t"]:
        if type(item) is not list or len(item) != 4:
            raise ValueError("a malformed tensor entry in a frame header")
        name, dt, shape, nbytes = item
        dtype = np.dtype(str(dt))
        if dtype.kind not in NUMBER_KINDS or dtype.hasobject:
            raise ValueError(f"tensor {name!r} has dtype {dt!r}: not a plain number type")
        if type(shape) is not list or not all(type(d) is int and d >= 0 for d in shape):
            raise ValueError(f"tensor {name!r} has a malformed shape")
        if int(np.prod(shape, dtype=np.int64)) * dtype.itemsize != nbytes:
            raise ValueError(f"tensor {name!r}: {nbytes} bytes do not match its shape")
        specs.append((str(name), dtype, tuple(shape), int(nbytes)))
    return obj["i"], specs


# -- connections -----------------------------------------------------------------------------


def listen(bind: str) -> socket.socket:
    family = socket.AF_INET6 if ":" in bind else socket.AF_INET
    srv = socket.socket(family, socket.SOCK_STREAM)
    srv.bind((bind, 0))
    srv.listen(1)
    return srv


def accept(srv: socket.socket, token: bytes, timeout: float, budget: int) -> Link:
    """The one connection this listener takes (closed at once after): the peer must
    present the token first."""
    srv.settimeout(timeout)
    try:
        conn, _ = srv.accept()
    except socket.timeout:
        raise TimeoutError(f"no connection from the neighbour within {timeout:g} s") from None
    finally:
        srv.close()
    conn.settimeout(timeout)
    link = Link(conn, budget + TOKEN_CHARS)
    got = link.read_exact(len(token))
    if not token or not hmac.compare_digest(got, token):
        link.close()
        raise PermissionError("the neighbour presented a wrong token: connection refused")
    conn.settimeout(None)
    return link


def connect(host: str, port: int, token: bytes, timeout: float, budget: int) -> Link:
    sock = socket.create_connection((host, port), timeout=timeout)
    sock.settimeout(None)
    link = Link(sock, budget)
    link.send(token)
    return link
