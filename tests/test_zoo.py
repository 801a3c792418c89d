"""Built-in models: YOLOv5 generated in code and the onnx wheel's light models, folded."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from backend.cli import main
from backend.errors import OmdpError
from backend.model import yolo, zoo
from backend.model.analysis import analyze
from backend.model.parameters import count_parameters

YOLO = ["yolov5n", "yolov5s", "yolov5m", "yolov5l", "yolov5x"]
LIGHT = [
    "resnet50",
    "vgg19",
    "densenet121",
    "inception_v1",
    "inception_v2",
    "squeezenet",
    "shufflenet",
    "alexnet",
    "zfnet512",
]
# Published parameter counts of the fused (BN folded) PyTorch models.
PUBLISHED = [1_867_405, 7_225_885, 21_172_173, 46_533_693, 86_705_005]
SLOW_LIGHT = {"vgg19", "zfnet512", "alexnet"}  # 60–144M weights: seconds to draw and load


def _session(model: onnx.ModelProto, extra_outputs: Sequence[str] = ()) -> ort.InferenceSession:
    if extra_outputs:
        copy = onnx.ModelProto()
        copy.CopyFrom(model)
        copy.graph.output.extend(onnx.ValueInfoProto(name=n) for n in extra_outputs)
        model = copy
    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(
        model.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )


def _initializer_elements(model: onnx.ModelProto) -> int:
    return sum(math.prod(t.dims) for t in model.graph.initializer)


def _rms(a: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(a, dtype=np.float64))))


@pytest.fixture(scope="module")
def yolov5n() -> onnx.ModelProto:
    return zoo.build("yolov5n")


# -- catalogue --------------------------------------------------------------------------------


def test_list_models_names_families_and_shapes():
    entries = zoo.list_models()
    assert [e.name for e in entries] == YOLO + LIGHT
    assert {e.family for e in entries if e.name in YOLO} == {"yolov5"}
    assert {e.family for e in entries if e.name in LIGHT} == {"light"}
    assert all(e.input_shape == (1, 3, 640, 640) for e in entries if e.family == "yolov5")
    for e in entries:  # the advertised input shape is the model's (shipped files are cheap)
        if e.family == "light":
            model = zoo.build(e.name, fold=False)
            inits = {t.name for t in model.graph.initializer}
            (real,) = [i for i in model.graph.input if i.name not in inits]
            dims = tuple(d.dim_value for d in real.type.tensor_type.shape.dim)
            assert dims == e.input_shape, e.name


def test_unknown_name_lists_the_valid_ones(tmp_path):
    with pytest.raises(OmdpError) as err:
        zoo.build("yolov9")
    assert "unknown built-in model 'yolov9'" in str(err.value)
    assert all(name in err.value.fix for name in YOLO + LIGHT)
    with pytest.raises(OmdpError):
        zoo.build_to("resnet", tmp_path / "r.onnx")
    assert not (tmp_path / "r.onnx").exists()


# -- YOLOv5 -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, expected",
    [
        pytest.param(
            n, c, marks=[pytest.mark.slow] if n in ("yolov5m", "yolov5l", "yolov5x") else []
        )
        for n, c in zip(YOLO, PUBLISHED, strict=True)
    ],
)
def test_yolov5_initializers_are_exactly_the_parameters(name, expected):
    model = zoo.build(name)
    assert _initializer_elements(model) == expected == yolo.PARAMETERS[name]
    assert zoo.parameter_count(name) == expected  # structure-only count agrees
    assert {t.data_type for t in model.graph.initializer} == {TensorProto.FLOAT}
    # grids and anchors are Constant nodes, as torch's exporter emits traced tensors
    constants = {n.name for n in model.graph.node if n.op_type == "Constant"}
    assert {f"model.24.{i}.{k}" for i in range(3) for k in ("grid", "anchor_grid")} <= constants


def test_yolov5n_is_valid_and_shaped_like_the_ultralytics_export(yolov5n):
    onnx.checker.check_model(yolov5n, full_check=True)
    opsets = list(yolov5n.opset_import)
    assert [(o.domain, o.version) for o in opsets] == [("", 17)]
    assert yolov5n.ir_version == helper.find_min_ir_version_for(opsets)
    (inp,), (out,) = yolov5n.graph.input, yolov5n.graph.output
    assert inp.name == "images" and out.name == "output0"
    names = [n.name for n in yolov5n.graph.node]
    assert len(names) == len(set(names)) and all(names)
    ops = [n.op_type for n in yolov5n.graph.node]
    assert ops.count("Conv") == 60  # 57 Conv blocks + 3 Detect convs
    assert ops.count("Sigmoid") == 57 + 3 and ops.count("MaxPool") == 3
    assert ops.count("Resize") == 2 and ops.count("Split") == 3 and ops.count("Pow") == 3
    # Bottleneck shortcuts in the backbone's C3 blocks only: 1 + 2 + 3 + 1 for n
    assert ops.count("Add") == 7 + 3  # + the grid additions of the three Detect levels


def test_yolov5n_runs_with_detections_decoded_as_ultralytics_does(yolov5n):
    raw = [f"model.24.m.{i}_out" for i in range(3)]
    session = _session(yolov5n, raw)
    x = np.random.default_rng(0).random((1, 3, 640, 640), dtype=np.float32)
    out, *levels = session.run(None, {"images": x})
    assert out.shape == (1, 25200, 85) and np.isfinite(out).all()

    expected = []
    for level, stride, anchors in zip(levels, yolo.STRIDES, yolo.ANCHORS, strict=True):
        ny = nx = 640 // stride
        y = level.reshape(1, 3, 85, ny, nx).transpose(0, 1, 3, 4, 2)
        y = 1 / (1 + np.exp(-y.astype(np.float64)))
        gy, gx = np.meshgrid(np.arange(ny), np.arange(nx), indexing="ij")
        grid = np.stack((gx, gy), -1)[None, None] - 0.5
        anchor = np.array(anchors, dtype=np.float64).reshape(1, 3, 1, 1, 2)
        xy = (y[..., :2] * 2 + grid) * stride
        wh = (y[..., 2:4] * 2) ** 2 * anchor
        expected.append(np.concatenate([xy, wh, y[..., 4:]], -1).reshape(1, -1, 85))
    np.testing.assert_allclose(out, np.concatenate(expected, 1), rtol=1e-4, atol=1e-3)
    # boxes land on the image, confidences start low like an initialised ultralytics model
    assert out[0, :, 0].min() >= -16 and out[0, :, 0].max() <= 656
    assert 0 < out[0, :, 4].mean() < 0.1


def test_yolov5n_activations_stay_order_one(yolov5n):
    convs = [
        n.output[0]
        for n in yolov5n.graph.node
        if n.op_type == "Conv" and not n.name.startswith("model.24")
    ]
    session = _session(yolov5n, convs)
    for seed in (1, 2):  # inputs the calibration never saw
        x = np.random.default_rng(seed).random((1, 3, 640, 640), dtype=np.float32)
        rms = [_rms(a) for a in session.run(convs, {"images": x})]
        assert min(rms) > 1.0 and max(rms) < 10.0, (min(rms), max(rms))


def test_yolov5_weights_follow_the_seed(yolov5n):
    """A (name, seed) pair is one model byte for byte: sessions resume by rebuilding it."""
    a, b = zoo.build("yolov5n", seed=1), zoo.build("yolov5n", seed=1)
    assert a.SerializeToString() == b.SerializeToString()
    assert a.graph.initializer[0].raw_data != yolov5n.graph.initializer[0].raw_data


@pytest.mark.parametrize(
    "name, convs, shortcuts",
    # Bottlenecks per backbone C3 = max(round(n·depth), 1) for n = 3, 6, 9, 3; the head's C3
    # blocks (3 each) have no shortcut.
    [
        ("yolov5n", 57, 7),
        ("yolov5s", 57, 7),
        ("yolov5m", 79, 14),
        ("yolov5l", 101, 21),
        ("yolov5x", 123, 28),
    ],
)
def test_yolov5_depth_follows_the_depth_multiple(name, convs, shortcuts):
    nodes = yolo._build(yolo.VARIANTS[name], None).nodes  # structure only: no weights drawn
    ops = [n.op_type for n in nodes]
    assert ops.count("Conv") == convs + 3
    assert sum(1 for n in nodes if n.op_type == "Add" and n.name.endswith(".add")) == shortcuts


# -- light models -----------------------------------------------------------------------------


def _softmax_input(model: onnx.ModelProto) -> str | None:
    softmax = [n for n in model.graph.node if n.op_type == "Softmax"]
    return softmax[-1].input[0] if softmax else None


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=[pytest.mark.slow] if n in SLOW_LIGHT else []) for n in LIGHT]
)
def test_light_model_folds_into_a_valid_model_with_sane_numerics(name):
    model = zoo.build(name, seed=0)
    onnx.checker.check_model(model, full_check=True)
    g = model.graph
    assert model.ir_version >= 4
    assert not any(n.op_type == "ConstantOfShape" for n in g.node)
    inits = {t.name for t in g.initializer}
    assert not inits & {i.name for i in g.input}  # initializers are not inputs any more
    used = {i for n in g.node for i in n.input}
    assert inits <= used  # the shape tensors went with their ConstantOfShape nodes
    assert count_parameters(model.graph.initializer) == zoo.parameter_count(name)
    (inp,) = g.input
    assert tuple(d.dim_value for d in inp.type.tensor_type.shape.dim) == zoo.entry(name).input_shape

    logits = _softmax_input(model)
    session = _session(model, [logits] if logits else [])
    x = np.random.default_rng(0).random(zoo.entry(name).input_shape, dtype=np.float32)
    out, *rest = session.run(None, {inp.name: x})
    assert np.isfinite(out).all() and out.std() < 1e3
    if rest:  # what reaches the softmax: neither exploding nor vanished
        assert 1e-2 < _rms(rest[0]) < 1e2, _rms(rest[0])
        assert out.max() < 0.99  # the softmax is not saturated into one class


def test_fold_false_is_the_shipped_file():
    model = zoo.build("squeezenet", fold=False)
    shipped = onnx.load(str(zoo.LIGHT_DIR / "light_squeezenet.onnx"))
    assert model.SerializeToString() == shipped.SerializeToString()
    assert model.ir_version == 3 and any(n.op_type == "ConstantOfShape" for n in model.graph.node)


def test_fold_is_seeded_and_redraws_trained_leftovers():
    a, b, c = (zoo.build("squeezenet", seed=s) for s in (5, 5, 6))
    weights = lambda m: {t.name: numpy_helper.to_array(t) for t in m.graph.initializer}  # noqa: E731
    wa, wb, wc = weights(a), weights(b), weights(c)
    assert wa.keys() == wb.keys() == wc.keys()
    assert all(np.array_equal(wa[k], wb[k]) for k in wa)
    assert not np.array_equal(wa["conv1_w_0"], wc["conv1_w_0"])
    # conv weights He-scaled by fan-in (3·3·3 for conv1), not the placeholder 0.02
    assert wa["conv1_w_0"].shape == (64, 3, 3, 3)
    assert wa["conv1_w_0"].std() == pytest.approx(math.sqrt(2 / (3 * 3 * 3)), rel=0.1)
    # the shipped biases were trained for other weights: redrawn small
    assert np.abs(wa["conv1_b_0"]).max() < 0.1


def test_fold_handles_constant_node_shapes_and_leaves_dynamic_ones():
    """ConstantOfShape fed by a Constant node folds (and the Constant goes); one whose shape is
    computed at run time stays."""
    shape = numpy_helper.from_array(np.array([4, 3, 3, 3], dtype=np.int64))
    fill = numpy_helper.from_array(np.array([0.02], dtype=np.float32))
    nodes = [
        helper.make_node("Constant", [], ["w_shape"], value=shape),
        helper.make_node("ConstantOfShape", ["w_shape"], ["w"], value=fill),
        helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["y"], ["r"]),
        helper.make_node("Shape", ["r"], ["r_shape"]),
        helper.make_node("ConstantOfShape", ["r_shape"], ["ones"], value=fill),
        helper.make_node("Add", ["r", "ones"], ["z"]),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, [1, 4, 8, 8])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=7)
    folded = zoo.fold_constant_weights(model, seed=0)
    onnx.checker.check_model(folded, full_check=True)
    assert [n.op_type for n in folded.graph.node] == [
        "Conv",
        "Relu",
        "Shape",
        "ConstantOfShape",
        "Add",
    ]
    (w,) = folded.graph.initializer
    assert w.name == "w" and list(w.dims) == [4, 3, 3, 3]
    x = np.ones((1, 3, 8, 8), np.float32)
    assert np.isfinite(_session(folded).run(None, {"x": x})[0]).all()


# -- saving -----------------------------------------------------------------------------------


def test_build_to_writes_a_loadable_model(tmp_path):
    path = zoo.build_to("shufflenet", tmp_path / "s.onnx", seed=2)
    assert path == tmp_path / "s.onnx"
    assert not zoo.external_data_path(path).exists()
    loaded = onnx.load(str(path))
    assert count_parameters(loaded.graph.initializer) == zoo.parameter_count("shufflenet")


def test_models_over_the_protobuf_limit_go_to_external_data(tmp_path, monkeypatch):
    monkeypatch.setattr(zoo, "PROTOBUF_LIMIT", 1024)  # pretend squeezenet is 2 GiB
    model = zoo.build("squeezenet")
    path = zoo.build_to("squeezenet", tmp_path / "big.onnx")
    data = tmp_path / "big.onnx.data"
    assert data.stat().st_size > 4 * 1_000_000 > path.stat().st_size
    size = data.stat().st_size
    zoo.build_to("squeezenet", path)  # a rebuild replaces the data file, never grows it
    assert data.stat().st_size == size
    x = np.random.default_rng(0).random((1, 3, 224, 224), dtype=np.float32)
    options = ort.SessionOptions()
    options.log_severity_level = 3
    from_file = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(
        from_file.run(None, {"data_0": x})[0],
        _session(model).run(None, {"data_0": x})[0],
        rtol=1e-5,
        atol=1e-7,
    )


@pytest.mark.parametrize("bad", ["missing/dir/m.onnx", "."])
def test_build_to_rejects_unusable_paths(tmp_path, bad):
    with pytest.raises(OmdpError) as err:
        zoo.build_to("yolov5n", tmp_path / bad)
    assert err.value.fix


@pytest.mark.parametrize("name", ["yolov5n", "squeezenet", "inception_v1"])
def test_parameters_mean_the_same_in_zoo_list_and_inspect(name):
    assert analyze(name).parameters == zoo.parameter_count(name)


# -- CLI --------------------------------------------------------------------------------------


def test_cli_zoo_list_json(capsys):
    assert main(["zoo", "list", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    by_name = {r["name"]: r for r in rows}
    assert list(by_name) == YOLO + LIGHT
    assert by_name["yolov5n"] == {
        "name": "yolov5n",
        "family": "yolov5",
        "input_shape": [1, 3, 640, 640],
        "parameters": 1_867_405,
        "description": by_name["yolov5n"]["description"],
    }
    assert by_name["resnet50"]["parameters"] == 25_610_152  # ResNet-50's well-known 25.6M
    assert by_name["vgg19"]["parameters"] == 143_667_240


def test_cli_zoo_list_table(capsys):
    assert main(["zoo", "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["name", "family", "input", "params", "description"]
    assert len(lines) == 2 + len(YOLO) + len(LIGHT)
    assert lines[2].split()[:4] == ["yolov5n", "yolov5", "1×3×640×640", "1.87M"]
    col = lines[0].index("params") + len("params")  # right-aligned counts end in one column
    assert all(line[col - 1] == "M" for line in lines[2:])


def test_cli_zoo_build(tmp_path, capsys):
    out = tmp_path / "n.onnx"
    assert main(["zoo", "build", "yolov5n", "-o", str(out), "--seed", "3", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["path"] == str(out) and result["bytes"] == out.stat().st_size
    assert result["parameters"] == 1_867_405 and result["external_data"] is None
    assert result["seed"] == 3 and result["fold"] is True
    onnx.checker.check_model(str(out))

    assert main(["zoo", "build", "alexnet", "-o", str(tmp_path / "a.onnx"), "--no-fold"]) == 0
    text = capsys.readouterr().out
    assert text.startswith(f"wrote {tmp_path / 'a.onnx'}: ") and "seed 0" in text
    assert onnx.load(str(tmp_path / "a.onnx")).ir_version == 3


@pytest.mark.parametrize(
    "argv, message",
    [
        (["zoo", "build", "yolo", "-o", "{tmp}/y.onnx"], "unknown built-in model 'yolo'"),
        (["zoo", "build", "yolov5n", "-o", "{tmp}/no/such/dir/y.onnx"], "does not exist"),
        (["zoo", "build", "yolov5n", "-o", "{tmp}"], "is a directory"),
    ],
)
def test_cli_zoo_build_errors_are_one_line_exit_2(tmp_path, capsys, argv, message):
    argv = [a.format(tmp=tmp_path) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and " — " in err
    assert list(Path(tmp_path).iterdir()) == []
