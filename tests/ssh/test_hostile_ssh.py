"""A device that lies or hangs, over SSH: the same checks as for local devices (decoded
strictly, the device alone fails, nothing of the lie stored), and whatever it left running
on the device is killed with its process group: the agent on a watchdog overrun, the probe
of `devices check` and the link helper of `links measure` on their timeouts."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path

import asyncssh
import onnx
import pytest
from fake_device import fake_python, honest_python

from backend.chain import Chain, DeviceSpec
from backend.device.linkhelper import LinkSettings
from backend.device.protocol import TimingSettings
from backend.model.analysis import analyze
from backend.profiling import jobs
from backend.profiling.plan import build_plan
from backend.profiling.session import Session
from backend.profiling.watchdog import WatchdogSettings
from backend.remote import links
from backend.remote.checks import check_ssh
from backend.remote.local import LocalTransport
from backend.remote.models import put_model
from backend.remote.ssh_agent import RetryPolicy, SshAgentTransport
from backend.remote.transport import AgentTransport

from .helpers import FakeDevice, SshLab, chain_model, left_running


def profiler_for(lab: SshLab, dev: FakeDevice, python: Path, watchdog: WatchdogSettings):
    model = lab.tmp / "m.onnx"
    onnx.save(chain_model(), str(model))
    chain = Chain.of([DeviceSpec("phone", kind="ssh"), DeviceSpec("glasses")])
    analysis = analyze(model)
    session = Session.create(lab.tmp / "run.omdp", analysis, chain, [4, 8])
    session.save_plan(build_plan(analysis.n, [4, 8], chain.names))
    cache = lab.tmp / "cache"
    path, sha = put_model(analysis.model, cache)
    honest = honest_python(lab.tmp)

    def factory(spec: DeviceSpec) -> AgentTransport:
        if spec.kind == "ssh":
            return SshAgentTransport(dev.target(python=str(python)), RetryPolicy(attempts=1))
        return LocalTransport(cache, python=str(honest))

    options = jobs.ProfileOptions(
        timing=TimingSettings(warmup=1, min_runs=3, max_runs=5),
        node_times_runs=0,
        watchdog=watchdog,
    )
    return jobs.Profiler(
        session, chain, path, sha, options=options, cache_dir=cache, transport_factory=factory
    ), session


def stored(session: Session, device: str) -> dict[tuple[int, int], str]:
    return {
        (r[0], r[1]): r[2]
        for r in session.conn.execute(
            "SELECT seg_start, seg_end, status FROM measurements WHERE device = ?", (device,)
        )
    }


@pytest.mark.parametrize(
    ("lie", "says"),
    [
        ("say(result([0, 999999]))", "never asked for"),
        ("say(json.dumps(result(items[1], samples=[float('nan')] * 3)))", "not a JSON message"),
        ("say(result([0, 2**70]))", "must be an integer in"),
        ('say("x" * (17 << 20))', "longer than"),
    ],
)
async def test_a_lying_ssh_device_fails_alone_and_nothing_of_the_lie_is_stored(
    ssh_lab: SshLab, lie: str, says: str
):
    dev = ssh_lab.device("phone")
    evil = fake_python(ssh_lab.tmp, f"say(result(items[0]))\n{lie}\ntime.sleep(60)")
    profiler, session = profiler_for(ssh_lab, dev, evil, WatchdogSettings())
    summary = await asyncio.wait_for(profiler.run(), 60)
    assert list(summary.failed) == ["phone"] and says in summary.failed["phone"]
    items = [(it.start, it.end) for it in session.plan_items() if it.device == "phone"]
    assert stored(session, "phone") == {items[0]: "ok", **{s: "pending" for s in items[1:]}}
    assert set(stored(session, "glasses").values()) == {"ok"}
    assert await left_running(str(evil)) == []  # nothing of it left on the device
    session.close()


async def test_a_silent_ssh_device_is_stopped_with_its_process_group(ssh_lab: SshLab):
    marker = f"omdp-silent-{os.getpid()}"
    dev = ssh_lab.device("phone")
    evil = fake_python(
        ssh_lab.tmp,
        f"""
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)", "{marker}"])
        say(result(items[0]))
        time.sleep(300)
    """,
    )
    quick = WatchdogSettings(floor_s=1.0, cap_s=2.0, factor=2.0, startup_s=10.0)
    profiler, session = profiler_for(ssh_lab, dev, evil, quick)
    t0 = time.monotonic()
    summary = await asyncio.wait_for(profiler.run(), 60)
    assert time.monotonic() - t0 < 20
    assert "took longer than" in summary.failed["phone"]
    assert await left_running(marker) == []  # the child it started is gone too
    assert set(stored(session, "glasses").values()) == {"ok"}
    session.close()


async def test_a_probe_that_hangs_over_ssh_is_killed_on_the_device(ssh_lab: SshLab):
    marker = f"omdp-hung-ssh-probe-{os.getpid()}"
    dev = ssh_lab.device("odroid")
    fake = ssh_lab.tmp / "hung-python"
    sleep = f'{sys.executable} -c "import time; time.sleep(300)" {marker}'
    fake.write_text(f"#!/bin/sh\n{sleep} &\nexec {sleep}\n")
    fake.chmod(0o755)
    t0 = time.monotonic()
    check = await check_ssh(dev.target(python=str(fake)), None, timeout=1.0)
    assert time.monotonic() - t0 < 10
    assert "did not answer within 1 s and was stopped" in check.problems[0]
    assert await left_running(marker) == []


async def test_a_link_helper_that_hangs_is_killed_on_the_device(
    ssh_lab: SshLab, monkeypatch: pytest.MonkeyPatch
):
    marker = f"omdp-hung-helper-{os.getpid()}"
    dev = ssh_lab.device("odroid")
    fake = ssh_lab.tmp / "hung-python"
    sleep = f'{sys.executable} -c "import time; time.sleep(300)" {marker}'
    fake.write_text(f"#!/bin/sh\nprintf R\n{sleep} &\nexec {sleep}\n")  # ready, then silent
    fake.chmod(0o755)
    monkeypatch.setattr(links, "REPLY_GRACE_S", 0.5)
    settings = LinkSettings(rounds=2, repeats=1, max_bytes=1 << 16, max_seconds=0.5)
    t0 = time.monotonic()
    found = await links.measure_chain([dev.target(python=str(fake))], settings)
    assert time.monotonic() - t0 < 15
    (failure,) = found.failures
    assert "no answer within 1 s; the helper was stopped" in failure
    assert await left_running(marker) == []


async def test_a_revoked_host_key_is_reported_as_revoked(ssh_lab: SshLab):
    dev = ssh_lab.device("cloud", trusted=False)
    pub = dev.host_key.export_public_key().decode().split()
    ssh_lab.known_hosts.write_text(
        dev.known_hosts_line() + f"@revoked [127.0.0.1]:{dev.port} {pub[0]} {pub[1]}\n"
    )
    check = await check_ssh(dev.target())
    assert check.host_key == "revoked" and not check.reachable
    (problem,) = check.problems
    assert "is REVOKED in" in problem and "CHANGED" not in problem
    assert not dev.stats.commands  # nothing ran on it
    assert isinstance(dev.host_key, asyncssh.SSHKey)
