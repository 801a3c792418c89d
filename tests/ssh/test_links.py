"""Link measurement: the fit, lab → device over SSH, device ↔ device over TCP, the
listener's bounds, and that nothing is left listening."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time

import pytest

from backend.device.linkhelper import LinkSettings
from backend.remote.links import LinkMeasurement, fit_link, measure_chain
from backend.remote.store import DEVICE_PACKAGE, package_files
from backend.remote.target import LocalTarget

from .helpers import SshLab, left_running

HELPER = DEVICE_PACKAGE / "linkhelper.py"
SMALL = LinkSettings(rounds=5, repeats=2, min_bytes=16 << 10, max_bytes=1 << 20)


def test_fit_recovers_bandwidth_and_latency():
    bw, lat = 20.0, 3.0  # Mbit/s, one-way ms
    sizes = [16 << 10, 64 << 10, 256 << 10, 1 << 20]
    transfers = [(n, 2 * lat / 1e3 + n * 8 / (bw * 1e6)) for n in sizes for _ in range(3)]
    got_bw, got_lat, r2 = fit_link(transfers, rtt=[0.006] * 5)
    assert got_bw == pytest.approx(bw) and got_lat == pytest.approx(lat) and r2 == 1.0


def test_fit_is_not_fooled_by_slow_start():
    """Small transfers held back by TCP's slow start (8 ms extra) must not move the latency
    (it comes from the echo round trips) nor the bandwidth by more than a few percent."""
    bw, lat = 100.0, 10.0
    sizes = [16 << 10, 64 << 10, 256 << 10, 1 << 20, 4 << 20]
    slow_start = {16 << 10: 0.008, 64 << 10: 0.008, 256 << 10: 0.006}
    transfers = [
        (n, 2 * lat / 1e3 + n * 8 / (bw * 1e6) + slow_start.get(n, 0.001))
        for n in sizes
        for _ in range(3)
    ]
    got_bw, got_lat, _ = fit_link(transfers, rtt=[0.0204] * 10)
    assert got_lat == pytest.approx(10.2)
    assert got_bw == pytest.approx(bw, rel=0.03)


def test_fit_without_echoes_takes_the_round_trip_from_the_line():
    bw, lat, _ = fit_link([(1000, 0.0011), (2000, 0.0012), (4000, 0.0014)], rtt=[])
    assert lat == pytest.approx(0.5) and bw == pytest.approx(80.0)
    with pytest.raises(ValueError, match="two payload sizes"):
        fit_link([(1000, 0.1)], rtt=[])


def test_plan_budget_bounds_the_bytes():
    settings = LinkSettings(repeats=3, min_bytes=1000, max_bytes=16000)
    budget = settings.budget_bytes()
    assert budget == 3 * (1000 + 4000 + 16000) + 64 * settings.rounds + (1 << 16)


async def test_measure_chain_lab_and_links_leave_nothing_running(ssh_lab: SshLab):
    a, b = ssh_lab.device("phone"), ssh_lab.device("cloud")
    chain = [LocalTarget("glasses", workdir=str(ssh_lab.tmp / "here")), a.target(), b.target()]
    found = await measure_chain(chain, SMALL)
    assert [(m.src, m.dst, m.via) for m in found.lab] == [
        ("lab", "phone", "ssh"),
        ("lab", "cloud", "ssh"),
    ]
    assert [(m.src, m.dst, m.via) for m in found.chain] == [
        ("glasses", "phone", "tcp"),
        ("phone", "cloud", "tcp"),
    ]
    for m in found.lab + found.chain:
        assert isinstance(m, LinkMeasurement)
        assert m.bandwidth_mbps > 1 and 0 <= m.latency_ms < 50 and m.rtt_ms > 0
        assert len({n for n, _ in m.samples}) >= 3
        assert json.loads(json.dumps(m.to_dict()))["bandwidth_mbps"] == m.bandwidth_mbps
    shipped = len(package_files())
    assert a.stats.sftp_opens_for_write == shipped  # the device package, uploaded by hash
    await measure_chain(chain[1:], SMALL, lab_links=False)
    assert a.stats.sftp_opens_for_write == shipped  # ... and only once
    assert await left_running("linkhelper.py") == []
    assert await left_running(str(HELPER)) == []


def _listener(*args: str, token: bytes = b"s3cret") -> tuple[subprocess.Popen, int]:
    proc = subprocess.Popen(
        [sys.executable, "-I", str(HELPER), "listen", "--bind", "127.0.0.1", *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    assert proc.stdin and proc.stdout
    proc.stdin.write(token + b"\n")
    proc.stdin.flush()
    return proc, json.loads(proc.stdout.readline())["port"]


def _refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except ConnectionRefusedError:
        return True
    return False


def test_listener_takes_one_connection_and_rejects_a_wrong_token():
    proc, port = _listener("--max-bytes", "100000")
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(b"nope!!")
        assert s.recv(10) == b""  # the impostor is dropped...
        assert _refused(port)  # ... and nobody else gets in: one connection only
    assert proc.wait(5) == 1
    assert json.loads(proc.stdout.readline()) == {
        "error": "wrong token from the peer: connection refused"
    }


def test_listener_gives_up_without_a_connection():
    t0 = time.perf_counter()
    proc, port = _listener("--max-bytes", "1000", "--accept-timeout", "0.3")
    assert proc.wait(5) == 1 and time.perf_counter() - t0 < 3
    assert "no connection within 0.3 s" in proc.stdout.readline().decode()
    assert _refused(port)


def test_listener_enforces_its_byte_budget():
    proc, port = _listener("--max-bytes", "50000")
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(b"s3cret" + b"u" + (10**6).to_bytes(8, "big"))
        with pytest.raises(OSError):
            for _ in range(100):
                s.sendall(b"\0" * 65536)
    assert proc.wait(5) == 1
    assert "byte budget exhausted" in proc.stdout.readline().decode()


def test_listener_exits_when_the_lab_goes_away():
    proc, port = _listener("--max-bytes", "1000", "--accept-timeout", "60")
    assert proc.stdin
    proc.stdin.close()  # the SSH channel closed
    assert proc.wait(5) == 3
    assert _refused(port)


async def test_a_device_without_python_is_reported_per_link(ssh_lab: SshLab):
    dev = ssh_lab.device("odroid")
    found = await measure_chain([dev.target(python="/opt/nope/python3")], SMALL)
    assert found.lab == [] and found.chain == []
    (failure,) = found.failures
    assert failure.startswith("link lab-odroid: the link helper on 'odroid' stopped (EOFError)")
    assert "/opt/nope/python3: not found" in failure  # its log line says why
    assert failure.endswith("— see `omdp devices check` (is `python` right?)")
