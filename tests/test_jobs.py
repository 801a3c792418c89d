"""The profiler: real agents for three local devices, results into a real session."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time

import pytest

from backend.chain import Chain, DeviceSpec, LinkSpec
from backend.device import protocol as proto
from backend.device.protocol import TimingSettings
from backend.model.analysis import analyze
from backend.profiling import jobs
from backend.profiling.plan import PlanItem, build_plan
from backend.profiling.session import Session
from backend.remote.local import LocalTransport
from backend.remote.models import put_model

FAST = TimingSettings(warmup=1, min_runs=3, max_runs=5, max_seconds=0.5)


def make_chain(runtimes=("onnxruntime", "openvino", "onnxruntime")) -> Chain:
    cpus = sorted(os.sched_getaffinity(0))
    devices = [
        DeviceSpec(name, runtime=rt, cpus=[cpus[i % len(cpus)]])
        for i, (name, rt) in enumerate(zip(("glasses", "phone", "cloud"), runtimes, strict=True))
    ]
    return Chain.of(devices, [LinkSpec("glasses", "phone", 20.0, 5.0)])


def setup(
    tmp_path,
    model_path,
    candidates,
    chain=None,
    timing=FAST,
    node_times=2,
    on_event=None,
    factory=None,
):
    chain = chain or make_chain()
    analysis = analyze(model_path)
    session = Session.create(tmp_path / "run.omdp", analysis, chain, candidates)
    session.save_plan(build_plan(analysis.n, candidates, chain.names))
    cache = tmp_path / "cache"
    path, sha = put_model(analysis.model, cache)
    options = jobs.ProfileOptions(timing=timing, node_times_runs=node_times)
    profiler = jobs.Profiler(
        session,
        chain,
        path,
        sha,
        options=options,
        cache_dir=cache,
        on_event=on_event,
        transport_factory=factory,
    )
    return profiler, session


async def test_three_local_devices_both_runtimes_end_to_end(tmp_path, tiny_model_path):
    seen: list = []
    profiler, session = setup(tmp_path, tiny_model_path, [4, 9, 14], on_event=seen.append)

    async def consume():
        return [ev async for ev in profiler.events()]

    consumer = asyncio.create_task(consume())
    await asyncio.sleep(0)
    summary = await profiler.run()
    streamed = await consumer
    plan = session.plan_items()
    assert summary.failed == {} and summary.errors == 0 and not summary.stopped
    assert summary.measured == len(plan) == 4 + 10 + 4
    assert session.missing(plan) == []
    frame = session.results_frame()
    assert len(frame) == len(plan) and set(frame["status"]) == {"ok"}
    assert (frame["median_ms"] > 0).all() and (frame["samples"] >= 3).all()
    assert streamed == seen and isinstance(seen[-1], jobs.RunFinished)
    started = [e for e in seen if isinstance(e, jobs.DeviceStarted)]
    assert sorted(e.device for e in started) == ["cloud", "glasses", "phone"]
    progress = [e for e in seen if isinstance(e, jobs.Progress) and e.last is not None]
    assert {(e.device, e.done, e.total) for e in progress if e.done == e.total} == {
        ("glasses", 4, 4),
        ("phone", 10, 10),
        ("cloud", 4, 4),
    }
    assert all(e.eta_s is not None for e in progress)
    # each runtime really ran where configured, and provenance was kept
    runtimes = {
        r["device"]: r["runtime"]
        for r in session.conn.execute(
            "SELECT device, json_extract(runtime, '$.name') AS runtime FROM measurements"
        )
    }
    assert runtimes == {"glasses": "onnxruntime", "phone": "openvino", "cloud": "onnxruntime"}
    runs = session.runs_frame()
    assert list(runs["status"]) == ["done"] * 3 and runs["hello"].notna().all()
    assert all(session.has_node_times(n) for n in ["glasses", "phone", "cloud"])
    # all samples committed, one row each
    n_samples = session.conn.execute("SELECT COUNT(*) FROM samples").fetchone()[0]
    assert n_samples == frame["samples"].sum()
    # resuming finds nothing to do
    again = await jobs.Profiler(
        session,
        profiler.chain,
        profiler.model_path,
        profiler.sha256,
        options=profiler.options,
        cache_dir=profiler.cache_dir,
    ).run()
    assert again.measured == 0 and again.failed == {}
    session.close()


async def test_an_op_one_runtime_lacks_gives_error_rows_there_only(tmp_path, relu_int64_path):
    profiler, session = setup(tmp_path, relu_int64_path, [2, 4], node_times=0)
    summary = await profiler.run()
    assert summary.failed == {}
    frame = session.results_frame()
    errors = frame[frame["status"] == "error"]
    # node 3 (Relu on int64) is in every segment that starts before 4 and ends after 3;
    # only the onnxruntime devices fail them, OpenVINO (phone) runs everything
    expected = {("glasses", 0, 4), ("glasses", 0, 6), ("cloud", 0, 6), ("cloud", 2, 6)}
    assert set(zip(errors["device"], errors["start"], errors["end"], strict=True)) == expected
    assert errors["message"].str.contains("Relu").all()
    assert set(frame[frame["device"] == "phone"]["status"]) == {"ok"}
    assert summary.errors == 4 and summary.measured == len(frame) - 4
    session.close()


class DyingTransport(LocalTransport):
    """A real agent that gets SIGKILLed right after its first result."""

    async def next_event(self):
        event = await super().next_event()
        if isinstance(event, proto.Result):
            os.kill(self.process.pid, signal.SIGKILL)
        return event


async def test_a_device_that_dies_is_reported_and_the_others_finish(tmp_path, tiny_model_path):
    cache = tmp_path / "cache"

    def factory(spec):
        return DyingTransport(cache) if spec.name == "phone" else LocalTransport(cache)

    events: list = []
    profiler, session = setup(
        tmp_path, tiny_model_path, [4, 9], node_times=0, on_event=events.append, factory=factory
    )
    summary = await profiler.run()
    assert list(summary.failed) == ["phone"]
    assert "exited before finishing" in summary.failed["phone"]
    failed = [e for e in events if isinstance(e, jobs.DeviceFailed)]
    assert [e.device for e in failed] == ["phone"] and failed[0].done >= 1
    missing = session.missing(session.plan_items())
    assert missing and {it.device for it in missing} == {"phone"}
    frame = session.results_frame()
    assert set(frame[frame["device"] != "phone"]["status"]) == {"ok"}
    runs = session.runs_frame().set_index("device")
    assert runs.loc["phone", "status"] == "failed"
    session.close()


async def test_cancel_kills_agents_and_keeps_results_then_resume(tmp_path, tiny_model_path):
    slow = TimingSettings(warmup=0, min_runs=300, max_runs=300)
    holder = []

    def on_event(ev):
        if isinstance(ev, jobs.Measured) and not holder[0].cancelled:
            holder[0].cancel()

    profiler, session = setup(
        tmp_path,
        tiny_model_path,
        [4, 9],
        timing=slow,
        node_times=0,
        on_event=on_event,
        chain=make_chain(("onnxruntime",) * 3),
    )
    holder.append(profiler)
    summary = await profiler.run()
    assert summary.stopped and summary.failed == {}
    plan = session.plan_items()
    done_before = session.progress()[0]
    assert 1 <= summary.measured == done_before < len(plan)
    hellos = session.runs_frame()["hello"].dropna()
    for h in hellos:  # every agent is gone
        pid = json.loads(h)["pid"]
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    before = dict(
        session.conn.execute("SELECT id, samples FROM measurements WHERE status = 'ok'").fetchall()
    )
    resume = jobs.Profiler(
        session,
        profiler.chain,
        profiler.model_path,
        profiler.sha256,
        options=jobs.ProfileOptions(timing=FAST, node_times_runs=0),
        cache_dir=profiler.cache_dir,
    )
    summary2 = await resume.run()
    assert summary2.measured == len(plan) - done_before  # only the remainder
    after = dict(
        session.conn.execute("SELECT id, samples FROM measurements WHERE status = 'ok'").fetchall()
    )
    assert {k: after[k] for k in before} == before  # earlier results untouched
    assert len(after) == len(plan) and session.missing(plan) == []
    session.close()


async def test_pause_holds_new_results_until_resume(tmp_path, tiny_model_path):
    timing = TimingSettings(warmup=0, min_runs=600, max_runs=600)
    holder: list = []
    counts = {"n": 0}
    paused: list[int] = []  # results counted when the agent said it paused

    def on_event(ev):
        if isinstance(ev, jobs.Measured):
            counts["n"] += 1
            if counts["n"] == 1:
                holder[0].pause()
        elif isinstance(ev, jobs.Progress) and ev.phase == "paused":
            paused.append(counts["n"])

    chain = Chain.of([DeviceSpec("solo")])
    profiler, session = setup(
        tmp_path,
        tiny_model_path,
        [4, 9],
        chain=chain,
        timing=timing,
        node_times=0,
        on_event=on_event,
    )
    holder.append(profiler)
    # one device: the plan is just [0, N); measure extra segments explicitly
    items = [PlanItem("solo", 0, b) for b in range(2, 12)]
    task = asyncio.create_task(profiler.run(items))
    deadline = time.monotonic() + 30
    while not paused and not task.done() and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    assert paused, "the agent never said it paused"
    paused_at = counts["n"]
    assert paused_at == paused[0] < len(items)  # the agent holds between segments...
    await asyncio.sleep(0.3)
    assert counts["n"] == paused_at  # ...and nothing arrives while paused
    profiler.resume()
    summary = await asyncio.wait_for(task, 30)
    assert summary.measured == len(items) and counts["n"] == len(items)
    session.close()


def test_devices_sharing_cpus_wait_for_each_other():
    chain = Chain.of(
        [
            DeviceSpec("glasses", cpus=[0]),
            DeviceSpec("phone", cpus=[1]),
            DeviceSpec("cloud", cpus=[0, 1]),
        ]
    )
    claims = jobs.cpu_claims(chain)
    assert claims["cloud"] == {0, 1}
    order = chain.names
    # glasses and phone overlap; cloud starts when both are done
    assert jobs.wall_seconds({"glasses": 1, "phone": 2, "cloud": 3}, claims, order) == 5
    assert jobs._grantable(order, set(), claims) == ["glasses", "phone"]
    # a later device never overtakes an earlier waiting one on the same CPUs
    assert jobs._grantable(["cloud", "phone"], {0}, claims) == []
    shared = jobs.cpu_claims(chain, share_cpus=True)
    assert jobs.wall_seconds({"glasses": 1, "phone": 2, "cloud": 3}, shared, order) == 3


def test_event_dicts_are_json_ready():
    ev = jobs.Progress(
        "phone", 1, 4, 2.5, "measured", (0, 3), jobs.Measured("phone", (0, 3), "ok", 1.2, 5, 3.0)
    )
    d = jobs.event_dict(ev)
    assert d["event"] == "progress" and d["last"]["median_ms"] == 1.2
    json.dumps(d)


def test_the_lab_model_cache_is_private_and_verified(tmp_path, tiny_model):
    import stat

    cache = tmp_path / "cache"
    cache.mkdir(mode=0o755)  # an older, world-readable cache is made private
    path, sha = put_model(tiny_model, cache)
    assert path.name == f"{sha}.onnx"
    assert stat.S_IMODE(cache.stat().st_mode) == 0o700
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert put_model(tiny_model, cache) == (path, sha)  # present and proven: kept
    path.write_bytes(path.read_bytes()[:-10])  # truncated behind our back
    again, _ = put_model(tiny_model, cache)
    assert again == path and path.read_bytes() == tiny_model.SerializeToString()
    assert not [p for p in cache.iterdir() if p.name.endswith(".tmp")]
