"""Fixtures for the TUI tests: a tiny real model built in code, a session filled with
fixed timings, and settings, sessions and agent cache isolated in a temporary folder."""

from __future__ import annotations

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


def fixed_session(path: Path, analysis, candidates: list[int]):
    """A real session file on three devices filled with fixed, FLOP-proportional timings
    (the cloud runs the whole model in 40 ms), as if profiled: deterministic snapshots and
    rankings without running anything."""
    from backend.chain import Chain, DeviceSpec, LinkSpec
    from backend.profiling.plan import build_plan
    from backend.profiling.session import Session

    chain = Chain.of(
        [
            DeviceSpec("glasses", threads=1, cpus=[0]),
            DeviceSpec("phone", threads=1, cpus=[1]),
            DeviceSpec("cloud", threads=2),
        ],
        [LinkSpec("glasses", "phone", 20.0, 5.0), LinkSpec("phone", "cloud", 100.0, 20.0)],
    )
    session = Session.create(path, analysis, chain, candidates)
    plan = build_plan(analysis.n, candidates, chain.names)
    session.save_plan(plan)
    cum = np.concatenate([[0.0], np.cumsum([nd.flops or 0 for nd in analysis.nodes])])
    scale = 40.0 / cum[-1]
    for it in plan.items:
        ms = ((cum[it.end] - cum[it.start]) * scale + 0.5) * SLOWDOWN[it.device]
        stats = {
            "median": ms,
            "p10": ms * 0.95,
            "p90": ms * 1.05,
            "mean": ms,
            "std": 0.0,
            "rel_ci": 0.01,
            "count": 10,
        }
        session.record_result(
            it.device, it.segment, load_ms=1.0, samples=[ms] * 10, stats=stats, stop="ci"
        )
    for device in chain.names:
        per_node = {
            i: ((nd.flops or 0) * scale + 0.05) * SLOWDOWN[device] * 0.9
            for i, nd in enumerate(analysis.nodes)
        }
        session.record_node_times(device, per_node, runtime="onnxruntime", runs=3)
    return session


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
