"""The device agent: protocol, segment measurement, error isolation, stopping, shipping."""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import numpy as np
import onnx
import pytest

from backend.device import agent, runtimes
from backend.device.agent import Job
from backend.device.segments import GraphIndex

ROOT = Path(__file__).resolve().parents[1]
FAST = {"warmup": 1, "min_runs": 3, "max_runs": 5, "max_seconds": 0.5}


def cached(model: onnx.ModelProto, cache: Path) -> str:
    from backend.profiling.jobs import put_in_cache

    return put_in_cache(model, cache)[1]


def run_in_process(job: Job, cache: Path) -> list:
    out = io.StringIO()
    agent.Agent(out, cache).run(job)
    return [agent.decode(line) for line in out.getvalue().splitlines()]


def of(events, cls):
    return [e for e in events if isinstance(e, cls)]


# -- protocol --------------------------------------------------------------------------------

def test_events_round_trip():
    events = [
        agent.Hello(1, "1", 42, {"python": "3"}, {"cpu": "x"}),
        agent.Progress(1, 3, (0, 4), "timing"),
        agent.Result((0, 4), 1.5, [1.0, 2.0], {"median": 1.5}, "ci", {"name": "onnxruntime"}),
        agent.SegmentError((2, 5), "no kernel", "load", "trace"),
        agent.NodeTimes("openvino", 3, {0: 0.5, 7: 1.25}, 0.1, 2.0),
        agent.Done(3, 1, False, 1.0),
    ]
    for ev in events:
        line = agent.encode(ev)
        assert "\n" not in line
        assert agent.decode(line) == ev


def test_event_reader_checks_the_conversation():
    hello = agent.encode(agent.Hello(1, "1", 1, {}, {}))
    done = agent.encode(agent.Done(0, 0, False, 0.0))
    r = agent.EventReader()
    with pytest.raises(agent.ProtocolError, match="hello"):
        r.feed(done)
    r = agent.EventReader()
    assert r.feed("  \n") is None
    assert isinstance(r.feed(hello), agent.Hello)
    assert isinstance(r.feed(done), agent.Done)
    with pytest.raises(agent.ProtocolError, match="after 'done'"):
        r.feed(done)
    with pytest.raises(agent.ProtocolError, match="protocol 99"):
        agent.EventReader().feed(agent.encode(agent.Hello(99, "1", 1, {}, {})))
    with pytest.raises(agent.ProtocolError, match="not JSON"):
        agent.EventReader().feed("Traceback (most recent call last):")
    with pytest.raises(agent.ProtocolError, match="unknown message"):
        agent.EventReader().feed('{"type": "nope"}')


def test_job_round_trip():
    job = Job("a" * 64, [(0, 3), (3, 9)], {"name": "openvino"}, FAST, cpus=[0])
    back = Job.from_dict(json.loads(job.to_line()))
    assert back == job


# -- measuring -------------------------------------------------------------------------------

@pytest.mark.parametrize("runtime", ["onnxruntime", "openvino"])
def test_agent_measures_every_segment_with_node_times(runtime, tiny_model, tmp_path):
    sha = cached(tiny_model, tmp_path)
    n = len(tiny_model.graph.node)
    items = [(0, n), (0, 5), (5, n), (2, 9)]
    events = run_in_process(Job(sha, items, {"name": runtime, "threads": 1}, FAST,
                                node_times_runs=2), tmp_path)
    results = of(events, agent.Result)
    assert [r.segment for r in results] == items
    for r in results:
        assert len(r.samples) == r.stats["count"] and 3 <= len(r.samples) <= 5
        assert r.load_ms > 0 and r.runtime["name"] == runtime and r.runtime["version"]
    nt = of(events, agent.NodeTimes)[0]
    assert nt.runtime == runtime and nt.times and all(0 <= p < n for p in nt.times)
    assert of(events, agent.Done)[0] == agent.Done(4, 0, False, of(events, agent.Done)[0].seconds)


