"""Profiling over SSH with the real agent: streaming, upload by hash, resume, cancel."""

from __future__ import annotations

import asyncio
import itertools
import shlex
import stat
import sys
import time
from pathlib import Path

import onnx
import pytest

from backend.device import protocol as proto
from backend.device.protocol import Job, TimingSettings
from backend.files import file_sha256
from backend.remote.connection import connect
from backend.remote.errors import RemoteError
from backend.remote.ssh_agent import RetryPolicy, SshAgentTransport
from backend.remote.store import RemoteStore, device_bundle, package_files

from .helpers import SshLab, chain_model, left_running, pid_alive

QUICK = TimingSettings(warmup=1, min_runs=5, max_runs=5, max_seconds=2.0)


def make_job(path: Path, positions: list[int], timing: TimingSettings | None = None) -> Job:
    items = [(a, b) for a, b in itertools.combinations(positions, 2)]
    return Job(
        model_sha256=file_sha256(path),
        items=items,
        runtime={"name": "onnxruntime", "threads": 1},
        timing=timing or QUICK,
        model_path=str(path),
    )


async def collect(transport: SshAgentTransport, job: Job, on_event=None) -> list:
    """The job's events, each also checked against the whole job."""
    events: list = []
    conversation = proto.Conversation(job)
    async for event in transport.run(job):
        conversation.accept(event)
        events.append(event)
        if on_event is not None:
            await on_event(event, events)
    return events


def of(events: list, cls: type) -> list:
    return [e for e in events if isinstance(e, cls)]


def results(events: list) -> dict[tuple[int, int], proto.Result]:
    out: dict[tuple[int, int], proto.Result] = {}
    for e in of(events, proto.Result):
        assert e.segment not in out, f"duplicate result for {e.segment}"
        out[e.segment] = e
    return out


