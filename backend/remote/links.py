"""Link measurement, the lab's side: latency and bandwidth from the lab machine to each
device (over the SSH channel) and between consecutive devices of the chain (helper to
helper over TCP).

Method: echo round trips give the RTT, and the latency is half of it; timed transfers of
growing payloads (stopping once one takes `target_s`) give (bytes, seconds) pairs, and the
bandwidth is the slope of t = rtt + bytes / bandwidth over the transfers long enough for
TCP's slow start not to matter (`fit_link`): a transfer's clock stops when the ack
(upload) or the last byte (download) is back, so it includes one round trip.

The device side is backend/device/linkhelper.py, shipped with the device package; the
measurement itself (`exchanges`) is written once there and driven here over the SSH
channel. Helpers' replies are checked before use and their text shown inert; a helper
that overruns its time is killed with its process group.
"""

from __future__ import annotations

import asyncio
import ipaddress
import itertools
import json
import math
import os
import secrets
import shlex
import time
from dataclasses import asdict, dataclass, field
from statistics import median
from typing import Any

from backend.chain import link_name
from backend.device.linkhelper import TOKEN_BYTES, LinkSettings, exchanges
from backend.errors import OmdpError
from backend.remote.errors import RemoteError
from backend.remote.process import DeviceProcess, LineReader, LineTooLong, StderrTail
from backend.remote.target import LocalTarget, SshTarget
from backend.text import inert

HELPER_FILE = "linkhelper.py"
MAX_REPLY_BYTES = 1 << 20
MAX_SAMPLES = 100_000
ACCEPT_TIMEOUT_S = 15.0
REPLY_GRACE_S = 10.0  # beyond the settings' max_seconds, before a helper is given up


# -- helpers' replies (device text: checked) ---------------------------------------------------


def _reply(raw: bytes | None, where: str) -> dict[str, Any]:
    """A helper's JSON reply line, or OmdpError."""
    if raw is None:
        raise EOFError(f"{where}: no reply")
    try:
        obj = json.loads(raw, parse_constant=_no_constant)
    except (ValueError, RecursionError, UnicodeDecodeError):
        raise OmdpError(f"{where}: the helper's reply is not JSON: {inert(raw[:80])}") from None
    if type(obj) is not dict:
        raise OmdpError(f"{where}: the helper's reply is not an object")
    if "error" in obj:
        raise OmdpError(f"{where}: {inert(obj['error'], 300)}")
    return obj


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number")


def _port(obj: dict[str, Any], where: str) -> int:
    port = obj.get("port")
    if type(port) is not int or not 1 <= port <= 65535:
        raise OmdpError(f"{where}: the listener named no valid port ({inert(port, 40)})")
    return port


def _seconds(v: Any) -> bool:
    return type(v) in (int, float) and math.isfinite(v) and 0 <= v <= 3600


def _timings(obj: dict[str, Any], where: str) -> dict[str, Any]:
    """The client's {"rtt": [...], "transfers": [[bytes, seconds], ...]}, checked."""
    rtt, transfers = obj.get("rtt"), obj.get("transfers")
    ok = (
        type(rtt) is list
        and len(rtt) <= MAX_SAMPLES
        and all(_seconds(t) for t in rtt)
        and type(transfers) is list
        and len(transfers) <= MAX_SAMPLES
        and all(
            type(x) is list
            and len(x) == 2
            and type(x[0]) is int
            and 0 < x[0] <= 1 << 40
            and _seconds(x[1])
            for x in transfers
        )
    )
    if not ok:
        raise OmdpError(f"{where}: the helper's timings are malformed")
    return {"rtt": rtt, "transfers": transfers}


# -- the fit -----------------------------------------------------------------------------------


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


BULK_RTTS = 4  # a transfer at least this many round trips long is dominated by bandwidth