def test_a_segment_onnxruntime_cannot_run_is_an_error_and_the_rest_continues(
        make_relu_int64, tmp_path):
    model = make_relu_int64()  # node 3 is Relu on int64: onnxruntime has no kernel for it
    sha = cached(model, tmp_path)
    items = [(0, 6), (0, 3), (3, 6), (4, 6), (0, 2), (2, 4)]
    events = run_in_process(Job(sha, items, {"name": "onnxruntime"}, FAST), tmp_path)
    errors = {e.segment: e for e in of(events, agent.SegmentError)}
    ok = {r.segment for r in of(events, agent.Result)}
    assert set(errors) == {(0, 6), (3, 6), (2, 4)}  # exactly the segments holding node 3
    assert ok == {(0, 3), (4, 6), (0, 2)}
    assert all(e.kind == "load" and "Relu" in e.message for e in errors.values())
    done = of(events, agent.Done)[0]
    assert (done.completed, done.errors, done.stopped) == (3, 3, False)
    # the same segments run on OpenVINO: the failure is onnxruntime's, not the model's
    events = run_in_process(Job(sha, list(errors), {"name": "openvino"}, FAST), tmp_path)
    assert len(of(events, agent.Result)) == 3 and not of(events, agent.SegmentError)


def test_prefix_inputs_come_from_a_real_input(tiny_model, tmp_path):
    sha = cached(tiny_model, tmp_path)
    x = np.random.default_rng(5).standard_normal((1, 3, 16, 16)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    events = run_in_process(Job(sha, [(0, 7), (7, 20)], {"name": "onnxruntime"}, FAST,
                                inputs="prefix", npy={"input": str(tmp_path / "x.npy")}),
                            tmp_path)
    assert not of(events, agent.SegmentError)
    assert [r.segment for r in of(events, agent.Result)] == [(0, 7), (7, 20)]


def test_model_cache_is_content_addressed(tiny_model, tmp_path):
    src = tmp_path / "m.onnx"
    onnx.save(tiny_model, src)
    sha = agent.file_sha256(src)
    cache = tmp_path / "cache"
    path = agent.cached_model(cache, sha, str(src))
    assert path == cache / f"{sha}.onnx" and agent.file_sha256(path) == sha
    assert agent.cached_model(cache, sha) == path  # no source needed any more
    with pytest.raises(ValueError, match="expects"):
        agent.cached_model(cache, "0" * 64, str(src))
    assert not list(cache.glob(".*.tmp"))
    events = run_in_process(Job("1" * 64, [(0, 1)], {"name": "onnxruntime"}), cache)
    err = of(events, agent.SegmentError)[0]
    assert err.segment is None and err.kind == "job" and "not in the cache" in err.message
    assert of(events, agent.Done)[0].errors == 1


def test_kernel_names_map_back_to_positions(tiny_model):
    index = GraphIndex.build(tiny_model)
    producers = {o: p for p, n in enumerate(index.nodes) for o in n.output}
    assert agent.attribute("omdp_n12", producers) == 12
    assert agent.attribute("b0_r1_nchwc", producers) == producers["b0_r1"]
    assert agent.attribute("ReorderOutput_token_3", producers) is None


# -- the process -----------------------------------------------------------------------------

def spawn(cmd: list[str], cwd: Path, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen(cmd, cwd=cwd, env=env, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def read_until(proc: subprocess.Popen, predicate, timeout: float = 30.0) -> list:
    """Events up to the first matching one (one EventReader per process)."""
    reader = proc.__dict__.setdefault("reader", agent.EventReader())
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


def slow_job(model: onnx.ModelProto, cache: Path) -> str:
    sha = cached(model, cache)
    n = len(model.graph.node)
    items = [(0, n)] * 50
    timing = {"warmup": 0, "min_runs": 200, "max_runs": 200}
    return Job(sha, items, {"name": "onnxruntime", "threads": 1}, timing).to_line()


@pytest.mark.parametrize("how", ["sigterm", "sigint", "eof", "stop"])
def test_agent_process_stops_cleanly(how, tiny_model, tmp_path):
    proc = spawn([sys.executable, "-m", "backend.device.agent", "--cache", str(tmp_path)], ROOT)
    try:
        proc.stdin.write(slow_job(tiny_model, tmp_path) + "\n")
        proc.stdin.flush()
        first = read_until(proc, lambda e: isinstance(e, agent.Result))
        assert isinstance(first[0], agent.Hello) and isinstance(first[-1], agent.Result)
        if how == "sigterm":
            proc.send_signal(signal.SIGTERM)
        elif how == "sigint":
            proc.send_signal(signal.SIGINT)
        elif how == "stop":
            proc.stdin.write('{"type": "stop"}\n')
            proc.stdin.flush()
        else:
            proc.stdin.close()
        rest = read_until(proc, lambda e: isinstance(e, agent.Done), timeout=10)
        assert proc.wait(10) == 0
    finally:
        proc.kill()
    done = rest[-1]
    assert isinstance(done, agent.Done) and done.stopped and done.completed < 50
    assert "Traceback" not in proc.stderr.read()


def test_agent_pause_and_resume(tiny_model, tmp_path):
    proc = spawn([sys.executable, "-m", "backend.device.agent", "--cache", str(tmp_path)], ROOT)
    try:
        proc.stdin.write(slow_job(tiny_model, tmp_path) + "\n")
        proc.stdin.write('{"type": "pause"}\n')
        proc.stdin.flush()
        events = read_until(proc, lambda e: isinstance(e, agent.Progress) and e.phase == "paused")
        paused_at = events[-1].done
        assert paused_at <= 1
        proc.stdin.write('{"type": "resume"}\n{"type": "stop"}\n')
        proc.stdin.flush()
        rest = read_until(proc, lambda e: isinstance(e, agent.Done), timeout=10)
        assert isinstance(rest[-1], agent.Done)
        assert proc.wait(10) == 0
    finally:
        proc.kill()


def test_agent_ships_as_three_plain_files(tiny_model, tmp_path):
    """Copied alone to a folder and started with no site hooks and no project on the path:
    only stdlib + numpy + onnx + the runtime are reachable, as on a device."""
    ship = tmp_path / "device"
    ship.mkdir()
    for name in ("agent.py", "runtimes.py", "segments.py"):
        shutil.copy(ROOT / "backend" / "device" / name, ship / name)
    site = sysconfig.get_paths()["purelib"]
    env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": site, "HOME": str(tmp_path)}
    proc = spawn([sys.executable, "-S", "agent.py", "--cache", str(ship / "cache")], ship, env)
    try:
        sha = cached(tiny_model, ship / "cache")
        proc.stdin.write(Job(sha, [(0, 4), (4, 20)], {"name": "onnxruntime"}, FAST).to_line()
                         + "\n")
        proc.stdin.flush()
        events = read_until(proc, lambda e: isinstance(e, agent.Done))
        proc.stdin.close()
        assert proc.wait(10) == 0
    finally:
        proc.kill()
    assert isinstance(events[0], agent.Hello) and events[0].versions["onnxruntime"]
    assert [r.segment for r in of(events, agent.Result)] == [(0, 4), (4, 20)], \
        proc.stderr.read()


def test_runtimes_module_is_self_contained():
    import ast

    for name in ("runtimes.py", "segments.py"):
        tree = ast.parse((ROOT / "backend" / "device" / name).read_text())
        mods = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import)
                for a in n.names}
        mods |= {n.module.split(".")[0] for n in ast.walk(tree)
                 if isinstance(n, ast.ImportFrom) and n.module and n.level == 0}
        allowed = set(sys.stdlib_module_names) | {"numpy", "onnx", "onnxruntime", "openvino"}
        assert mods <= allowed, (name, mods - allowed)


def test_hello_describes_the_host(tmp_path):
    out = io.StringIO()
    agent.Agent(out, tmp_path).hello()
    hello = agent.decode(out.getvalue())
    assert hello.protocol == agent.PROTOCOL_VERSION and hello.pid == os.getpid()
    assert hello.host["cpu"] and hello.host["cores"] >= 1
    assert hello.versions == runtimes.versions()
