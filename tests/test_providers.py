"""Execution providers and OpenVINO devices chosen per device: one that is not present
fails the device's job before any timing, naming those that are; the one that ran is
recorded with every measurement."""

from __future__ import annotations

import io

import pytest

from backend.device import agent, runtimes
from backend.device import protocol as proto
from backend.device.protocol import Job, TimingSettings
from backend.remote.models import put_model

FAST = TimingSettings(warmup=1, min_runs=3, max_runs=5, max_seconds=0.5)


def events_of(job: Job, cache) -> list:
    out = io.StringIO()
    runner = agent.Agent(out, cache)
    runner.hello()
    runner.run(job)
    conversation = proto.Conversation(job)
    return [conversation.feed(line) for line in out.getvalue().splitlines()]


@pytest.mark.parametrize(
    ("runtime", "says"),
    [
        (
            {"name": "onnxruntime", "providers": ["TensorrtExecutionProvider"]},
            "provider(s) TensorrtExecutionProvider not available (installed: ",
        ),
        ({"name": "openvino", "ov_device": "NPU"}, "OpenVINO device 'NPU' is not available"),
        ({"name": "openvino", "ov_device": "AUTO:GPU,CPU"}, "'AUTO:GPU,CPU' is not available"),
    ],
)
def test_a_missing_provider_or_device_fails_the_job_before_any_timing(
    tmp_path, tiny_model, runtime, says
):
    _, sha = put_model(tiny_model, tmp_path)
    events = events_of(Job(sha, [(0, 4), (4, 8)], runtime, FAST), tmp_path)
    errors = [e for e in events if isinstance(e, proto.SegmentError)]
    assert len(errors) == 1 and errors[0].kind == "job" and says in errors[0].message
    assert "CPU" in errors[0].message  # what this device does have
    assert not [e for e in events if isinstance(e, proto.AgentProgress)]  # nothing started
    assert not [e for e in events if isinstance(e, proto.Result)]


@pytest.mark.parametrize(
    ("runtime", "used"),
    [
        ({"name": "onnxruntime"}, "CPUExecutionProvider"),
        ({"name": "openvino", "ov_device": "AUTO"}, "CPU"),  # what AUTO chose
    ],
)
def test_the_provider_or_device_that_ran_is_in_every_result(tmp_path, tiny_model, runtime, used):
    _, sha = put_model(tiny_model, tmp_path)
    results = [
        e
        for e in events_of(Job(sha, [(0, 4), (4, 8)], runtime, FAST), tmp_path)
        if isinstance(e, proto.Result)
    ]
    assert len(results) == 2 and {r.runtime["device"] for r in results} == {used}


def test_virtual_openvino_devices_need_only_their_real_ones():
    core = runtimes.ov_api().core
    runtimes._ov_device_check(core, "AUTO")
    runtimes._ov_device_check(core, "MULTI:CPU")
    with pytest.raises(runtimes.RuntimeUnavailable, match=r"\(available: CPU"):
        runtimes._ov_device_check(core, "HETERO:GPU,CPU")
