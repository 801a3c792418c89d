"""The device agent: protocol, segment measurement, error isolation, stopping, shipping."""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import numpy as np
import onnx
import pytest

from backend.device import agent, nodes, runtimes
from backend.device import cache as model_cache
from backend.device import protocol as proto
from backend.device.protocol import Job, TimingSettings
from backend.device.segments import GraphIndex
from backend.remote.models import put_model
from backend.remote.store import package_files

ROOT = Path(__file__).resolve().parents[1]
FAST = TimingSettings(warmup=1, min_runs=3, max_runs=5, max_seconds=0.5)


def cached(model: onnx.ModelProto, cache: Path) -> str:
    return put_model(model, cache)[1]


def run_in_process(job: Job, cache: Path) -> list:
    """Every event the agent sends for `job`, each checked against the job."""
    out = io.StringIO()
    runner = agent.Agent(out, cache)
    runner.hello()
    runner.run(job)
    conversation = proto.Conversation(job)
    return [conversation.feed(line) for line in out.getvalue().splitlines()]


def of(events, cls):
    return [e for e in events if isinstance(e, cls)]


# -- protocol --------------------------------------------------------------------------------


def test_events_round_trip():
    events = [
        proto.Hello(1, "1", 42, {"python": "3"}, {"cpu": "x"}),
        proto.AgentProgress(1, 3, (0, 4), "timing"),
        proto.Result((0, 4), 1.5, [1.0, 2.0], {"median": 1.5}, "ci", {"name": "onnxruntime"}),
        proto.SegmentError((2, 5), "no kernel", "load", "trace"),
        proto.NodeTimes("openvino", 3, {0: 0.5, 7: 1.25}, 0.1, 2.0),
        proto.Done(3, 1, False, 1.0),
    ]
    for ev in events:
        line = proto.encode(ev)
        assert "\n" not in line
        assert proto.decode(line) == ev


def test_conversation_checks_the_exchange():
    job = Job("a" * 64, [(0, 4)], {"name": "onnxruntime"})
    hello = proto.encode(proto.Hello(1, "1", 1, {}, {}))
    done = proto.encode(proto.Done(0, 0, True, 0.0))
    with pytest.raises(proto.ProtocolError, match="hello"):
        proto.Conversation(job).feed(done)
    r = proto.Conversation(job)
    assert r.feed("  \n") is None
    assert isinstance(r.feed(hello), proto.Hello)
    assert isinstance(r.feed(done), proto.Done)
    with pytest.raises(proto.ProtocolError, match="after 'done'"):
        r.feed(done)
    with pytest.raises(proto.ProtocolError, match="protocol 99"):
        proto.Conversation(job).feed(proto.encode(proto.Hello(99, "1", 1, {}, {})))
    with pytest.raises(proto.ProtocolError, match="not a JSON message"):
        proto.Conversation(job).feed("Traceback (most recent call last):")
    with pytest.raises(proto.ProtocolError, match="unknown message type"):
        proto.Conversation(job).feed('{"type": "nope"}')
    banner = proto.Conversation(job, noise=1)  # a login banner before hello is tolerated
    assert banner.feed("Welcome to the lab board") is None
    assert isinstance(banner.feed(hello), proto.Hello)


def test_job_round_trip():
    job = Job("a" * 64, [(0, 3), (3, 9)], {"name": "openvino"}, FAST, cpus=[0])
    back = Job.from_dict(json.loads(job.to_line()))
    assert back == job
    with pytest.raises(proto.ProtocolError, match="unknown field"):
        Job.from_dict({**job.to_dict(), "shell": "rm -rf /"})
    with pytest.raises(proto.ProtocolError, match="reversed"):
        Job.from_dict({**job.to_dict(), "items": [[5, 3]]})


# -- measuring -------------------------------------------------------------------------------


@pytest.mark.parametrize("runtime", ["onnxruntime", "openvino"])
def test_agent_measures_every_segment_with_node_times(runtime, tiny_model, tmp_path):
    sha = cached(tiny_model, tmp_path)
    n = len(tiny_model.graph.node)
    items = [(0, n), (0, 5), (5, n), (2, 9)]
    events = run_in_process(
        Job(sha, items, {"name": runtime, "threads": 1}, FAST, node_times_runs=2), tmp_path
    )
    results = of(events, proto.Result)
    assert [r.segment for r in results] == items
    for r in results:
        assert len(r.samples) == r.stats["count"] and 3 <= len(r.samples) <= 5
        assert r.load_ms > 0 and r.runtime["name"] == runtime and r.runtime["version"]
    nt = of(events, proto.NodeTimes)[0]
    assert nt.runtime == runtime and nt.times and all(0 <= p < n for p in nt.times)
    assert of(events, proto.Done)[0] == proto.Done(4, 0, False, of(events, proto.Done)[0].seconds)


