"""backend.profiling.jobs.Profiler with SSH devices: SshAgentTransport as its transport, results in
a real session, a dropped connection resumed, a dead device reported while others finish."""

from __future__ import annotations

import json
from pathlib import Path

import onnx
import pytest

from backend.chain import Chain, DeviceSpec
from backend.device.protocol import TimingSettings
from backend.files import file_sha256
from backend.model.analysis import analyze
from backend.profiling import jobs
from backend.profiling.plan import build_plan
from backend.profiling.session import Session
from backend.remote.local import LocalTransport
from backend.remote.ssh_agent import RetryPolicy, SshAgentTransport
from backend.remote.transport import AgentTransport

from .helpers import FakeDevice, SshLab, chain_model, left_running

TIMING = TimingSettings(warmup=0, min_runs=20, max_runs=20, max_seconds=10.0)


def profiler_for(
    lab: SshLab, model: Path, devices: dict[str, FakeDevice], on_event=None
) -> tuple[jobs.Profiler, Session]:
    specs = [DeviceSpec("glasses")] + [DeviceSpec(n, kind="ssh") for n in devices]
    chain = Chain.of(specs)
    analysis = analyze(model)
    candidates = [4, 8]
    session = Session.create(lab.tmp / "run.omdp", analysis, chain, candidates)
    session.save_plan(build_plan(analysis.n, candidates, chain.names))
    retry = RetryPolicy(attempts=2, base_s=0.05)

    def transport(spec: DeviceSpec) -> AgentTransport:
        # what jobs.py's default factory does for kind = "ssh" (with the test's keys)
        if spec.kind == "ssh":
            return SshAgentTransport(devices[spec.name].target(), retry)
        return LocalTransport(lab.tmp / "local-cache")

    options = jobs.ProfileOptions(timing=TIMING, node_times_runs=0)
    profiler = jobs.Profiler(
        session,
        chain,
        model,
        file_sha256(model),
        options=options,
        cache_dir=lab.tmp / "local-cache",
        on_event=on_event,
        transport_factory=transport,
    )
    return profiler, session


def slow_model(lab: SshLab) -> Path:
    path = lab.tmp / "slow.onnx"
    onnx.save(chain_model(n=6, width=384, batch=64), str(path))
    return path


async def test_profiler_over_ssh_resumes_a_dropped_device(ssh_lab: SshLab):
    phone, cloud = ssh_lab.device("phone"), ssh_lab.device("cloud")
    seen: dict[str, int] = {}

    def on_event(event: jobs.JobEvent) -> None:
        if isinstance(event, jobs.Measured):
            seen[event.device] = seen.get(event.device, 0) + 1
            if event.device == "phone" and seen["phone"] == 2:
                phone.drop_connections()

    profiler, session = profiler_for(
        ssh_lab, slow_model(ssh_lab), {"phone": phone, "cloud": cloud}, on_event
    )
    summary = await profiler.run()
    assert summary.failed == {} and summary.errors == 0
    plan = session.plan_items()
    assert session.missing(plan) == []
    frame = session.results_frame()
    assert len(frame) == len(plan)  # one measurement per plan item: none lost, none twice
    assert set(frame["status"]) == {"ok"} and set(frame["samples"]) == {20}
    assert summary.measured == len(plan)
    assert len(phone.conns) >= 2  # it did reconnect
    session.close()


async def test_profiler_reports_a_dead_ssh_device_and_finishes_the_others(ssh_lab: SshLab):
    phone, cloud = ssh_lab.device("phone"), ssh_lab.device("cloud")
    cloud.stop()
    events: list[jobs.JobEvent] = []
    profiler, session = profiler_for(
        ssh_lab, slow_model(ssh_lab), {"phone": phone, "cloud": cloud}, events.append
    )
    summary = await profiler.run()
    assert list(summary.failed) == ["cloud"]
    assert f"connection refused by omdp@127.0.0.1:{cloud.port}" in summary.failed["cloud"]
    failed = [e for e in events if isinstance(e, jobs.DeviceFailed)]
    assert [e.device for e in failed] == ["cloud"]
    missing = session.missing(session.plan_items())
    assert missing and {it.device for it in missing} == {"cloud"}
    session.close()


