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

TIMING = TimingSettings(warmup=3, min_runs=20, max_runs=200, max_seconds=1.5)
ITEMS = [(0, 24), (24, 137), (137, 259), (0, 259)]


def test_the_lab_cuts_what_an_agent_cuts_and_the_agent_runs_it_in_segments_mode(tmp_path):
    """In process (this Python has onnx, the job brings the parts): each part is the
    segment the agent would cut, byte for byte, and per-node times come back too."""
    import io

    from backend.device import agent, segments
    from backend.remote.parts import cut_parts

    model = zoo.build_to("yolov5n", tmp_path / "yolov5n.onnx")
    path, sha = put_model(model.read_bytes(), tmp_path / "cache")
    timing = TimingSettings(warmup=1, min_runs=3, max_runs=5, max_seconds=0.3)
    job = Job(sha, ITEMS, {"name": "onnxruntime"}, timing, model_path=str(path), node_times_runs=1)
    cut = cut_parts(path, job, tmp_path / "cache")
    whole, lazy = segments.load_lazy(str(path))
    index = segments.prepare(whole, None, lazy)
    cuts = index.all_crossings()
    for part in cut.parts:
        a, b = part.segment
        assert (tmp_path / "cache" / f"{part.sha256}.onnx").read_bytes() == index.segment_bytes(
            a, b, inputs=cuts[a], outputs=cuts[b]
        )
        assert [t.name for t in part.inputs] == cuts[a]
    assert cut.profile_part is not None and cut.profile_part.segment == (0, index.n)

    sent = Job.from_dict(proto.parse_line(cut.to_line()))  # as the agent reads it
    out = io.StringIO()
    agent.Agent(out, tmp_path / "cache").run(sent)
    events = [proto.decode(line) for line in out.getvalue().splitlines()]
    results = {e.segment for e in events if isinstance(e, proto.Result)}
    assert results == set(ITEMS), [e for e in events if isinstance(e, proto.SegmentError)]
    (node_times,) = [e for e in events if isinstance(e, proto.NodeTimes)]
    assert len(node_times.times) > index.n // 2  # most nodes got a time, by position
    assert max(node_times.times) < index.n


async def run_job(python: str, job: Job, cache: Path) -> tuple[proto.Hello, dict, list, dict]:
    transport = LocalTransport(cache, python=python)
    await transport.start(job)
    hello, medians, notes, nodes = None, {}, [], {}
    try:
        while (event := await asyncio.wait_for(transport.next_event(), 300)) is not None:
            if isinstance(event, proto.Hello):
                hello = event
            elif isinstance(event, proto.Result):
                medians[event.segment] = event.stats["median"]
            elif isinstance(event, proto.NodeTimes):
                nodes = event.times
            elif isinstance(event, proto.SegmentError):
                notes.append((event.kind, event.message))
            elif isinstance(event, proto.Done):
                break
    finally:
        await transport.finish(5)
    assert hello is not None
    return hello, medians, notes, nodes


@pytest.mark.slow
def test_a_device_without_onnx_profiles_the_same_job_within_noise(tmp_path):
    with_onnx = device_python(OLDEST_STACK)
    without = device_python(WITHOUT_ONNX)
    model = tmp_path / "yolov5n.onnx"
    zoo.build_to("yolov5n", model)
    cache = tmp_path / "cache"
    path, sha = put_model(model.read_bytes(), cache)
    job = Job(sha, ITEMS, {"name": "onnxruntime"}, TIMING, model_path=str(path), node_times_runs=2)

    # alternate the two devices; each one's best median per segment is the one least
    # disturbed by whatever else this machine runs
    order = (with_onnx, without, with_onnx, without)
    runs = [asyncio.run(run_job(python, job, cache)) for python in order]
    (hello_a, _, _, nodes_a), (hello_b, _, notes, nodes_b) = runs[:2]
    assert hello_a.mode == "model" and hello_a.versions["onnx"] == "1.13.1"
    assert hello_b.mode == "segments" and hello_b.versions["onnx"] is None
    assert all(set(r[1]) == set(ITEMS) for r in runs), notes
    # each distinct segment went into the cache once, under its own hash, beside the model
    # and the whole model renamed for per-node profiling
    assert len(list(cache.glob("*.onnx"))) == 1 + len(ITEMS) + 1
    assert set(nodes_b) == set(nodes_a)  # per-node times for the same positions
    for seg in ITEMS:
        model_mode = min(r[1][seg] for r in runs[0::2])
        segments_mode = min(r[1][seg] for r in runs[1::2])
        assert model_mode / 1.5 <= segments_mode <= model_mode * 1.5, (seg, runs)


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ({"parts": [{"segment": [0, 4], "sha256": "x", "inputs": []}]}, "64 hex digits"),
        ({"parts": [{"segment": [0, 2], "sha256": "a" * 64, "inputs": []}]}, "no part for item"),
        (
            {"parts": [{"segment": [0, 4], "sha256": "a" * 64, "inputs": [
                {"name": "x", "shape": [1], "elem_type": 0}]}]},
            "an elem_type must be an integer in 1..64",
        ),
        (
            {"parts": [{"segment": [0, 4], "sha256": "a" * 64, "inputs": [], "extra": 1}]},
            "unknown field",
        ),
        ({"producers": {"t": -1}}, "the producer of"),
        ({"profile_part": {"segment": [0, 4], "sha256": "a" * 64}}, "lacks field(s): inputs"),
    ],
)  # fmt: skip
def test_a_segments_mode_job_that_is_not_one_is_refused(change, says):
    job = {"model_sha256": "0" * 64, "items": [[0, 4]], "runtime": {"name": "onnxruntime"}}
    with pytest.raises(proto.ProtocolError, match=says.replace("(", r"\(").replace(")", r"\)")):
        Job.from_dict({**job, **change})
