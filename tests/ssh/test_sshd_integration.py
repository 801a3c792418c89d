"""Against OpenSSH's own sshd on a loopback port: check, profile, transfer.

sshd runs in the foreground (`-D -e`) with its own config in a tmp dir: a generated host
key, an AuthorizedKeysFile holding a generated client key, `UsePAM no` and
`StrictModes no` (tmp dirs are world-writable), sftp-server for SFTP. As root it also
needs /run/sshd (its privilege-separation directory). `.ci/run` installs openssh-server.
"""

from __future__ import annotations

import asyncio
import getpass
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import onnx
import pytest

from backend.cli import main
from backend.device import protocol as proto
from backend.device.linkhelper import LinkSettings
from backend.device.protocol import Job, TimingSettings
from backend.files import file_sha256
from backend.remote.checks import check_ssh
from backend.remote.links import LinkLab
from backend.remote.ssh_agent import RetryPolicy, SshAgentTransport
from backend.remote.store import package_files
from backend.remote.target import SshTarget

from .helpers import chain_model, pid_alive, processes_matching

SSHD = Path("/usr/sbin/sshd")
SSHD_PIDS: dict[int, int] = {}  # port -> pid of the listening sshd
pytestmark = [
    pytest.mark.slow,
    pytest.mark.integration,
    pytest.mark.skipif(
        not SSHD.exists(),
        reason="OpenSSH sshd is not installed (apt-get install openssh-server; .ci/run does it)",
    ),
]


def _sftp_server() -> str:
    for p in (
        "/usr/lib/openssh/sftp-server",
        "/usr/libexec/openssh/sftp-server",
        "/usr/libexec/sftp-server",
    ):
        if Path(p).exists():
            return p
    return "internal-sftp"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def sshd(tmp_path: Path) -> Iterator[SshTarget]:
    keygen = shutil.which("ssh-keygen")
    if keygen is None:
        pytest.skip("ssh-keygen is not installed")
    if os.geteuid() == 0:
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    for name in ("host_key", "id_client"):
        subprocess.run(
            [keygen, "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / name)], check=True
        )
    (tmp_path / "authorized_keys").write_text((tmp_path / "id_client.pub").read_text())
    port = _free_port()
    user = getpass.getuser()
    config = tmp_path / "sshd_config"
    config.write_text(
        "\n".join(
            [
                f"Port {port}",
                "ListenAddress 127.0.0.1",
                f"HostKey {tmp_path / 'host_key'}",
                f"PidFile {tmp_path / 'sshd.pid'}",
                f"AuthorizedKeysFile {tmp_path / 'authorized_keys'}",
                "UsePAM no",
                "StrictModes no",
                "PasswordAuthentication no",
                "KbdInteractiveAuthentication no",
                "PubkeyAuthentication yes",
                "PermitRootLogin prohibit-password",
                f"AllowUsers {user}",
                f"Subsystem sftp {_sftp_server()}",
                "LogLevel ERROR",
                "",
            ]
        )
    )
    log = (tmp_path / "sshd.log").open("w")
    proc = subprocess.Popen(
        [str(SSHD), "-D", "-e", "-f", str(config)], stdout=log, stderr=subprocess.STDOUT
    )
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"sshd did not start: {(tmp_path / 'sshd.log').read_text()}")
            time.sleep(0.05)
    host_pub = (tmp_path / "host_key.pub").read_text().split()
    (tmp_path / "known_hosts").write_text(f"[127.0.0.1]:{port} {host_pub[0]} {host_pub[1]}\n")
    SSHD_PIDS[port] = proc.pid
    yield SshTarget(
        name="openssh",
        host="127.0.0.1",
        port=port,
        user=user,
        identity=str(tmp_path / "id_client"),
        known_hosts=str(tmp_path / "known_hosts"),
        ssh_config=None,
        python=sys.executable,
        workdir=str(tmp_path / "work"),
    )
    proc.terminate()
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()


