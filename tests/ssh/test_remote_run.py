"""Profiling over SSH with the real agent: streaming, upload by hash, resume, cancel."""

from __future__ import annotations

import asyncio
import itertools
import json
import shlex
import stat
import sys
import time
from pathlib import Path

import onnx
import pytest

from backend.device.agent import Job, file_sha256
from backend.remote.ssh import (
    GUARD_NAME,
    RemoteError,
    RemoteStore,
    RetryPolicy,
    SshTransport,
    agent_bundle,
    connect,
)

from .helpers import SshLab, chain_model, pid_alive, processes_matching

QUICK = {"warmup": 1, "min_runs": 5, "max_runs": 5, "max_seconds": 2.0}


def make_job(path: Path, positions: list[int], timing: dict | None = None) -> Job:
    items = [(a, b) for a, b in itertools.combinations(positions, 2)]
    return Job(
        model_sha256=file_sha256(path),
        items=items,
        runtime={"name": "onnxruntime", "threads": 1},
        timing=timing or QUICK,
        model_path=str(path),
    )


async def collect(transport: SshTransport, job: Job, on_event=None) -> list[dict]:
    events = []
    async for line in transport.run(job):
        assert line.endswith("\n")
        event = json.loads(line)
        events.append(event)
        if on_event is not None:
            await on_event(event, events)
    return events


def results(events: list[dict]) -> dict[tuple[int, int], dict]:
    out: dict[tuple[int, int], dict] = {}
    for e in events:
        if e["type"] == "result":
            seg = tuple(e["segment"])
            assert seg not in out, f"duplicate result for {seg}"
            out[seg] = e
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
    transports = [SshTransport(d.target()) for d in devs]
    runs = await asyncio.gather(*(collect(t, job) for t in transports))
    for dev, events in zip(devs, runs, strict=True):
        kinds = [e["type"] for e in events]
        assert kinds[0] == "hello" and kinds[-1] == "done" and kinds.count("hello") == 1
        got = results(events)
        assert set(got) == set(job.items)
        assert all(
            len(r["samples"]) == 5 and r["runtime"]["name"] == "onnxruntime" for r in got.values()
        )
        assert events[-1]["completed"] == len(job.items) and events[-1]["errors"] == 0
        work = ssh_lab.tmp / f"{dev.name}-work"
        assert (
            work / "models" / f"{job.model_sha256}.onnx"
        ).read_bytes() == small_model.read_bytes()
        (agent_dir,) = (work / "agent").iterdir()
        assert sorted(p.name for p in agent_dir.iterdir()) == [
            "agent.py",
            "omdp_guard.py",
            "omdp_link.py",
            "runtimes.py",
            "segments.py",
        ]
        for d in (work, work / "agent", work / "models"):
            assert stat.S_IMODE(d.stat().st_mode) == 0o700
        assert dev.stats.sftp_opens_for_write == 6  # 5 agent files + the model
    for t in transports:
        assert t.uploads.files == 6
        await t.close()

    before = [(d.stats.sftp_opens_for_write, d.stats.sftp_write_bytes) for d in devs]
    again = [SshTransport(d.target()) for d in devs]  # a new session: new connections
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


SLOW = {"warmup": 0, "min_runs": 30, "max_runs": 30, "max_seconds": 10.0}


async def test_dropped_connection_resumes_without_loss_or_duplicates(
    ssh_lab: SshLab, slow_model: Path
):
    dev = ssh_lab.device("phone")
    job = make_job(slow_model, [0, 2, 4, 6, 8, 10, 12], SLOW)
    transport = SshTransport(dev.target(), RetryPolicy(attempts=3, base_s=0.1))
    statuses: list[str] = []
    transport.on_status = statuses.append
    first_pid: list[int] = []

    async def cut_after_two(event: dict, events: list[dict]) -> None:
        if event["type"] == "hello":
            first_pid.append(event["pid"])
        if event["type"] == "result" and sum(e["type"] == "result" for e in events) == 2:
            dev.drop_connections()

    events = await collect(transport, job, cut_after_two)
    got = results(events)  # asserts no duplicates
    assert set(got) == set(job.items)  # nothing lost
    assert all(len(r["samples"]) == 30 for r in got.values())
    assert [e["type"] for e in events].count("hello") == 1
    assert events[-1] == {
        **events[-1],
        "type": "done",
        "completed": len(job.items),
        "errors": 0,
        "stopped": False,
    }
    assert transport.reconnects >= 1 and "127.0.0.1" in statuses[0]
    assert "lost" in statuses[0] and "reconnecting in 0.1 s" in statuses[0]
    assert len(dev.conns) >= 2
    assert await wait_dead(first_pid[0]), "the agent of the dropped connection still runs"
    assert dev.stats.sftp_opens_for_write == 6  # the reconnect uploaded nothing
    await transport.close()