async def test_profiler_cancel_stops_ssh_agents(ssh_lab: SshLab):
    phone = ssh_lab.device("phone")
    holder: list[jobs.Profiler] = []

    def on_event(event: jobs.JobEvent) -> None:
        if isinstance(event, jobs.Measured) and event.device == "phone":
            holder[0].cancel()

    profiler, session = profiler_for(ssh_lab, slow_model(ssh_lab), {"phone": phone}, on_event)
    holder.append(profiler)
    summary = await profiler.run()
    assert summary.stopped and summary.failed == {}
    assert 1 <= summary.measured < len(session.plan_items())
    assert await left_running(str(ssh_lab.tmp / "phone-work")) == []  # guard and agent gone
    session.close()


@pytest.mark.slow
async def test_an_ssh_device_without_onnx_gets_each_segment_once_not_the_model(ssh_lab: SshLab):
    from device_venvs import WITHOUT_ONNX, device_python

    python = device_python(WITHOUT_ONNX)
    phone = ssh_lab.device("phone")
    model = ssh_lab.tmp / "small.onnx"
    small = chain_model()
    small.ir_version = 8  # what onnxruntime 1.12 reads (opset 17 too)
    onnx.save(small, str(model))
    profiler, session = profiler_for(ssh_lab, model, {"phone": phone})
    profiler.transport_factory = lambda spec: (
        SshAgentTransport(phone.target(python=python), RetryPolicy(attempts=2, base_s=0.05))
        if spec.kind == "ssh"
        else LocalTransport(ssh_lab.tmp / "local-cache")
    )
    summary = await profiler.run()
    frame = session.results_frame()
    assert summary.failed == {} and summary.errors == 0, list(frame["message"])
    assert set(frame["status"]) == {"ok"}
    hello = json.loads(session.runs_frame().set_index("device").loc["phone", "hello"])
    assert hello["mode"] == "segments" and hello["versions"]["onnx"] is None
    phone_items = [it for it in session.plan_items() if it.device == "phone"]
    uploaded = {p.stem for p in (ssh_lab.tmp / "phone-work" / "models").glob("*.onnx")}
    assert len(uploaded) == len(phone_items)  # one file per segment ...
    assert file_sha256(model) not in uploaded  # ... and never the whole model
    session.close()


@pytest.mark.slow
async def test_yolov5n_over_ssh_on_python_3_8_with_the_oldest_stack(ssh_lab: SshLab):
    from device_venvs import OLDEST_STACK, device_python

    from backend.model import zoo

    python = device_python(OLDEST_STACK)
    phone = ssh_lab.device("phone")
    model = zoo.build_to("yolov5n", ssh_lab.tmp / "yolov5n.onnx")
    profiler, session = profiler_for(ssh_lab, model, {"phone": phone})
    profiler.options.node_times_runs = 1
    profiler.transport_factory = lambda spec: (
        SshAgentTransport(phone.target(python=python), RetryPolicy(attempts=2, base_s=0.05))
        if spec.kind == "ssh"
        else LocalTransport(ssh_lab.tmp / "local-cache")
    )
    summary = await profiler.run()
    frame = session.results_frame()
    assert summary.failed == {} and summary.errors == 0, list(frame["message"])
    assert set(frame["status"]) == {"ok"} and len(frame) == len(session.plan_items())
    hello = json.loads(session.runs_frame().set_index("device").loc["phone", "hello"])
    assert hello["versions"]["python"].startswith("3.8.") and hello["mode"] == "model"
    assert hello["versions"]["onnxruntime"] == "1.12.1"
    assert not session.node_times_frame().query("device == 'phone'").empty
    session.close()