def test_devices_check_cli_against_openssh(
    sshd: SshTarget, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    toml = tmp_path / "devices.toml"
    fields = {
        "name": sshd.name,
        "kind": "ssh",
        "host": sshd.host,
        "port": sshd.port,
        "user": sshd.user,
        "identity": sshd.identity,
        "known_hosts": sshd.known_hosts,
        "python": sshd.python,
        "workdir": sshd.workdir,
        "runtime": "onnxruntime",
    }
    toml.write_text("[[device]]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in fields.items()))
    assert main(["devices", "check", str(toml), "--json"]) == 0, capsys.readouterr().err
    (check,) = json.loads(capsys.readouterr().out)
    assert check["ok"] and check["host_key"] == "trusted"
    assert check["facts"]["packages"]["onnxruntime"]
    assert (Path(sshd.workdir).stat().st_mode & 0o777) == 0o700


async def test_profile_and_transfer_over_openssh(sshd: SshTarget, tmp_path: Path):
    model = tmp_path / "m.onnx"
    onnx.save(chain_model(), str(model))
    job = Job(
        model_sha256=file_sha256(model),
        items=[(0, 4), (4, 12), (0, 12)],
        runtime={"name": "onnxruntime", "threads": 1},
        timing=TimingSettings(warmup=1, min_runs=5, max_runs=5),
        model_path=str(model),
    )
    for session in range(2):
        transport = SshAgentTransport(sshd)
        events = [event async for event in transport.run(job)]
        got = sorted(e.segment for e in events if isinstance(e, proto.Result))
        assert got == sorted(job.items)
        assert transport.uploads.files == (len(package_files()) + 1 if session == 0 else 0)
        await transport.close()

    lab = LinkLab(LinkSettings(rounds=5, repeats=2, max_bytes=1 << 20))
    try:
        link = await lab.lab_to(sshd)
    finally:
        await lab.close()
    assert link.bandwidth_mbps > 1 and link.rtt_ms > 0

    wrong = SshTarget(**{**sshd.__dict__, "identity": str(tmp_path / "host_key")})
    check = await asyncio.wait_for(check_ssh(wrong), 20)
    assert "refused the key" in check.problems[0]


def _children(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    out.append(int(entry.name))
            except (OSError, ValueError, IndexError):
                pass
    return out


async def test_dropped_connection_and_cancel_over_openssh(sshd: SshTarget, tmp_path: Path):
    """Kill the sshd process serving our connection mid-job: the agent dies with it, the
    job resumes on a new connection with nothing lost or repeated; then cancel one."""
    model = tmp_path / "slow.onnx"
    onnx.save(chain_model(n=6, width=384, batch=64), str(model))
    items = [(a, b) for a in range(0, 12, 2) for b in range(a + 2, 13, 2)]
    job = Job(
        model_sha256=file_sha256(model),
        items=items,
        runtime={"name": "onnxruntime", "threads": 1},
        timing=TimingSettings(warmup=0, min_runs=30, max_runs=30),
        model_path=str(model),
    )
    transport = SshAgentTransport(sshd, RetryPolicy(attempts=3, base_s=0.1))
    events: list = []
    pids: list[int] = []
    async for event in transport.run(job):
        events.append(event)
        if isinstance(event, proto.Hello):
            pids.append(event.pid)
        results = [e for e in events if isinstance(e, proto.Result)]
        if isinstance(event, proto.Result) and len(results) == 2:
            for pid in _children(SSHD_PIDS[sshd.port]):  # the per-connection sshd
                os.kill(pid, 9)
    results = [e for e in events if isinstance(e, proto.Result)]
    got = [e.segment for e in results]
    assert sorted(got) == sorted(items) and len(got) == len(set(got))
    assert transport.reconnects >= 1
    assert all(len(e.samples) == 30 for e in results)
    deadline = time.monotonic() + 15  # a killed process may take a while on a busy machine
    while pid_alive(pids[0]) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert not pid_alive(pids[0]), "the agent outlived its dropped connection"

    forever = TimingSettings(warmup=0, min_runs=10**6, max_runs=10**6, max_seconds=600)
    long_job = replace(job, items=[(0, 12)], timing=forever)
    pid = None
    async for event in transport.run(long_job):
        if isinstance(event, proto.Hello):
            pid = event.pid
        if isinstance(event, proto.AgentProgress) and event.phase == "timing":
            await transport.cancel()
    assert pid is not None
    deadline = time.monotonic() + 15  # a killed process may take a while on a busy machine
    while pid_alive(pid) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert not pid_alive(pid), "cancel left the agent running"
    await transport.close()


async def test_a_probe_that_hangs_is_killed_on_the_device(sshd: SshTarget, tmp_path: Path):
    """A `python` that never answers (and ignores its closed stdin): on the timeout, the
    lab's signal request makes OpenSSH's sshd kill the session's whole process group."""
    fake = tmp_path / "hung-python"
    fake.write_text("#!/bin/sh\nsleep 300 &\nexec sleep 301\n")
    fake.chmod(0o755)
    t0 = time.monotonic()
    check = await check_ssh(replace(sshd, python=str(fake)), timeout=1.0)
    assert time.monotonic() - t0 < 10
    assert "did not answer within 1 s and was stopped" in check.problems[0]
    deadline = time.monotonic() + 15  # a killed process may take a while on a busy machine
    while time.monotonic() < deadline and (
        processes_matching("sleep 300") or processes_matching("sleep 301")
    ):
        await asyncio.sleep(0.1)
    assert processes_matching("sleep 300") == processes_matching("sleep 301") == []