def fit_link(transfers: list[tuple[int, float]], rtt: list[float]) -> tuple[float, float, float]:
    """(bandwidth_mbps, latency_ms, r2) for t = rtt + bytes/bandwidth.

    Latency is half the median echo round trip: measured directly, it does not depend on
    how the transfers behave. Small transfers on a fresh TCP connection are held back by
    slow start (measured: 6-8 ms extra at 100 Mbit/s, 10 ms), so a line fitted through all
    of them overstates the intercept; the bandwidth is the least-squares slope through
    (0, rtt) of the per-size medians that took at least `BULK_RTTS` round trips (else the
    largest one), where that start-up cost is a few percent at most. `r2` is that line's
    fit to those medians (1 = clean). Without echo round trips, the intercept of a line
    through the medians stands in for the round trip."""
    by_size: dict[int, list[float]] = {}
    for size, t in transfers:
        by_size.setdefault(size, []).append(t)
    xs = sorted(by_size)
    if len(xs) < 2:
        raise ValueError("need transfers of at least two payload sizes")
    ys = [median(by_size[x]) for x in xs]
    if rtt:
        rtt_s = median(rtt)
    else:  # an unweighted line through the medians: its intercept is one round trip
        mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
        b = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sum(
            (x - mx) ** 2 for x in xs
        )
        rtt_s = max(my - b * mx, 0.0)
    bulk = [(x, y) for x, y in zip(xs, ys, strict=True) if y >= BULK_RTTS * rtt_s] or [
        (xs[-1], ys[-1])
    ]
    slope = sum(x * (y - rtt_s) for x, y in bulk) / sum(x * x for x, _ in bulk)
    slope = max(slope, 1e-12)
    mean_y = sum(y for _, y in bulk) / len(bulk)
    ss_tot = sum((y - mean_y) ** 2 for _, y in bulk)
    ss_res = sum((y - rtt_s - slope * x) ** 2 for x, y in bulk)
    r2 = 1.0 - ss_res / ss_tot if ss_tot > 0 else 1.0
    return 8.0 / (slope * 1e6), rtt_s / 2 * 1e3, r2


def _measurement(src: str, dst: str, via: str, data: dict[str, Any]) -> LinkMeasurement:
    transfers = [(int(n), float(t)) for n, t in data["transfers"]]
    rtt = [float(t) for t in data["rtt"]]
    bw, lat, r2 = fit_link(transfers, rtt)
    return LinkMeasurement(
        src, dst, via, bw, lat, median(rtt) * 1e3 if rtt else 0.0, r2, transfers, time.time()
    )


# -- running helpers on devices ----------------------------------------------------------------


class _Helper:
    """One link helper running on a device (an SSH exec or a local subprocess)."""

    def __init__(self, process: DeviceProcess, device: str):
        self.process = process
        self.device = device
        self.reader = LineReader(process.read, MAX_REPLY_BYTES)
        self.stderr = StderrTail(lines=5, width=300)
        self._drain = asyncio.ensure_future(self.stderr.drain(process.read_stderr))

    async def reply(self, timeout: float, where: str) -> dict[str, Any]:
        try:
            raw = await asyncio.wait_for(self.reader.readline(), timeout)
        except LineTooLong:
            raise OmdpError(
                f"{where}: the helper sent a line over {MAX_REPLY_BYTES} bytes"
            ) from None
        return _reply(raw, where)

    def why(self) -> str:
        """The helper's last log line, if it left one (e.g. a missing python)."""
        last = self.stderr.last()
        return f": {last}" if last else ""

    async def finish(self, timeout: float = 5.0) -> None:
        """Close its stdin (it exits on EOF) and wait; kill its process group if it lingers."""
        await self.process.write_eof()
        if await self.process.wait(timeout) is None:
            self.process.kill()
        await asyncio.wait([self._drain], timeout=1.0)
        self._drain.cancel()

    def kill(self) -> None:
        self.process.kill()