async def test_cancel_kills_the_remote_agent(ssh_lab: SshLab, slow_model: Path):
    dev = ssh_lab.device("cloud")
    forever = {"warmup": 0, "min_runs": 100000, "max_runs": 100000, "max_seconds": 600.0}
    job = make_job(slow_model, [0, 12], forever)
    transport = SshTransport(dev.target())
    pid: list[int] = []

    async def cancel_when_timing(event: dict, events: list[dict]) -> None:
        if event["type"] == "hello":
            pid.append(event["pid"])
        if event["type"] == "progress" and event["phase"] == "timing":
            await transport.cancel()

    t0 = time.perf_counter()
    events = await collect(transport, job, cancel_when_timing)
    assert "done" not in [e["type"] for e in events]
    assert await wait_dead(pid[0], 5.0), "cancel left the agent running"
    assert time.perf_counter() - t0 < 10
    work = str(ssh_lab.tmp / "cloud-work")
    assert processes_matching(work) == []  # neither the guard nor the agent is left
    await transport.close()


async def test_stop_control_line_ends_gracefully(ssh_lab: SshLab, slow_model: Path):
    dev = ssh_lab.device("glasses")
    job = make_job(slow_model, [0, 2, 4, 6, 8, 10, 12], SLOW)
    transport = SshTransport(dev.target())

    async def stop_after_first(event: dict, events: list[dict]) -> None:
        if event["type"] == "result":
            await transport.send("stop")

    events = await collect(transport, job, stop_after_first)
    done = events[-1]
    assert done["type"] == "done" and done["stopped"]
    assert 1 <= done["completed"] < len(job.items) == 21
    assert done["completed"] == len(results(events))
    await transport.close()


async def test_one_dead_device_does_not_stop_the_others(ssh_lab: SshLab, slow_model: Path):
    alive, doomed = ssh_lab.device("phone"), ssh_lab.device("odroid")
    job = make_job(slow_model, [0, 4, 8, 12], SLOW)
    retry = RetryPolicy(attempts=2, base_s=0.05)
    good, bad = SshTransport(alive.target(), retry), SshTransport(doomed.target(), retry)

    async def kill_device(event: dict, events: list[dict]) -> None:
        if event["type"] == "result":
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
    transport = SshTransport(dev.target(python=f"{sys.executable} -I -S"))
    with pytest.raises(RemoteError) as info:
        await collect(transport, make_job(small_model, [0, 12]))
    assert info.value.kind == "agent"
    assert "the agent exited with status 1 before finishing" in str(info.value)
    assert "No module named 'numpy'" in str(info.value)
    assert "omdp devices check" in str(info.value)
    await transport.close()


async def test_guard_kills_a_stuck_process_group_when_the_channel_closes(ssh_lab: SshLab):
    """An agent stuck in a runtime call ignores stdin: the guard kills its whole group."""
    dev = ssh_lab.device("odroid")
    target = dev.target()
    conn = await connect(target)
    store = await RemoteStore.open(target, conn)
    folder = await store.ensure_bundle(agent_bundle())
    stuck = "trap '' TERM; sleep 300 & echo $!; sleep 300"  # a child, and ignores SIGTERM
    process = await conn.create_process(
        f"cd {folder} && exec {sys.executable} -u {GUARD_NAME} sh -c {shlex.quote(stuck)}"
    )
    process.stdin.write("{}\n")
    child = int(await asyncio.wait_for(process.stdout.readline(), 5))
    assert pid_alive(child)
    process.close()  # the channel goes: the guard sees EOF
    assert await wait_dead(child, 5.0)
    assert processes_matching(stuck) == []  # guard, shell and both sleeps are gone
    store.close()
    conn.close()