def test_a_segment_onnxruntime_cannot_run_is_an_error_and_the_rest_continues(
    make_relu_int64, tmp_path
):
    model = make_relu_int64()  # node 3 is Relu on int64: onnxruntime has no kernel for it
    sha = cached(model, tmp_path)
    items = [(0, 6), (0, 3), (3, 6), (4, 6), (0, 2), (2, 4)]
    events = run_in_process(Job(sha, items, {"name": "onnxruntime"}, FAST), tmp_path)
    errors = {e.segment: e for e in of(events, proto.SegmentError)}
    ok = {r.segment for r in of(events, proto.Result)}
    assert set(errors) == {(0, 6), (3, 6), (2, 4)}  # exactly the segments holding node 3
    assert ok == {(0, 3), (4, 6), (0, 2)}
    assert all(e.kind == "load" and "Relu" in e.message for e in errors.values())
    done = of(events, proto.Done)[0]
    assert (done.completed, done.errors, done.stopped) == (3, 3, False)
    # the same segments run on OpenVINO: the failure is onnxruntime's, not the model's
    events = run_in_process(Job(sha, list(errors), {"name": "openvino"}, FAST), tmp_path)
    assert len(of(events, proto.Result)) == 3 and not of(events, proto.SegmentError)


def test_prefix_inputs_come_from_a_real_input(tiny_model, tmp_path):
    sha = cached(tiny_model, tmp_path)
    x = np.random.default_rng(5).standard_normal((1, 3, 16, 16)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    events = run_in_process(
        Job(
            sha,
            [(0, 7), (7, 20)],
            {"name": "onnxruntime"},
            FAST,
            inputs="prefix",
            npy={"input": str(tmp_path / "x.npy")},
        ),
        tmp_path,
    )
    assert not of(events, proto.SegmentError)
    assert [r.segment for r in of(events, proto.Result)] == [(0, 7), (7, 20)]


def test_model_cache_is_content_addressed_private_and_verified(tiny_model, tmp_path):
    src = tmp_path / "m.onnx"
    onnx.save(tiny_model, src)
    sha = model_cache.sha256_of(src)
    cache = tmp_path / "cache"
    path = model_cache.cached_model(cache, sha, str(src))
    assert path == cache / f"{sha}.onnx" and model_cache.sha256_of(path) == sha
    assert stat.S_IMODE(cache.stat().st_mode) == 0o700
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert model_cache.cached_model(cache, sha) == path  # no source needed any more
    with pytest.raises(ValueError, match="expects"):
        model_cache.cached_model(cache, "0" * 64, str(src))
    assert not list(cache.glob(".*.tmp"))
    # a cached file that changed is not trusted by its name: checked, removed, copied again
    data = bytearray(path.read_bytes())
    data[-1] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(model_cache.CacheDamaged, match="no longer matched its hash"):
        model_cache.cached_model(cache, sha)
    assert not path.exists()
    assert model_cache.sha256_of(model_cache.cached_model(cache, sha, str(src))) == sha
    events = run_in_process(Job("1" * 64, [(0, 1)], {"name": "onnxruntime"}), cache)
    err = of(events, proto.SegmentError)[0]
    assert err.segment is None and err.kind == "job" and "not in the cache" in err.message
    assert of(events, proto.Done)[0].errors == 1


def test_kernel_names_map_back_to_positions(tiny_model):
    index = GraphIndex.build(tiny_model)
    producers = {o: p for p, n in enumerate(index.nodes) for o in n.output}
    assert nodes.attribute("omdp_n12", producers) == 12
    assert nodes.attribute("b0_r1_nchwc", producers) == producers["b0_r1"]
    assert nodes.attribute("ReorderOutput_token_3", producers) is None


# -- the process -----------------------------------------------------------------------------


def spawn(cmd: list[str], cwd: Path, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        cmd,
        cwd=cwd,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def read_until(proc: subprocess.Popen, predicate, timeout: float = 30.0) -> list:
    """Events up to the first matching one (one EventReader per process)."""
    reader = proc.__dict__.setdefault("reader", proto.Conversation(proc.__dict__["job"]))
    events = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        ev = reader.feed(line)
        if ev is not None:
            events.append(ev)
            if predicate(ev):
                break
    return events


def slow_job(model: onnx.ModelProto, cache: Path) -> Job:
    sha = cached(model, cache)
    n = len(model.graph.node)
    items = [(0, n)] * 50
    timing = TimingSettings(warmup=0, min_runs=200, max_runs=200)
    return Job(sha, items, {"name": "onnxruntime", "threads": 1}, timing)


def send_job(proc: subprocess.Popen, job: Job) -> None:
    proc.__dict__["job"] = job
    proc.stdin.write(job.to_line() + "\n")


@pytest.mark.parametrize("how", ["sigterm", "sigint", "eof", "stop"])
def test_agent_process_stops_cleanly(how, tiny_model, tmp_path):
    proc = spawn([sys.executable, "-m", "backend.device.agent", "--cache", str(tmp_path)], ROOT)
    try:
        send_job(proc, slow_job(tiny_model, tmp_path))
        proc.stdin.flush()
        first = read_until(proc, lambda e: isinstance(e, proto.Result))
        assert isinstance(first[0], proto.Hello) and isinstance(first[-1], proto.Result)
        if how == "sigterm":
            proc.send_signal(signal.SIGTERM)
        elif how == "sigint":
            proc.send_signal(signal.SIGINT)
        elif how == "stop":
            proc.stdin.write('{"type": "stop"}\n')
            proc.stdin.flush()
        else:
            proc.stdin.close()
        rest = read_until(proc, lambda e: isinstance(e, proto.Done), timeout=10)
        assert proc.wait(10) == 0
    finally:
        proc.kill()
    done = rest[-1]
    assert isinstance(done, proto.Done) and done.stopped and done.completed < 50
    assert "Traceback" not in proc.stderr.read()


def test_agent_pause_and_resume(tiny_model, tmp_path):
    proc = spawn([sys.executable, "-m", "backend.device.agent", "--cache", str(tmp_path)], ROOT)
    try:
        send_job(proc, slow_job(tiny_model, tmp_path))
        proc.stdin.write('{"type": "pause"}\n')
        proc.stdin.flush()
        events = read_until(
            proc, lambda e: isinstance(e, proto.AgentProgress) and e.phase == "paused"
        )
        paused_at = events[-1].done
        assert paused_at <= 1
        proc.stdin.write('{"type": "resume"}\n{"type": "stop"}\n')
        proc.stdin.flush()
        rest = read_until(proc, lambda e: isinstance(e, proto.Done), timeout=10)
        assert isinstance(rest[-1], proto.Done)
        assert proc.wait(10) == 0
    finally:
        proc.kill()


def test_agent_ships_as_the_plain_files_of_its_package(tiny_model, tmp_path):
    """Copied alone to a folder and started with no site hooks and no project on the path:
    only stdlib + numpy + onnx + the runtime are reachable, as on a device."""
    ship = tmp_path / "device"
    ship.mkdir()
    for path in package_files():
        shutil.copy(path, ship / path.name)
    site = sysconfig.get_paths()["purelib"]
    env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": site, "HOME": str(tmp_path)}
    proc = spawn([sys.executable, "-S", "agent.py", "--cache", str(ship / "cache")], ship, env)
    try:
        sha = cached(tiny_model, ship / "cache")
        send_job(proc, Job(sha, [(0, 4), (4, 20)], {"name": "onnxruntime"}, FAST))
        proc.stdin.flush()
        events = read_until(proc, lambda e: isinstance(e, proto.Done))
        proc.stdin.close()
        assert proc.wait(10) == 0
    finally:
        proc.kill()
    assert isinstance(events[0], proto.Hello) and events[0].versions["onnxruntime"]
    assert [r.segment for r in of(events, proto.Result)] == [(0, 4), (4, 20)], proc.stderr.read()


def test_hello_describes_the_host(tmp_path):
    out = io.StringIO()
    agent.Agent(out, tmp_path).hello()
    hello = proto.decode(out.getvalue())
    assert hello.protocol == proto.PROTOCOL_VERSION and hello.pid == os.getpid()
    assert hello.host["cpu"] and hello.host["cores"] >= 1
    assert hello.versions == runtimes.versions()


def test_an_uploaded_input_that_changed_is_not_used(tiny_model, tmp_path):
    sha = cached(tiny_model, tmp_path)
    x = np.zeros((1, 3, 16, 16), dtype=np.float32)
    np.save(tmp_path / "x.npy", x)
    named = tmp_path / f"{model_cache.sha256_of(tmp_path / 'x.npy')}.npy"
    (tmp_path / "x.npy").rename(named)
    np.save(tmp_path / "other.npy", x + 1)
    named.write_bytes((tmp_path / "other.npy").read_bytes())  # same name, other bytes
    events = run_in_process(
        Job(
            sha, [(0, 7)], {"name": "onnxruntime"}, FAST, inputs="prefix", npy={"input": str(named)}
        ),
        tmp_path,
    )
    (note,) = [e for e in of(events, proto.SegmentError) if e.kind == "inputs"]
    assert "no longer matched its hash" in note.message and not named.exists()
    assert [r.segment for r in of(events, proto.Result)] == [(0, 7)]  # measured, random inputs