async def wait_dead(pid: int, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return True
        await asyncio.sleep(0.05)
    return False


async def test_profile_on_three_devices_then_second_session_uploads_nothing(
    ssh_lab: SshLab, small_model: Path
):
    devs = [ssh_lab.device(n) for n in ("glasses", "phone", "cloud")]
    job = make_job(small_model, [0, 4, 8, 12])
    shipped = sorted(p.name for p in package_files())
    transports = [SshAgentTransport(d.target()) for d in devs]
    runs = await asyncio.gather(*(collect(t, job) for t in transports))
    for dev, events in zip(devs, runs, strict=True):
        assert isinstance(events[0], proto.Hello) and isinstance(events[-1], proto.Done)
        assert len(of(events, proto.Hello)) == 1
        got = results(events)
        assert set(got) == set(job.items)
        assert all(len(r.samples) == 5 and r.runtime["name"] == "onnxruntime" for r in got.values())
        assert events[-1].completed == len(job.items) and events[-1].errors == 0
        work = ssh_lab.tmp / f"{dev.name}-work"
        model = work / "models" / f"{job.model_sha256}.onnx"
        assert model.read_bytes() == small_model.read_bytes()
        (agent_dir,) = (work / "agent").iterdir()
        assert sorted(p.name for p in agent_dir.iterdir() if p.is_file()) == shipped
        for d in (work, work / "agent", work / "models", agent_dir):
            assert stat.S_IMODE(d.stat().st_mode) == 0o700
        for f in (model, agent_dir / "agent.py"):
            assert stat.S_IMODE(f.stat().st_mode) == 0o600
        assert dev.stats.sftp_opens_for_write == len(shipped) + 1  # the package + the model
    for t in transports:
        assert t.uploads.files == len(shipped) + 1
        await t.close()

    before = [(d.stats.sftp_opens_for_write, d.stats.sftp_write_bytes) for d in devs]
    again = [SshAgentTransport(d.target()) for d in devs]  # a new session: new connections
    runs = await asyncio.gather(*(collect(t, job) for t in again))
    assert all(set(results(ev)) == set(job.items) for ev in runs)
    assert [(d.stats.sftp_opens_for_write, d.stats.sftp_write_bytes) for d in devs] == before
    assert all(t.uploads.files == 0 and t.uploads.skipped == 2 for t in again)
    for t in again:
        await t.close()


@pytest.fixture
def slow_model(tmp_path: Path) -> Path:
    """Big enough that a job takes about a second: there is a "mid-run" to cut into."""
    path = tmp_path / "slow.onnx"
    onnx.save(chain_model(n=6, width=384, batch=64), str(path))
    return path


SLOW = TimingSettings(warmup=0, min_runs=30, max_runs=30, max_seconds=10.0)


async def test_dropped_connection_resumes_without_loss_or_duplicates(
    ssh_lab: SshLab, slow_model: Path
):
    dev = ssh_lab.device("phone")
    job = make_job(slow_model, [0, 2, 4, 6, 8, 10, 12], SLOW)
    transport = SshAgentTransport(dev.target(), RetryPolicy(attempts=3, base_s=0.1))
    statuses: list[str] = []
    transport.on_status = statuses.append
    first_pid: list[int] = []

    async def cut_after_two(event, events: list) -> None:
        if isinstance(event, proto.Hello):
            first_pid.append(event.pid)
        if isinstance(event, proto.Result) and len(of(events, proto.Result)) == 2:
            dev.drop_connections()

    events = await collect(transport, job, cut_after_two)
    got = results(events)  # asserts no duplicates
    assert set(got) == set(job.items)  # nothing lost
    assert all(len(r.samples) == 30 for r in got.values())
    assert len(of(events, proto.Hello)) == 1
    done = events[-1]
    assert isinstance(done, proto.Done)
    assert (done.completed, done.errors, done.stopped) == (len(job.items), 0, False)
    assert transport.reconnects >= 1 and "127.0.0.1" in statuses[0]
    assert "lost" in statuses[0] and "reconnecting in 0.1 s" in statuses[0]
    assert len(dev.conns) >= 2
    assert await wait_dead(first_pid[0]), "the agent of the dropped connection still runs"
    assert dev.stats.sftp_opens_for_write == len(package_files()) + 1  # reconnect: nothing
    await transport.close()


async def test_cancel_kills_the_remote_agent(ssh_lab: SshLab, slow_model: Path):
    dev = ssh_lab.device("cloud")
    forever = TimingSettings(warmup=0, min_runs=100000, max_runs=100000, max_seconds=600.0)
    job = make_job(slow_model, [0, 12], forever)
    transport = SshAgentTransport(dev.target())
    pid: list[int] = []

    async def cancel_when_timing(event, events: list) -> None:
        if isinstance(event, proto.Hello):
            pid.append(event.pid)
        if isinstance(event, proto.AgentProgress) and event.phase == "timing":
            await transport.cancel()

    t0 = time.perf_counter()
    events = await collect(transport, job, cancel_when_timing)
    assert not of(events, proto.Done)
    assert await wait_dead(pid[0], 5.0), "cancel left the agent running"
    assert time.perf_counter() - t0 < 10
    work = str(ssh_lab.tmp / "cloud-work")
    assert await left_running(work) == []  # neither the guard nor the agent is left
    assert dev.stats.signals == ["KILL"]  # the session's process group was signalled too
    await transport.close()


async def test_stop_control_line_ends_gracefully(ssh_lab: SshLab, slow_model: Path):
    dev = ssh_lab.device("glasses")
    job = make_job(slow_model, [0, 2, 4, 6, 8, 10, 12], SLOW)
    transport = SshAgentTransport(dev.target())

    async def stop_after_first(event, events: list) -> None:
        if isinstance(event, proto.Result):
            await transport.control("stop")

    events = await collect(transport, job, stop_after_first)
    done = events[-1]
    assert isinstance(done, proto.Done) and done.stopped
    assert 1 <= done.completed < len(job.items) == 21
    assert done.completed == len(results(events))
    await transport.close()


async def test_one_dead_device_does_not_stop_the_others(ssh_lab: SshLab, slow_model: Path):
    alive, doomed = ssh_lab.device("phone"), ssh_lab.device("odroid")
    job = make_job(slow_model, [0, 4, 8, 12], SLOW)
    retry = RetryPolicy(attempts=2, base_s=0.05)
    good, bad = SshAgentTransport(alive.target(), retry), SshAgentTransport(doomed.target(), retry)

    async def kill_device(event, events: list) -> None:
        if isinstance(event, proto.Result):
            doomed.stop()  # the server is gone for good: reconnects are refused

    out = await asyncio.gather(
        collect(good, job), collect(bad, job, kill_device), return_exceptions=True
    )
    assert set(results(out[0])) == set(job.items)
    assert isinstance(out[1], RemoteError)
    assert str(out[1]).startswith("device 'odroid': gave up after 2 tries: connection refused")
    await good.close()
    await bad.close()


async def test_agent_that_cannot_start_is_reported(ssh_lab: SshLab, small_model: Path):
    dev = ssh_lab.device("odroid")
    transport = SshAgentTransport(dev.target(python=f"{sys.executable} -I -S"))
    with pytest.raises(RemoteError) as info:
        await collect(transport, make_job(small_model, [0, 12]))
    assert info.value.kind == "agent"
    assert "the agent exited with status 1 before finishing" in str(info.value)
    assert "No module named 'numpy'" in str(info.value)
    assert "omdp devices check" in str(info.value)
    await transport.close()


async def test_damaged_agent_files_are_uploaded_again_not_run(ssh_lab: SshLab, small_model: Path):
    dev = ssh_lab.device("odroid")
    job = make_job(small_model, [0, 12])
    first = SshAgentTransport(dev.target())
    await collect(first, job)
    await first.close()
    (agent_dir,) = (ssh_lab.tmp / "odroid-work" / "agent").iterdir()
    (agent_dir / "agent.py").write_text("import os; os.system('echo pwned')\n")
    again = SshAgentTransport(dev.target(), RetryPolicy(attempts=2, base_s=0.05))
    events = await collect(again, job)
    assert set(results(events)) == set(job.items)
    assert again.uploads.files == len(package_files())  # the package, fresh
    assert "pwned" not in (agent_dir / "agent.py").read_text()
    await again.close()


async def test_guard_kills_a_stuck_process_group_when_the_channel_closes(ssh_lab: SshLab):
    """An agent stuck in a runtime call ignores stdin: the guard kills its whole group."""
    dev = ssh_lab.device("odroid")
    target = dev.target()
    conn = await connect(target)
    store = await RemoteStore.open(target, conn)
    bundle = device_bundle()
    folder = await store.ensure_bundle(bundle)
    stuck = "trap '' TERM; sleep 300 & echo $!; sleep 300"  # a child, and ignores SIGTERM
    guard = f"{sys.executable} -u guard.py --bundle {bundle.digest} --"
    process = await conn.create_process(f"cd {folder} && exec {guard} sh -c {shlex.quote(stuck)}")
    process.stdin.write("{}\n")
    child = int(await asyncio.wait_for(process.stdout.readline(), 5))
    assert pid_alive(child)
    process.close()  # the channel goes: the guard sees EOF
    assert await wait_dead(child, 5.0)
    assert await left_running(stuck) == []  # guard, shell and both sleeps are gone
    store.close()
    conn.close()
