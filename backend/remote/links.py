"""Link measurement: latency and bandwidth from the lab machine to each device (over the
SSH channel) and between consecutive devices of the chain (helper to helper over TCP).

Method: echo round trips give the RTT; timed transfers of growing payloads (stopping once
one takes `target_s`) give (bytes, seconds) pairs, and a least-squares fit of
t = 2·latency + bytes / bandwidth over the per-size medians gives the link's
(bandwidth_mbps, latency_ms): a transfer's clock stops when the ack (upload) or the last
byte (download) is back, so the intercept is one round trip, i.e. two one-way latencies.

This file is also the device-side helper, uploaded as `omdp_link.py` and run as-is with
the device's python (`python -I omdp_link.py stdio|listen|connect`): top-level imports are
stdlib only, and the lab-side code imports the rest lazily. The listener accepts exactly
one connection (closing its socket at once), checks a one-time token, serves a bounded
number of bytes for a bounded time, and exits; every helper also exits when its stdin
closes, so nothing is left listening or running on a device.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hmac
import ipaddress
import itertools
import json
import os
import secrets
import select
import shlex
import socket
import struct
import sys
import threading
import time
from collections.abc import Generator
from dataclasses import asdict, dataclass, field
from statistics import median
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from backend.remote.ssh import LocalTarget, SshTarget

TOKEN_BYTES = 32  # hex on the wire: 64 characters
_HDR = struct.Struct(">Q")


# -- the plan (shared by both ends) ----------------------------------------------------------


@dataclass(frozen=True)
class MeasurePlan:
    """How much to measure: bounded in rounds, bytes and time."""

    rounds: int = 10  # echo round trips
    repeats: int = 3  # transfers per payload size
    min_bytes: int = 16 << 10
    max_bytes: int = 16 << 20
    target_s: float = 0.3  # stop growing the payload once a transfer takes this long
    direction: str = "u"  # "u": client → server, "d": server → client
    max_seconds: float = 60.0

    def budget_bytes(self) -> int:
        """The most payload bytes this plan can move (the listener's hard bound)."""
        total, size = 0, self.min_bytes
        while size <= self.max_bytes:
            total += size * self.repeats
            size *= 4
        return total + 64 * self.rounds + (1 << 16)


def schedule(plan: MeasurePlan) -> Generator[tuple[str, int], float, dict[str, Any]]:
    """The measurement as a generator of (op, bytes) that is sent each op's seconds back:
    one schedule for the lab's async SSH client and the device's socket client."""
    rtt: list[float] = []
    for _ in range(plan.rounds):
        rtt.append((yield ("e", 1)))
    transfers: list[tuple[int, float]] = []
    size, sizes = plan.min_bytes, 0
    started = time.monotonic()
    while size <= plan.max_bytes:
        times: list[float] = []
        for _ in range(plan.repeats):
            times.append((yield (plan.direction, size)))
        transfers += [(size, t) for t in times]
        sizes += 1
        if sizes >= 3 and (
            median(times) >= plan.target_s or time.monotonic() - started > plan.max_seconds / 2
        ):
            break
        size *= 4
    return {"rtt": rtt, "transfers": transfers}


# -- device side: a byte channel over fds (stdio pipes or a socket) -------------------------


class _Chan:
    """Blocking reads with a deadline and a byte budget, over raw file descriptors."""

    def __init__(self, rfd: int, wfd: int, deadline: float, max_bytes: int):
        self.rfd, self.wfd = rfd, wfd
        self.deadline = deadline
        self.left = max_bytes

    def _count(self, n: int) -> None:
        self.left -= n
        if self.left < 0:
            raise OverflowError("byte budget exhausted")

    def read_exact(self, n: int) -> bytes:
        self._count(n)
        parts, got = [], 0
        while got < n:
            wait = self.deadline - time.monotonic()
            if wait <= 0 or not select.select([self.rfd], [], [], wait)[0]:
                raise TimeoutError("time budget exhausted")
            chunk = os.read(self.rfd, min(n - got, 1 << 20))
            if not chunk:
                raise EOFError("peer closed")
            parts.append(chunk)
            got += len(chunk)
        return b"".join(parts)

    def discard(self, n: int) -> None:
        """Read and drop n bytes without keeping them."""
        self._count(n)
        while n > 0:
            wait = self.deadline - time.monotonic()
            if wait <= 0 or not select.select([self.rfd], [], [], wait)[0]:
                raise TimeoutError("time budget exhausted")
            chunk = os.read(self.rfd, min(n, 1 << 20))
            if not chunk:
                raise EOFError("peer closed")
            n -= len(chunk)

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


def serve(chan: _Chan) -> None:
    """Answer ops until `q`, EOF or a budget ends: e→e, u+len+bytes→k, d+len→bytes."""
    block = os.urandom(1 << 20)
    while True:
        op = chan.read_exact(1)
        if op == b"e":
            chan.write_all(b"e")
        elif op == b"u":
            (n,) = _HDR.unpack(chan.read_exact(_HDR.size))
            chan.discard(n)
            chan.write_all(b"k")
        elif op == b"d":
            (n,) = _HDR.unpack(chan.read_exact(_HDR.size))
            chan.send_payload(n, block)
        else:
            return


def run_client(chan: _Chan, plan: MeasurePlan) -> dict[str, Any]:
    """Drive `schedule` over a blocking channel (the device-to-device client)."""
    block = os.urandom(min(plan.max_bytes, 1 << 20))
    steps = schedule(plan)
    try:
        op, n = next(steps)
        while True:
            t0 = time.perf_counter()
            if op == "e":
                chan.write_all(b"e")
                chan.read_exact(1)
            elif op == "u":
                chan.write_all(b"u" + _HDR.pack(n))
                chan.send_payload(n, block)
                chan.read_exact(1)
            else:
                chan.write_all(b"d" + _HDR.pack(n))
                chan.discard(n)
            op, n = steps.send(time.perf_counter() - t0)
    except StopIteration as stop:
        chan.write_all(b"q")
        return stop.value


def _die_with_stdin() -> None:
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
    while not line.endswith(b"\n"):
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
        _die_with_stdin()
        try:
            conn, _ = srv.accept()
        except TimeoutError:
            _say({"error": f"no connection within {args.accept_timeout:g} s"})
            return 1
    finally:
        srv.close()  # one connection only: nothing stays listening
    with conn:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        chan = _Chan(
            conn.fileno(),
            conn.fileno(),
            time.monotonic() + args.max_seconds,
            args.max_bytes + 2 * TOKEN_BYTES,
        )
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
    _die_with_stdin()
    plan = MeasurePlan(**json.loads(args.plan))
    try:
        conn = socket.create_connection((args.host, args.port), timeout=args.connect_timeout)
    except OSError as exc:
        _say({"error": f"cannot reach {args.host}:{args.port}: {exc.strerror or exc}"})
        return 1
    with conn:
        conn.settimeout(None)
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        chan = _Chan(
            conn.fileno(),
            conn.fileno(),
            time.monotonic() + plan.max_seconds,
            plan.budget_bytes() + 2 * TOKEN_BYTES,
        )
        try:
            chan.write_all(token)
            _say(run_client(chan, plan))
        except (EOFError, TimeoutError, OverflowError, OSError) as exc:
            _say({"error": f"measurement stopped: {exc}"})
            return 1
    return 0


def _stdio(args: argparse.Namespace) -> int:
    chan = _Chan(
        sys.stdin.fileno(), sys.stdout.fileno(), time.monotonic() + args.max_seconds, args.max_bytes
    )
    sys.stdout.buffer.write(b"R")  # ready: the interpreter started
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
    p.add_argument("--plan", required=True, help="MeasurePlan fields as JSON")
    p.add_argument("--connect-timeout", type=float, default=5.0)
    args = parser.parse_args(argv)
    return {"stdio": _stdio, "listen": _listen, "connect": _connect}[args.mode](args)


# -- lab side: the fit -----------------------------------------------------------------------


@dataclass
class LinkMeasurement:
    """One measured link, to store beside the typed (bandwidth_mbps, latency_ms)."""

    src: str  # device name, or "lab" for the lab machine
    dst: str
    via: str  # "ssh" (lab → device channel) or "tcp" (helper to helper)
    bandwidth_mbps: float
    latency_ms: float  # one way
    rtt_ms: float  # median echo round trip
    r2: float  # of the fit over per-size medians (1 = a clean line)
    samples: list[tuple[int, float]] = field(default_factory=list)  # (bytes, seconds)
    measured_at: float = 0.0  # unix time

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def fit_link(transfers: list[tuple[int, float]], rtt: list[float]) -> tuple[float, float, float]:
    """(bandwidth_mbps, latency_ms, r2) from t = 2·latency + bytes/bandwidth, fitted to the
    per-size medians by least squares weighted by 1/t² (timing noise grows with duration,
    so relative errors count: otherwise the big transfers' noise swamps the intercept).
    A non-positive intercept falls back to half the median echo round trip; a
    non-positive slope to the biggest transfer."""
    by_size: dict[int, list[float]] = {}
    for size, t in transfers:
        by_size.setdefault(size, []).append(t)
    xs = sorted(by_size)
    if len(xs) < 2:
        raise ValueError("need transfers of at least two payload sizes")
    ys = [median(by_size[x]) for x in xs]
    ws = [1.0 / max(y, 1e-9) ** 2 for y in ys]
    sw = sum(ws)
    mx = sum(w * x for w, x in zip(ws, xs, strict=True)) / sw
    my = sum(w * y for w, y in zip(ws, ys, strict=True)) / sw
    sxx = sum(w * (x - mx) ** 2 for w, x in zip(ws, xs, strict=True))
    slope = sum(w * (x - mx) * (y - my) for w, x, y in zip(ws, xs, ys, strict=True)) / sxx
    intercept = my - slope * mx
    ss_tot = sum(w * (y - my) ** 2 for w, y in zip(ws, ys, strict=True))
    ss_res = sum(w * (y - intercept - slope * x) ** 2 for w, x, y in zip(ws, xs, ys, strict=True))
    r2 = 1.0 - ss_res / ss_tot if ss_tot > 0 else 1.0
    rtt_s = median(rtt) if rtt else 0.0
    if slope <= 0:
        slope = max(ys[-1] - rtt_s, 1e-9) / xs[-1]
    latency_s = intercept / 2 if intercept > 0 else rtt_s / 2
    return 8.0 / (slope * 1e6), latency_s * 1e3, r2


def _measurement(src: str, dst: str, via: str, data: dict[str, Any]) -> LinkMeasurement:
    transfers = [(int(n), float(t)) for n, t in data["transfers"]]
    rtt = [float(t) for t in data["rtt"]]
    bw, lat, r2 = fit_link(transfers, rtt)
    return LinkMeasurement(
        src, dst, via, bw, lat, median(rtt) * 1e3 if rtt else 0.0, r2, transfers, time.time()
    )


# -- lab side: running helpers on devices ----------------------------------------------------


class _Helper:
    """One helper process on a device (an SSH exec or a local subprocess), bytes in/out."""

    def __init__(self, proc: Any, ssh: bool):
        self.proc = proc
        self.ssh = ssh

    async def write(self, data: bytes) -> None:
        self.proc.stdin.write(data)
        await self.proc.stdin.drain()

    async def readline(self, timeout: float) -> bytes:

        return await asyncio.wait_for(self.proc.stdout.readline(), timeout)

    async def readexactly(self, n: int) -> bytes:
        return await self.proc.stdout.readexactly(n)

    async def finish(self, timeout: float = 5.0) -> None:
        """Close stdin (the helper exits on EOF) and wait; kill if it lingers."""
        with contextlib.suppress(Exception):
            if self.ssh:
                self.proc.stdin.write_eof()
            else:
                self.proc.stdin.close()
        try:
            await asyncio.wait_for(self.proc.wait(), timeout)
        except Exception:  # timed out or the channel broke: make sure it is gone
            with contextlib.suppress(Exception):
                if self.ssh:
                    self.proc.close()
                else:
                    self.proc.kill()


class LinkLab:
    """Connections and uploaded helpers for the devices of one measurement run."""

    def __init__(self, plan: MeasurePlan | None = None):
        self.plan = plan or MeasurePlan()
        self._conns: dict[str, Any] = {}
        self._dirs: dict[str, str] = {}
        self._peer: dict[str, str] = {}

    async def _ssh(self, target: SshTarget) -> tuple[Any, str]:
        from backend.remote.ssh import RemoteStore, connect, link_helper_bundle

        if target.name not in self._conns:
            conn = await connect(target)
            store = await RemoteStore.open(target, conn)
            try:
                self._dirs[target.name] = await store.ensure_bundle(link_helper_bundle())
            finally:
                store.close()
            self._conns[target.name] = conn
            self._peer[target.name] = conn.get_extra_info("peername")[0]
        return self._conns[target.name], self._dirs[target.name]

    async def start(self, device: SshTarget | LocalTarget, args: list[str]) -> _Helper:
        """Run the link helper with `args` on a device (uploaded by hash if missing)."""
        from backend.remote.ssh import LINK_HELPER_NAME, SshTarget

        if isinstance(device, SshTarget):
            conn, folder = await self._ssh(device)
            cmd = (
                f"cd {shlex.quote(folder)} && exec {device.python_cmd} -I "
                f"{LINK_HELPER_NAME} {shlex.join(args)}"
            )
            return _Helper(await conn.create_process(cmd, encoding=None), ssh=True)
        proc = await asyncio.create_subprocess_exec(
            *device.python_argv,
            "-I",
            os.path.abspath(__file__),
            *args,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        return _Helper(proc, ssh=False)

    async def address_of(self, device: SshTarget | LocalTarget) -> str:
        """How the chain's other devices reach `device`: `address`, else the IP the lab's
        SSH connection reached (host may be an ~/.ssh/config alias), local: loopback."""
        from backend.remote.ssh import SshTarget

        if not isinstance(device, SshTarget):
            return "127.0.0.1"
        if device.address:
            return device.address
        await self._ssh(device)
        return self._peer[device.name]

    async def lab_to(self, target: SshTarget) -> LinkMeasurement:
        """Lab machine → device over the SSH channel (what uploads and streams see)."""
        plan = self.plan
        helper = await self.start(
            target,
            [
                "stdio",
                "--max-bytes",
                str(2 * plan.budget_bytes()),
                "--max-seconds",
                str(plan.max_seconds),
            ],
        )
        try:
            data = await asyncio.wait_for(self._drive(helper), plan.max_seconds + 10)
        except (asyncio.IncompleteReadError, ConnectionError) as exc:
            from backend.errors import OmdpError

            raise OmdpError(
                f"link lab-{target.name}: the link helper on '{target.name}' stopped "
                f"({type(exc).__name__})",
                "see `omdp devices check` (is `python` right?)",
            ) from None
        except TimeoutError:
            from backend.errors import OmdpError

            raise OmdpError(
                f"link lab-{target.name}: no answer within {plan.max_seconds + 10:g} s",
                "the link may be very slow: try a smaller --max-mib",
            ) from None
        finally:
            await helper.finish()
        return _measurement("lab", target.name, "ssh", data)

    async def _drive(self, helper: _Helper) -> dict[str, Any]:
        """Run `schedule` against a `stdio` helper; the timing is the lab's clock."""
        plan = self.plan
        await helper.readexactly(1)  # "R": the interpreter is up
        block = os.urandom(min(plan.max_bytes, 1 << 20))
        steps = schedule(plan)
        try:
            op, n = next(steps)
            while True:
                t0 = time.perf_counter()
                if op == "e":
                    await helper.write(b"e")
                    await helper.readexactly(1)
                elif op == "u":
                    helper.proc.stdin.write(b"u" + _HDR.pack(n))
                    left = n
                    while left > 0:
                        k = min(left, len(block))
                        await helper.write(block[:k])
                        left -= k
                    await helper.readexactly(1)
                else:
                    await helper.write(b"d" + _HDR.pack(n))
                    await helper.readexactly(n)
                op, n = steps.send(time.perf_counter() - t0)
        except StopIteration as stop:
            data = stop.value
        await helper.write(b"q")
        return data

    async def between(
        self, up: SshTarget | LocalTarget, down: SshTarget | LocalTarget
    ) -> LinkMeasurement:
        """Upstream → downstream over TCP: one listens (bounded, one connection, token),
        the other connects and times transfers in the chain's direction."""

        from backend.errors import OmdpError
        from backend.remote.ssh import SshTarget

        # The downstream listens, unless only the upstream is an ssh device (a device
        # cannot be assumed to reach the lab machine): then the upstream listens.
        down_listens = isinstance(down, SshTarget) or not isinstance(up, SshTarget)
        server, client = (down, up) if down_listens else (up, down)
        plan = MeasurePlan(**{**asdict(self.plan), "direction": "u" if down_listens else "d"})
        addr = await self.address_of(server)
        try:
            loopback = ipaddress.ip_address(addr).is_loopback
        except ValueError:
            loopback = addr == "localhost"
        bind = "127.0.0.1" if loopback else ("::" if ":" in addr else "0.0.0.0")
        token = secrets.token_hex(TOKEN_BYTES).encode()
        listener = await self.start(
            server,
            [
                "listen",
                "--bind",
                bind,
                "--accept-timeout",
                "15",
                "--max-bytes",
                str(plan.budget_bytes()),
                "--max-seconds",
                str(plan.max_seconds),
            ],
        )
        connector = None
        try:
            await listener.write(token + b"\n")
            hello = json.loads(await listener.readline(30) or b"{}")
            if "port" not in hello:
                raise OmdpError(
                    f"link {up.name}-{down.name}: the listener on "
                    f"'{server.name}' did not start: {hello.get('error', 'no reply')}"
                )
            connector = await self.start(
                client,
                [
                    "connect",
                    "--host",
                    addr,
                    "--port",
                    str(hello["port"]),
                    "--plan",
                    json.dumps(asdict(plan)),
                ],
            )
            await connector.write(token + b"\n")
            reply = json.loads(await connector.readline(plan.max_seconds + 10) or b"{}")
            if "error" in reply or "transfers" not in reply:
                raise OmdpError(
                    f"link {up.name}-{down.name}: '{client.name}' could not measure "
                    f"towards '{server.name}' at {addr}: {reply.get('error', 'no reply')}",
                    "open the port range between the devices, or set `address` to an "
                    "address the other device can reach",
                )
        finally:
            await asyncio.gather(listener.finish(), *([connector.finish()] if connector else []))
        return _measurement(up.name, down.name, "tcp", reply)

    async def close(self) -> None:
        for conn in self._conns.values():
            conn.close()
        self._conns.clear()


@dataclass
class ChainLinks:
    """Everything `omdp links measure` found: lab → each ssh device, each chain link, and
    one line per link that could not be measured (the others still are)."""

    lab: list[LinkMeasurement] = field(default_factory=list)
    chain: list[LinkMeasurement] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "lab": [m.to_dict() for m in self.lab],
            "chain": [m.to_dict() for m in self.chain],
            "failures": list(self.failures),
        }


async def measure_chain(
    devices: list[SshTarget | LocalTarget], plan: MeasurePlan | None = None, lab_links: bool = True
) -> ChainLinks:
    """Measure one link at a time (parallel transfers would share and skew the network)."""
    import asyncssh

    from backend.errors import OmdpError
    from backend.remote.ssh import RemoteError, SshTarget

    lab = LinkLab(plan)
    out = ChainLinks()
    failed: set[str] = set()

    async def attempt(what: str, names: tuple[str, ...], coro: Any) -> LinkMeasurement | None:
        if failed & set(names):
            coro.close()  # a device already failed: its error is reported once
            out.failures.append(f"link {what}: not measured (see the error above)")
            return None
        try:
            return await coro
        except OmdpError as exc:
            if isinstance(exc, RemoteError):
                failed.add(exc.device)
            text = str(exc)
            out.failures.append(text if text.startswith("link ") else f"link {what}: {text}")
        except (asyncssh.Error, OSError, ValueError, TimeoutError) as exc:
            out.failures.append(f"link {what}: {type(exc).__name__}: {exc}")
        return None

    try:
        if lab_links:
            for device in devices:
                if isinstance(device, SshTarget):
                    m = await attempt(f"lab-{device.name}", (device.name,), lab.lab_to(device))
                    if m:
                        out.lab.append(m)
        for up, down in itertools.pairwise(devices):
            m = await attempt(f"{up.name}-{down.name}", (up.name, down.name), lab.between(up, down))
            if m:
                out.chain.append(m)
    finally:
        await lab.close()
    return out


if __name__ == "__main__":
    sys.exit(main())
