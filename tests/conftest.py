"""Shared fixtures: small real models built with onnx.helper, a model cache, devices files."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

ROOT = Path(__file__).resolve().parents[1]
LIGHT = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light"


@pytest.fixture(autouse=True)
def _state_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The recent-sessions index of every test in a folder of its own, never the user's.
    Set by hand, not with `monkeypatch`: a test's own monkeypatch must be undone before
    other autouse fixtures tear down (one that cleans up a lab needs the real PATH)."""
    state = tmp_path_factory.mktemp("state")
    before = os.environ.get("OMDP_STATE_DIR")
    os.environ["OMDP_STATE_DIR"] = str(state)
    try:
        yield state
    finally:
        if before is None:
            os.environ.pop("OMDP_STATE_DIR", None)
        else:
            os.environ["OMDP_STATE_DIR"] = before


def conv_chain(
    channels: int = 8, size: int = 16, blocks: int = 3, seed: int = 0, name: str = "convchain"
) -> onnx.ModelProto:
    """Conv-Relu blocks with a skip connection around each pair of convs (so cuts inside a
    block hold two tensors), then a global pool + Gemm head. Real numerics (random weights)."""
    rng = np.random.default_rng(seed)
    c, inits, nodes = channels, [], []

    def weight(wname: str, shape: list[int]) -> str:
        arr = (rng.standard_normal(shape) / np.sqrt(np.prod(shape[1:]))).astype(np.float32)
        inits.append(helper.make_tensor(wname, TensorProto.FLOAT, shape, arr.ravel()))
        return wname

    x = "input"
    nodes.append(
        helper.make_node(
            "Conv",
            [x, weight("w_stem", [c, 3, 3, 3]), weight("b_stem", [c])],
            ["stem"],
            pads=[1, 1, 1, 1],
            name="stem_conv",
        )
    )
    nodes.append(helper.make_node("Relu", ["stem"], ["stem_act"], name="stem_relu"))
    x = "stem_act"
    for i in range(blocks):
        nodes += [
            helper.make_node(
                "Conv",
                [x, weight(f"w{i}a", [c, c, 3, 3])],
                [f"b{i}_c1"],
                pads=[1, 1, 1, 1],
                name=f"block{i}_conv1",
            ),
            helper.make_node("Relu", [f"b{i}_c1"], [f"b{i}_r1"], name=f"block{i}_relu1"),
            helper.make_node(
                "Conv",
                [f"b{i}_r1", weight(f"w{i}b", [c, c, 3, 3])],
                [f"b{i}_c2"],
                pads=[1, 1, 1, 1],
                name=f"block{i}_conv2",
            ),
            helper.make_node("Add", [f"b{i}_c2", x], [f"b{i}_sum"], name=f"block{i}_add"),
            helper.make_node("Relu", [f"b{i}_sum"], [f"b{i}_out"], name=f"block{i}_relu2"),
        ]
        x = f"b{i}_out"
    nodes += [
        helper.make_node("GlobalAveragePool", [x], ["pooled"], name="pool"),
        helper.make_node("Flatten", ["pooled"], ["flat"], name="flatten"),
        helper.make_node(
            "Gemm",
            ["flat", weight("w_fc", [10, c]), weight("b_fc", [10])],
            ["logits"],
            transB=1,
            name="fc",
        ),
    ]
    graph = helper.make_graph(
        nodes,
        name,
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, size, size])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 10])],
        inits,
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="omdp-tests"
    )
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def relu_int64_model() -> onnx.ModelProto:
    """Conv → Relu → Cast(int64) → Relu(int64) → Cast(float) → Conv. Relu on int64 is valid
    ONNX (opset 14+) and OpenVINO runs it; onnxruntime 1.x has no int64 Relu kernel
    ("Could not find an implementation for Relu(14)"): a real op one runtime lacks."""
    rng = np.random.default_rng(1)
    w = rng.standard_normal((4, 4, 3, 3)).astype(np.float32)
    inits = [helper.make_tensor("w", TensorProto.FLOAT, w.shape, w.ravel())]
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c1"], pads=[1, 1, 1, 1], name="conv1"),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("Cast", ["r1"], ["i1"], to=TensorProto.INT64, name="to_int"),
        helper.make_node("Relu", ["i1"], ["i2"], name="relu_int64"),
        helper.make_node("Cast", ["i2"], ["f2"], to=TensorProto.FLOAT, name="to_float"),
        helper.make_node("Conv", ["f2", "w"], ["y"], pads=[1, 1, 1, 1], name="conv2"),
    ]
    graph = helper.make_graph(
        nodes,
        "relu_int64",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


@pytest.fixture
def tiny_model() -> onnx.ModelProto:
    return conv_chain()


@pytest.fixture
def tiny_model_path(tmp_path: Path) -> Path:
    p = tmp_path / "tiny.onnx"
    onnx.save(conv_chain(), p)
    return p


@pytest.fixture
def medium_model_path(tmp_path: Path) -> Path:
    """A few ms per run: long enough to interrupt a profile mid-way."""
    p = tmp_path / "medium.onnx"
    onnx.save(conv_chain(channels=32, size=48, blocks=3), p)
    return p


@pytest.fixture
def relu_int64_path(tmp_path: Path) -> Path:
    p = tmp_path / "relu_int64.onnx"
    onnx.save(relu_int64_model(), p)
    return p


@pytest.fixture
def squeezenet_path() -> Path:
    p = LIGHT / "light_squeezenet.onnx"
    if not p.exists():
        pytest.skip("onnx wheel without light models")
    return p


@pytest.fixture
def cache_dir(tmp_path: Path, monkeypatch) -> Path:
    d = tmp_path / "cache"
    monkeypatch.setenv("OMDP_CACHE_DIR", str(d))
    return d


def cpus_here() -> list[int]:
    return sorted(os.sched_getaffinity(0))


def three_local_devices(
    runtimes=("onnxruntime", "openvino", "onnxruntime"), pin: bool = True
) -> str:
    """A devices.toml with three local devices; pinned to single CPUs when asked."""
    cpus = cpus_here()
    parts = []
    for i, (name, rt) in enumerate(zip(("glasses", "phone", "cloud"), runtimes, strict=True)):
        parts.append(f'[[device]]\nname = "{name}"\nkind = "local"\nruntime = "{rt}"\n')
        if pin:
            parts.append(f"cpus = [{cpus[i % len(cpus)]}]\n")
        parts.append("\n")
    parts.append(
        '[[link]]\nfrom = "glasses"\nto = "phone"\nbandwidth_mbps = 20\n\n'
        '[[link]]\nfrom = "phone"\nto = "cloud"\nbandwidth_mbps = 100\nlatency_ms = 10\n'
    )
    return "".join(parts)


@pytest.fixture
def devices_file(tmp_path: Path) -> Path:
    p = tmp_path / "devices.toml"
    p.write_text(three_local_devices())
    return p


def omdp_cmd(*args: str) -> list[str]:
    """The headless CLI in a fresh interpreter (what `omdp` runs for these verbs)."""
    return [
        sys.executable,
        "-c",
        "import sys; from backend.cli import main; sys.exit(main(sys.argv[1:]))",
        *args,
    ]


# Helpers as fixtures: tests/ is not a package, so test modules take them from here.


@pytest.fixture
def make_conv_chain():
    return conv_chain


@pytest.fixture
def make_relu_int64():
    return relu_int64_model


@pytest.fixture
def make_devices_text():
    return three_local_devices


@pytest.fixture
def omdp():
    return omdp_cmd
