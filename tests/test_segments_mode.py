"""A device without onnx still profiles: its hello says "segments", the lab cuts each
segment and puts it in the cache by content hash, and the agent times it with the same
protocol and the same seeded inputs. The same job on a device with onnx (model mode)
gives medians within noise."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from device_venvs import OLDEST_STACK, WITHOUT_ONNX, device_python

from backend.device import protocol as proto
from backend.device.protocol import Job, TimingSettings
from backend.model import zoo
from backend.remote.local import LocalTransport
from backend.remote.models import put_model

pytestmark = pytest.mark.slow

TIMING = TimingSettings(warmup=3, min_runs=20, max_runs=200, max_seconds=1.5)
ITEMS = [(0, 24), (24, 137), (137, 259), (0, 259)]


async def run_job(python: str, job: Job, cache: Path) -> tuple[proto.Hello, dict, list]:
    transport = LocalTransport(cache, python=python)
    await transport.start(job)
    hello, medians, notes = None, {}, []
    try:
        while (event := await asyncio.wait_for(transport.next_event(), 300)) is not None:
            if isinstance(event, proto.Hello):
                hello = event
            elif isinstance(event, proto.Result):
                medians[event.segment] = event.stats["median"]
            elif isinstance(event, proto.SegmentError):
                notes.append((event.kind, event.message))
            elif isinstance(event, proto.Done):
                break
    finally:
        await transport.finish(5)
    assert hello is not None
    return hello, medians, notes


def test_a_device_without_onnx_profiles_the_same_job_within_noise(tmp_path):
    with_onnx = device_python(OLDEST_STACK)
    without = device_python(WITHOUT_ONNX)
    model = tmp_path / "yolov5n.onnx"
    zoo.build_to("yolov5n", model)
    cache = tmp_path / "cache"
    path, sha = put_model(model.read_bytes(), cache)
    job = Job(sha, ITEMS, {"name": "onnxruntime"}, TIMING, model_path=str(path))

    runs = [asyncio.run(run_job(python, job, cache)) for python in (with_onnx, without, with_onnx)]
    (hello_a, first, _), (hello_b, segmented, notes), (_, again, _) = runs
    assert hello_a.mode == "model" and hello_a.versions["onnx"] == "1.13.1"
    assert hello_b.mode == "segments" and hello_b.versions["onnx"] is None
    assert set(segmented) == set(ITEMS), notes
    # each distinct segment went into the cache once, under its own hash, beside the model
    assert len(list(cache.glob("*.onnx"))) == 1 + len(ITEMS)
    for seg in ITEMS:
        low = min(first[seg], again[seg]) / 1.5
        high = max(first[seg], again[seg]) * 1.5
        assert low <= segmented[seg] <= high, (seg, first[seg], segmented[seg], again[seg])
