"""Fixtures for the TUI tests: a tiny real model built in code, a session filled with
fixed timings, and settings, sessions and agent cache isolated in a temporary folder."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper


def tiny_model(seed: int = 0) -> onnx.ModelProto:
    """conv-relu ×3 with a skip add, pool, gemm on a 1×3×16×16 input: 10 nodes, real
    shapes and FLOPs, and fast enough that profiling every segment takes ~a second."""
    rng = np.random.default_rng(seed)

    def w(name: str, *shape: int) -> onnx.TensorProto:
        return numpy_helper.from_array((rng.standard_normal(shape) * 0.2).astype(np.float32), name)

    inits = [w("w1", 8, 3, 3, 3), w("w2", 8, 8, 3, 3), w("w3", 8, 8, 3, 3), w("fc", 10, 8)]
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("Conv", ["r1", "w2"], ["c2"], name="conv2", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c2"], ["r2"], name="relu2"),
        helper.make_node("Add", ["r2", "r1"], ["s"], name="skip_add"),
        helper.make_node(
            "Conv", ["s", "w3"], ["c3"], name="conv3", pads=[1, 1, 1, 1], strides=[2, 2]
        ),
        helper.make_node("Relu", ["c3"], ["r3"], name="relu3"),
        helper.make_node("GlobalAveragePool", ["r3"], ["g"], name="pool"),
        helper.make_node("Flatten", ["g"], ["f"], name="flatten"),
        helper.make_node("Gemm", ["f", "fc"], ["y"], name="fc", transB=1),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 16, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 10])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def wide_model() -> onnx.ModelProto:
    """What stresses an 80-column table: a 1×160×160×160 activation, nodes named by path
    as exporters do (`/model.2/m/m.0/cv1/conv/Conv`, alike but for their ends), and
    op names of 8 and more characters (Identity, GlobalAveragePool)."""
    rng = np.random.default_rng(1)

    def w(name: str, *shape: int) -> onnx.TensorProto:
        return numpy_helper.from_array((rng.standard_normal(shape) * 0.1).astype(np.float32), name)

    inits = [w("w0", 160, 3, 3, 3), w("w1", 160, 160, 1, 1), w("w2", 160, 160, 1, 1)]
    inits.append(w("fc", 10, 160))
    base = "/model.2/m/m.0"
    nodes = [
        helper.make_node("Conv", ["x", "w0"], ["a"], name="/model.0/conv/Conv", pads=[1] * 4),
        helper.make_node("Identity", ["a"], ["b"], name="/model.0/Identity"),
        helper.make_node("Conv", ["b", "w1"], ["c"], name=f"{base}/cv1/conv/Conv"),
        helper.make_node("Relu", ["c"], ["d"], name=f"{base}/cv1/act/Relu"),
        helper.make_node("Conv", ["d", "w2"], ["e"], name=f"{base}/cv2/conv/Conv"),
        helper.make_node("Relu", ["e"], ["f"], name=f"{base}/cv2/act/Relu"),
        helper.make_node("Add", ["f", "b"], ["g"], name=f"{base}/Add"),
        helper.make_node("GlobalAveragePool", ["g"], ["h"], name="/model.9/GlobalAveragePool"),
        helper.make_node("Flatten", ["h"], ["i"], name="/model.9/Flatten"),
        helper.make_node("Gemm", ["i", "fc"], ["y"], name="/model.10/linear/Gemm", transB=1),
    ]
    graph = helper.make_graph(
        nodes,
        "wide",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 160, 160])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 10])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Settings, sessions and the agents' model cache in a temporary folder."""
    monkeypatch.setenv("OMDP_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv("OMDP_SESSIONS_DIR", str(tmp_path / "sessions"))
    monkeypatch.setenv("OMDP_CACHE_DIR", str(tmp_path / "agent-cache"))
    (tmp_path / "sessions").mkdir()
    return tmp_path


@pytest.fixture
def tiny_path(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.onnx"
    onnx.save(tiny_model(), path)
    return path


DEVICES = ("glasses", "phone", "cloud")
SLOWDOWN = {"glasses": 8.0, "phone": 3.0, "cloud": 1.0}  # × the cloud's time
# Five devices with 20-character names: what the partitions table must still fit.
LONG_DEVICES = {
    "smartglasses-left-01": 8.0,
    "smartphone-pixel-8pro": 3.0,
    "edge-gateway-jetson1": 2.0,
    "cloud-inference-eu-w1": 1.0,
    "cloud-inference-us-e2": 0.8,
}


def fixed_session(
    path: Path,
    analysis,
    candidates: list[int],
    slowdown: dict[str, float] | None = None,
    noisy: set[tuple[str, int, int]] = frozenset(),
    measured: float = 1.0,
    throttled: set[tuple[str, int, int]] = frozenset(),
):
    """A real session file filled with fixed, FLOP-proportional timings (the cloud runs
    the whole model in 40 ms), as if profiled: deterministic snapshots and rankings
    without running anything. Three devices unless `slowdown` names others (device →
    × the fastest's time); a (device, a, b) in `noisy` is recorded as a measurement whose
    CI missed its target, one in `throttled` as timed on a CPU at half its maximum
    frequency; `measured` < 1 leaves the rest of the plan unmeasured."""
    from backend.chain import Chain, DeviceSpec, LinkSpec
    from backend.profiling.plan import build_plan
    from backend.profiling.session import Session

    if slowdown is None:
        slowdown = SLOWDOWN
        devices = [
            DeviceSpec("glasses", threads=1, cpus=[0]),
            DeviceSpec("phone", threads=1, cpus=[1]),
            DeviceSpec("cloud", threads=2),
        ]
        links = [LinkSpec("glasses", "phone", 20.0, 5.0), LinkSpec("phone", "cloud", 100.0, 20.0)]
    else:
        devices = [DeviceSpec(name) for name in slowdown]
        links = [
            LinkSpec(a.name, b.name, 50.0 * (i + 1), 5.0 * (i + 1))
            for i, (a, b) in enumerate(itertools.pairwise(devices))
        ]
    chain = Chain.of(devices, links)
    session = Session.create(path, analysis, chain, candidates)
    plan = build_plan(analysis.n, candidates, chain.names)
    session.save_plan(plan)
    cum = np.concatenate([[0.0], np.cumsum([nd.flops or 0 for nd in analysis.nodes])])
    scale = 40.0 / cum[-1]
    items = plan.items[: round(len(plan.items) * measured)]
    for it in items:
        ms = ((cum[it.end] - cum[it.start]) * scale + 0.5) * slowdown[it.device]
        bad = (it.device, it.start, it.end) in noisy
        stats = {
            "median": ms,
            "p10": ms * (0.2 if bad else 0.95),
            "p90": ms * (2.9 if bad else 1.05),
            "mean": ms,
            "std": 0.0,
            "rel_ci": 0.4 if bad else 0.01,
            "count": 10,
        }
        session.record_result(
            it.device,
            it.segment,
            load_ms=1.0,
            samples=[ms] * 10,
            stats=stats,
            stop="max_seconds" if bad else "ci",
            throttled="CPU 0 at 50% of its maximum frequency"
            if (it.device, it.start, it.end) in throttled
            else None,
        )
    for device in chain.names if measured >= 1 else []:
        per_node = {
            i: ((nd.flops or 0) * scale + 0.05) * slowdown[device] * 0.9
            for i, nd in enumerate(analysis.nodes)
        }
        session.record_node_times(device, per_node, runtime="onnxruntime", runs=3)
    return session


@pytest.fixture
def wide_path(tmp_path: Path) -> Path:
    path = tmp_path / "wide.onnx"
    onnx.save(wide_model(), path)
    return path


@pytest.fixture
def long_workspace(wide_path: Path, tmp_path: Path):
    """Five devices with 20-character names on the wide model, one noisy measurement."""
    from backend.model.analysis import analyze
    from omdp_tui.workspace import Workspace

    analysis = analyze(str(wide_path))
    noisy = {("edge-gateway-jetson1", 2, 5)}
    session = fixed_session(
        tmp_path / "sessions" / "long.omdp", analysis, [2, 5, 7], LONG_DEVICES, noisy
    )
    ws = Workspace(analysis, str(wide_path), session)
    ws._save_links()
    yield ws
    ws.session.close()


@pytest.fixture
def fixed_workspace(tiny_path: Path, tmp_path: Path):
    """A workspace on the tiny model: three devices, typed links, fixed timings."""
    from backend.model.analysis import analyze
    from omdp_tui.workspace import Workspace

    analysis = analyze(str(tiny_path))
    session = fixed_session(tmp_path / "sessions" / "fixed.omdp", analysis, [2, 5, 7])
    ws = Workspace(analysis, str(tiny_path), session)
    ws._save_links()
    yield ws
    ws.session.close()
