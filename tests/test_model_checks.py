"""The checks every model passes at load: valid models of every shape pass, broken ones are
named precisely, and big weights are measured without being read."""

from __future__ import annotations

import tracemalloc

import numpy as np
import onnx
import pytest
from models import LIGHT, dynamic_head_model, skip_model
from onnx import TensorProto, helper, numpy_helper

from backend.device.segments import LAZY_THRESHOLD, load_lazy
from backend.errors import OmdpError
from backend.model.analysis import analyze
from backend.model.checks import _raw_data_length, checker_message
from backend.text import shown


@pytest.mark.parametrize("path", sorted(LIGHT.glob("light_*.onnx")), ids=lambda p: p.stem)
def test_the_onnx_wheels_models_pass_as_shipped(path):
    """IR 3 files with initializers listed as inputs, ConstantOfShape weights."""
    assert analyze(path).n > 0


def test_valid_unusual_models_pass():
    m = skip_model()
    nodes = list(m.graph.node)
    del m.graph.node[:]
    m.graph.node.extend(reversed(nodes))  # not sorted: ONNX requires it, the tool sorts
    assert analyze(m).n == 9
    assert analyze(dynamic_head_model(), {"x": [1, 4, 5, 7]}).n == 18
    nodes = [
        helper.make_node("Relu", ["x"], ["a"], name="r1"),
        helper.make_node("Fused", ["a"], ["y"], name="custom", domain="com.example"),
    ]
    g = helper.make_graph(
        nodes,
        "custom",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
    )
    custom = helper.make_model(
        g, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.example", 1)]
    )
    a = analyze(custom)  # a declared custom domain is what runtimes' contrib ops use
    assert a.cuts[2].unknown == ("y",)


def _weights_model(*sizes: int) -> onnx.ModelProto:
    """Identity outputs of float32 initializers of the given element counts."""
    inits = [
        numpy_helper.from_array(np.arange(n, dtype=np.float32), f"w{i}")
        for i, n in enumerate(sizes)
    ]
    nodes = [helper.make_node("Identity", [t.name], [f"y{i}"]) for i, t in enumerate(inits)]
    g = helper.make_graph(
        nodes,
        "weights",
        [],
        [
            helper.make_tensor_value_info(f"y{i}", TensorProto.FLOAT, [n])
            for i, n in enumerate(sizes)
        ],
        inits,
    )
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def test_data_left_in_the_file_is_measured_exactly(tmp_path):
    """Sizes either side of where protobuf's length prefix grows a byte (2^14, 2^21)."""
    sizes = [100, 2**12 - 3, 2**12, 2**12 + 5, 2**19 - 1, 2**19, 2**19 + 1]
    path = tmp_path / "w.onnx"
    onnx.save(_weights_model(*sizes), path)
    model, lazy = load_lazy(str(path))
    assert len(lazy.fields) == len(sizes) - 1  # all but the first are left in the file
    for t, n in zip(model.graph.initializer, sizes, strict=True):
        assert _raw_data_length(t, lazy) == 4 * n
    assert analyze(path).parameters == sum(sizes)


def test_checks_do_not_read_big_weights(tmp_path):
    path = tmp_path / "big.onnx"
    onnx.save(_weights_model(4_000_000, 2_000_000), path)  # 24 MB of weights
    analyze(path)
    tracemalloc.start()
    try:
        analyze(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4_000_000


def test_short_data_left_in_the_file_is_found(tmp_path):
    m = _weights_model(3000)
    t = m.graph.initializer[0]
    t.raw_data = t.raw_data[:-12]
    assert len(t.SerializeToString()) > LAZY_THRESHOLD
    path = tmp_path / "short.onnx"
    onnx.save(m, path)
    with pytest.raises(
        OmdpError,
        match=r"'w0' holds 11,988 bytes of data but its dims 3000 "
        r"\(float\) need 12,000",
    ):
        analyze(path)


def test_messages_name_both_producers_and_quote_names_inertly():
    m = skip_model()
    m.graph.node[1].output[0] = "c1"
    m.graph.node[0].name = "conv\x1b[31m1\nnext"
    with pytest.raises(OmdpError) as err:
        analyze(m)
    text = str(err.value)
    assert (
        "produced by two nodes: node 0 'conv\\x1b[31m1\\x0anext' (Conv) and node 1 "
        "'relu1' (Relu)" in text
    )
    assert "\n" not in text and "\x1b" not in text


def test_shown_cuts_long_names():
    assert shown("x" * 100) == "'" + "x" * 80 + "…'"
    assert shown("tab\there") == "'tab\\x09here'"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (
            "[ShapeInferenceError] Inference error(s): (op_type:Conv, node name: conv1): "
            "[TypeInferenceError] Element type of input 0 unknown (op_type:Relu, node name: r): x",
            "node 'conv1' (Conv): Element type of input 0 unknown",
        ),
        (
            "[ShapeInferenceError] Inference error(s): (op_type:MatMul): [ShapeInferenceError] "
            "Incompatible dimensions for matrix multiplication",
            "a MatMul node: Incompatible dimensions for matrix multiplication",
        ),
        (
            "No Op registered for Frobnicate with domain_version of 17\n\n==> Context: Bad node "
            "spec for node. Name: relu1 OpType: Frobnicate",
            "No Op registered for Frobnicate with domain_version of 17 (node 'relu1', Frobnicate)",
        ),
    ],
)
def test_checker_messages_become_one_line(raw, expected):
    assert checker_message(Exception(raw)) == expected


def test_a_huge_input_shape_is_refused_before_anything_allocates():
    m = skip_model(symbolic=True)
    with pytest.raises(OmdpError, match=r"tensor '\w+' is .* over the 1 TiB"):
        analyze(m, {"x": [2**31 - 1, 3, 8, 8]})


def test_in_memory_models_are_checked_too():
    m = skip_model()
    m.graph.initializer[0].dims[0] = 5
    with pytest.raises(OmdpError, match=r"^the model: invalid model: initializer 'w1' holds"):
        analyze(m)
    with pytest.raises(OmdpError, match="opset 999"):
        analyze(helper.make_model(skip_model().graph, opset_imports=[helper.make_opsetid("", 999)]))