class LinkLab:
    """Connections and uploaded helpers for the devices of one measurement run."""

    def __init__(self, settings: LinkSettings | None = None):
        self.settings = settings or LinkSettings()
        self._conns: dict[str, Any] = {}
        self._dirs: dict[str, str] = {}
        self._peer: dict[str, str] = {}

    async def _ssh(self, target: SshTarget) -> tuple[Any, str]:
        from backend.remote.connection import connect
        from backend.remote.store import RemoteStore, device_bundle

        if target.name not in self._conns:
            conn = await connect(target)
            store = await RemoteStore.open(target, conn)
            try:
                self._dirs[target.name] = await store.ensure_bundle(device_bundle())
            finally:
                store.close()
            self._conns[target.name] = conn
            self._peer[target.name] = conn.get_extra_info("peername")[0]
        return self._conns[target.name], self._dirs[target.name]

    async def start(self, device: SshTarget | LocalTarget, args: list[str]) -> _Helper:
        """Run the link helper with `args` on a device (the package uploaded if missing)."""
        from backend.remote.process import LocalProcess, SshProcess
        from backend.remote.store import DEVICE_PACKAGE

        if isinstance(device, SshTarget):
            conn, folder = await self._ssh(device)
            cmd = (
                f"cd {shlex.quote(folder)} && exec {device.python_cmd} -I "
                f"{HELPER_FILE} {shlex.join(args)}"
            )
            return _Helper(await SshProcess.start(conn, cmd), device.name)
        argv = [*device.python_argv, "-I", os.fspath(DEVICE_PACKAGE / HELPER_FILE), *args]
        return _Helper(await LocalProcess.start(argv), device.name)

    async def address_of(self, device: SshTarget | LocalTarget) -> str:
        """How the chain's other devices reach `device`: `address`, else the IP the lab's
        SSH connection reached (host may be an ~/.ssh/config alias), local: loopback."""
        if not isinstance(device, SshTarget):
            return "127.0.0.1"
        if device.address:
            return device.address
        await self._ssh(device)
        return self._peer[device.name]

    async def lab_to(self, target: SshTarget) -> LinkMeasurement:
        """Lab machine → device over the SSH channel (what uploads and streams see)."""
        settings = self.settings
        args = ["stdio", "--max-bytes", str(2 * settings.budget_bytes())]
        helper = await self.start(target, [*args, "--max-seconds", str(settings.max_seconds)])
        limit = settings.max_seconds + REPLY_GRACE_S
        try:
            data = await asyncio.wait_for(self._drive(helper), limit)
        except (EOFError, ConnectionError) as exc:
            helper.kill()
            await helper.finish(1.0)
            raise OmdpError(
                f"link lab-{target.name}: the link helper on '{target.name}' stopped "
                f"({type(exc).__name__}){helper.why()}",
                "see `omdp devices check` (is `python` right?)",
            ) from None
        except TimeoutError:
            helper.kill()
            raise OmdpError(
                f"link lab-{target.name}: no answer within {limit:g} s; the helper was stopped",
                "the link may be very slow: try a smaller --max-mib",
            ) from None
        finally:
            await helper.finish()
        return _measurement("lab", target.name, "ssh", data)

    async def _drive(self, helper: _Helper) -> dict[str, Any]:
        """Time `exchanges` against a `stdio` helper; the clock is the lab's."""
        settings = self.settings
        if await helper.reader.readexactly(1) != b"R":  # the interpreter is up
            raise OmdpError(f"link lab-{helper.device}: the helper did not start properly")
        block = os.urandom(min(settings.max_bytes, 1 << 20))
        steps = exchanges(settings)
        try:
            step = next(steps)
            while True:
                t0 = time.perf_counter()
                await helper.process.write(step.header)
                left = step.payload
                while left > 0:
                    k = min(left, len(block))
                    await helper.process.write(block[:k])
                    left -= k
                await helper.reader.discard(step.reply)
                step = steps.send(time.perf_counter() - t0)
        except StopIteration as stop:
            data = dict(stop.value)
        await helper.process.write(b"q")
        return data

    async def between(
        self, up: SshTarget | LocalTarget, down: SshTarget | LocalTarget
    ) -> LinkMeasurement:
        """Upstream → downstream over TCP: one listens (bounded, one connection, token),
        the other connects and times transfers in the chain's direction."""
        # The downstream listens, unless only the upstream is an ssh device (a device
        # cannot be assumed to reach the lab machine): then the upstream listens.
        down_listens = isinstance(down, SshTarget) or not isinstance(up, SshTarget)
        server, client = (down, up) if down_listens else (up, down)
        settings = LinkSettings(
            **{**asdict(self.settings), "direction": "u" if down_listens else "d"}
        )
        name = f"link {up.name}-{down.name}"
        addr = await self.address_of(server)
        try:
            loopback = ipaddress.ip_address(addr).is_loopback
        except ValueError:
            loopback = addr == "localhost"
        bind = "127.0.0.1" if loopback else ("::" if ":" in addr else "0.0.0.0")
        token = secrets.token_hex(TOKEN_BYTES).encode()
        listen = ["listen", "--bind", bind, "--accept-timeout", str(ACCEPT_TIMEOUT_S)]
        bounds = ["--max-bytes", str(settings.budget_bytes())]
        listener = await self.start(
            server, [*listen, *bounds, "--max-seconds", str(settings.max_seconds)]
        )
        helpers = [listener]
        try:
            await listener.process.write(token + b"\n")
            where = f"{name}: the listener on '{server.name}'"
            try:
                port = _port(await listener.reply(ACCEPT_TIMEOUT_S * 2, where), where)
            except EOFError:
                raise OmdpError(f"{where} did not start{listener.why()}") from None
            connect = ["connect", "--host", addr, "--port", str(port)]
            connector = await self.start(
                client, [*connect, "--settings", json.dumps(asdict(settings))]
            )
            helpers.append(connector)
            await connector.process.write(token + b"\n")
            where = f"{name}: '{client.name}' could not measure towards '{server.name}' at {addr}"
            try:
                reply = await connector.reply(settings.max_seconds + REPLY_GRACE_S, where)
            except EOFError:
                raise OmdpError(f"{where}: no reply{connector.why()}") from None
            except OmdpError as exc:
                raise OmdpError(
                    exc.what,
                    "open the port range between the devices, or set `address` to an "
                    "address the other device can reach",
                ) from None
            data = _timings(reply, where)
        except BaseException:
            for helper in helpers:  # timed out, failed or cancelled: nothing stays running
                helper.kill()
            raise
        finally:
            await asyncio.gather(*(h.finish() for h in helpers))
        return _measurement(up.name, down.name, "tcp", data)

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
    devices: list[SshTarget | LocalTarget],
    settings: LinkSettings | None = None,
    lab_links: bool = True,
) -> ChainLinks:
    """Measure one link at a time (parallel transfers would share and skew the network)."""
    import asyncssh

    lab = LinkLab(settings)
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
            text = inert(exc, 4000)
            out.failures.append(text if text.startswith("link ") else f"link {what}: {text}")
        except (asyncssh.Error, OSError, EOFError, ValueError, TimeoutError) as exc:
            out.failures.append(f"link {what}: {type(exc).__name__}: {inert(exc, 300)}")
        return None

    try:
        if lab_links:
            for device in devices:
                if isinstance(device, SshTarget):
                    m = await attempt(f"lab-{device.name}", (device.name,), lab.lab_to(device))
                    if m:
                        out.lab.append(m)
        for up, down in itertools.pairwise(devices):
            name = link_name(up.name, down.name)
            m = await attempt(name, (up.name, down.name), lab.between(up, down))
            if m:
                out.chain.append(m)
    finally:
        await lab.close()
    return out
