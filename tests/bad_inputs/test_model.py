"""Bad models and bad arguments for the model verbs (inspect, cuts, extract, zoo).

Every kind of broken ONNX file is built in code, then given to each verb that reads a
model: each must be refused with one line that says what is wrong and where, exit 2, and
nothing written. The argument mistakes follow, each against a valid model.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import pytest
from models import light, read_only_folder, skip_model
from onnx import TensorProto, helper, numpy_helper

from .harness import expect_rejected

# -- broken models: each function edits a valid model (or writes a broken file) --------------


def _save(m: onnx.ModelProto, folder: Path, name: str = "bad.onnx") -> Path:
    path = folder / name
    path.write_bytes(m.SerializeToString())
    return path


def _edit(fn: Callable[[onnx.ModelProto], object]) -> Callable[[Path], Path]:
    def make(folder: Path) -> Path:
        m = skip_model()
        fn(m)
        return _save(m, folder)

    return make


def _dim(vi: onnx.ValueInfoProto, axis: int, value: int) -> None:
    vi.type.tensor_type.shape.dim[axis].dim_value = value


def _declare(m: onnx.ModelProto, index: int, dims: list[int], elem: int = TensorProto.FLOAT):
    out = m.graph.output[index]
    out.type.CopyFrom(helper.make_tensor_type_proto(elem, dims))


def _matmul_model(a: list[int], b: list[int]) -> onnx.ModelProto:
    w = numpy_helper.from_array(np.zeros(b, np.float32), "w")
    g = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")],
        "mm",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, a)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [w],
    )
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def _mismatched_matmul(folder: Path) -> Path:
    return _save(_matmul_model([1, 256], [300, 64]), folder)


def _big_weights(folder: Path, cut: int = 0, grow: int = 0) -> Path:
    """MatMul with a 64 KiB weight: over the size the loader leaves in the file."""
    m = _matmul_model([1, 256], [256, 64])
    t = m.graph.initializer[0]
    if grow:
        t.dims[0] += grow
    if cut:
        t.raw_data = t.raw_data[:-cut]
    return _save(m, folder)


def _no_data(m: onnx.ModelProto) -> None:
    t = m.graph.initializer[2]  # w3 of the Gemm
    t.ClearField("raw_data")
    del t.dims[:]
    t.dims.extend([10**5, 10**10])  # "10^15 parameters" with no bytes behind them


def _typed_short(m: onnx.ModelProto) -> None:
    t = m.graph.initializer[0]
    values = numpy_helper.to_array(t).ravel().tolist()
    t.ClearField("raw_data")
    t.float_data.extend(values[:-1])


def _two_fields(m: onnx.ModelProto) -> None:
    m.graph.initializer[0].float_data.extend([1.0])


def _unsorted_cycle(m: onnx.ModelProto) -> None:
    m.graph.node[0].input[0] = "y"  # conv1 reads fc's output: a loop


def _empty_graph(m: onnx.ModelProto) -> None:
    del m.graph.node[:]


def _no_outputs(m: onnx.ModelProto) -> None:
    del m.graph.output[:]


def _duplicate_opset(m: onnx.ModelProto) -> None:
    m.opset_import.append(helper.make_opsetid("", 13))


def _if_with_unknown_tensor(m: onnx.ModelProto) -> None:
    then = helper.make_graph(
        [helper.make_node("Identity", ["nowhere"], ["t"])],
        "then",
        [],
        [helper.make_tensor_value_info("t", TensorProto.FLOAT, None)],
    )
    cond = numpy_helper.from_array(np.array(True), "cond")
    m.graph.initializer.append(cond)
    m.graph.node.append(
        helper.make_node("If", ["cond"], ["branch"], name="if", then_branch=then, else_branch=then)
    )
    m.graph.output.append(helper.make_tensor_value_info("branch", TensorProto.FLOAT, None))


def _external(folder: Path, edit: Callable[[onnx.TensorProto, Path], object]) -> Path:
    """The model with its weights in `w.bin` next to it, then `edit(tensor, folder)`."""
    path = folder / "ext.onnx"
    onnx.save(
        skip_model(),
        path,
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location="w.bin",
        size_threshold=0,
    )
    m = onnx.load(path, load_external_data=False)
    edit(next(t for t in m.graph.initializer if t.name == "w1"), folder)
    path.write_bytes(m.SerializeToString())
    return path


def _set_external(key: str, value: str) -> Callable[[onnx.TensorProto, Path], None]:
    def edit(t: onnx.TensorProto, folder: Path) -> None:
        entry = next((e for e in t.external_data if e.key == key), None)
        if entry is None:
            entry = t.external_data.add(key=key)
        entry.value = value

    return edit


def _symlink_loop(folder: Path) -> Path:
    path = folder / "loop.onnx"
    os.symlink(path.name, path)
    return path


def _fifo(folder: Path) -> Path:
    path = folder / "pipe.onnx"
    os.mkfifo(path)
    return path


def _write(name: str, data: bytes) -> Callable[[Path], Path]:
    def make(folder: Path) -> Path:
        (folder / name).write_bytes(data)
        return folder / name

    return make


def _truncated(folder: Path) -> Path:
    data = light("squeezenet").read_bytes()
    return _write("truncated.onnx", data[: len(data) // 3])(folder)


def _text_graph(folder: Path) -> Path:
    return _write("text.onnx", onnx.printer.to_text(skip_model()).encode())(folder)


BAD_MODELS: dict[str, tuple[Callable[[Path], Path], str]] = {
    # structure
    "two nodes produce one tensor": (
        _edit(lambda m: m.graph.node[1].output.__setitem__(0, "c1")),
        "produced by two nodes",
    ),
    "node output is an initializer": (
        _edit(lambda m: m.graph.node[1].output.__setitem__(0, "w2")),
        "is an initializer",
    ),
    "node output is a graph input": (
        _edit(lambda m: m.graph.node[1].output.__setitem__(0, "x")),
        "is a graph input",
    ),
    "output nothing produces": (
        _edit(
            lambda m: m.graph.output.append(
                helper.make_tensor_value_info("ghost", TensorProto.FLOAT, [1])
            )
        ),
        "graph output 'ghost' is produced by no node",
    ),
    "dangling node input": (
        _edit(lambda m: m.graph.node[1].input.__setitem__(0, "nowhere")),
        "tensor 'nowhere' used by node",
    ),
    "cycle": (_edit(_unsorted_cycle), "cycle"),
    "empty graph": (_edit(_empty_graph), "no graph"),
    "no outputs": (_edit(_no_outputs), "no outputs"),
    "duplicate initializer": (
        _edit(lambda m: m.graph.initializer.append(m.graph.initializer[0])),
        "initializer 'w1' is defined twice",
    ),
    "duplicate graph input": (
        _edit(lambda m: m.graph.input.append(m.graph.input[0])),
        "input 'x' is declared twice",
    ),
    "duplicate graph output": (
        _edit(lambda m: m.graph.output.append(m.graph.output[0])),
        "output 'y' is declared twice",
    ),
    "duplicate node name": (
        _edit(lambda m: setattr(m.graph.node[2], "name", "conv1")),
        "have the same name",
    ),
    "unnamed initializer": (
        _edit(lambda m: setattr(m.graph.initializer[0], "name", "")),
        "has no name",
    ),
    "unnamed output": (_edit(lambda m: setattr(m.graph.output[0], "name", "")), "has no name"),
    "subgraph reads an unknown tensor": (_edit(_if_with_unknown_tensor), "nowhere"),
    # versions and operators
    "opset 999": (_edit(lambda m: setattr(m.opset_import[0], "version", 999)), "opset 999"),
    "opset 0": (_edit(lambda m: setattr(m.opset_import[0], "version", 0)), "opset 0"),
    "opset imported twice": (_edit(_duplicate_opset), "imported twice"),
    "no opset": (_edit(lambda m: m.ClearField("opset_import")), "opset"),
    "IR version 99": (_edit(lambda m: setattr(m, "ir_version", 99)), "IR version 99"),
    "IR version missing": (_edit(lambda m: m.ClearField("ir_version")), "IR version 0"),
    "unknown operator": (
        _edit(lambda m: setattr(m.graph.node[1], "op_type", "Frobnicate")),
        "Frobnicate",
    ),
    "undeclared operator domain": (
        _edit(lambda m: setattr(m.graph.node[1], "domain", "com.example")),
        "com.example",
    ),
    "empty operator type": (_edit(lambda m: setattr(m.graph.node[1], "op_type", "")), "relu1"),
    # shapes
    "negative input dim": (_edit(lambda m: _dim(m.graph.input[0], 1, -16)), "negative dim -16"),
    "negative initializer dim": (
        _edit(lambda m: m.graph.initializer[0].dims.__setitem__(0, -4)),
        "negative dim -4",
    ),
    "huge input dim": (_edit(lambda m: _dim(m.graph.input[0], 2, 10**12)), "on axis 2"),
    "absurd input size": (
        _edit(lambda m: [_dim(m.graph.input[0], a, 2**30) for a in (2, 3)]),
        "TiB",
    ),
    "zero-size input": (_edit(lambda m: _dim(m.graph.input[0], 1, 0)), "size 0 on axis 1"),
    "zero-size output": (_edit(lambda m: _declare(m, 0, [0, 10])), "size 0 on axis 0"),
    "output shape the graph contradicts": (_edit(lambda m: _declare(m, 0, [1, 11])), "(11)"),
    "output type the graph contradicts": (
        _edit(lambda m: _declare(m, 0, [1, 10], TensorProto.INT32)),
        "elem type",
    ),
    "input without element type": (
        _edit(lambda m: setattr(m.graph.input[0].type.tensor_type, "elem_type", 0)),
        "input 'x' has no element type",
    ),
    "mismatched MatMul": (_mismatched_matmul, "Incompatible dimensions"),
    "mismatched Gemm weight": (
        _edit(lambda m: m.graph.initializer[2].dims.__setitem__(1, 65)),
        "'w3'",
    ),
    # initializer data
    "initializer without data": (_edit(_no_data), "'w3' has no data"),
    "initializer data short": (
        _edit(
            lambda m: setattr(
                m.graph.initializer[0], "raw_data", m.graph.initializer[0].raw_data[:-4]
            )
        ),
        "holds 428 bytes",
    ),
    "initializer data long": (
        _edit(
            lambda m: setattr(
                m.graph.initializer[0], "raw_data", m.graph.initializer[0].raw_data + b"\0" * 8
            )
        ),
        "holds 440 bytes",
    ),
    "typed data short": (_edit(_typed_short), "holds 107 values"),
    "data in two fields": (_edit(_two_fields), "several fields"),
    "undefined element type": (
        _edit(lambda m: setattr(m.graph.initializer[0], "data_type", 0)),
        "element type",
    ),
    "unknown element type": (
        _edit(lambda m: setattr(m.graph.initializer[0], "data_type", 977)),
        "(977)",
    ),
    "big weight in the file, data short": (
        lambda f: _big_weights(f, cut=100),
        "holds 65,436 bytes",
    ),
    "big weight in the file, dims larger than data": (
        lambda f: _big_weights(f, grow=1),
        "need 65,792",
    ),
    # external data
    "external data missing": (
        lambda f: _external(f, lambda t, folder: (folder / "w.bin").unlink()),
        "w.bin",
    ),
    "external data outside the folder": (
        lambda f: _external(f, _set_external("location", "../w.bin")),
        "outside",
    ),
    "external data at an absolute path": (
        lambda f: _external(f, _set_external("location", "/etc/hostname")),
        "absolute",
    ),
    "external data beyond the file": (
        lambda f: _external(f, _set_external("offset", "99999999")),
        "exceeds",
    ),
    "external data negative offset": (
        lambda f: _external(f, _set_external("offset", "-8")),
        "non-negative",
    ),
    "external data offset not a number": (
        lambda f: _external(f, _set_external("offset", "abc")),
        "external data",
    ),
    "external data shorter than dims": (
        lambda f: _external(f, _set_external("length", "8")),
        "holds 8 bytes",
    ),
    # not a model at all
    "missing file": (lambda f: f / "nope.onnx", "no such file"),
    "directory": (lambda f: f, "is a directory"),
    "symlink loop": (_symlink_loop, "symbolic links"),
    "named pipe": (_fifo, "not a regular file"),
    "empty file": (_write("empty.onnx", b""), "is empty"),
    "truncated protobuf": (_truncated, "not a readable ONNX model"),
    "text file": (_write("notes.onnx", b"these are my notes, not a model\n"), "not"),
    "ONNX text format": (_text_graph, "not"),
    "random bytes": (_write("noise.onnx", np.random.default_rng(1).bytes(5000)), "not"),
    "JSON": (_write("model.json", b'{"graph": {"node": []}}'), "not"),
}

VERBS = {
    "inspect": lambda model, out: ["inspect", model],
    "cuts": lambda model, out: ["cuts", model, "--top", "2"],
    "extract": lambda model, out: [
        "extract",
        model,
        "--from",
        "0",
        "--to",
        "2",
        "-o",
        out / "seg.onnx",
    ],
}


@pytest.mark.parametrize("verb", VERBS)
@pytest.mark.parametrize("case", BAD_MODELS)
def test_bad_model_is_refused_by_every_verb(capsys, tmp_path, case, verb):
    folder, out = tmp_path / "in", tmp_path / "out"
    folder.mkdir()
    out.mkdir()
    make, expected = BAD_MODELS[case]
    model = make(folder)
    expect_rejected(capsys, VERBS[verb](model, out), watch=[folder, out], contains=expected)


# -- argument mistakes with a valid model -----------------------------------------------------


@pytest.fixture
def files(tmp_path):
    folder, out = tmp_path / "in", tmp_path / "out"
    folder.mkdir()
    out.mkdir()
    onnx.save(skip_model(), folder / "skip.onnx")
    onnx.save(skip_model(symbolic=True), folder / "sym.onnx")
    (folder / "plain.txt").write_text("a file, not a folder\n")
    return folder, out


SHAPE_MISTAKES = [
    (["x"], "bad --input-shape"),
    (["x="], "bad --input-shape"),
    (["=1,3,8,8"], "bad --input-shape"),
    (["x=1,a,8,8"], "bad --input-shape"),
    (["x=1,,8,8"], "bad --input-shape"),
    (["x=0,3,8,8"], "bad --input-shape"),
    (["x=-1,3,8,8"], "bad --input-shape"),
    (["x=1.5,3,8,8"], "bad --input-shape"),
    (["x=1e3,3,8,8"], "bad --input-shape"),
    (["x=99999999999999999999,3,8,8"], "bad --input-shape"),
    (["x=1;3;8;8"], "bad --input-shape"),
    (["x=١,3,8,8"], "bad --input-shape"),  # an Arabic-Indic one is a digit to int()
    (["x=1,3,8,8", "x=2,3,8,8"], "twice"),
    (["images=1,3,8,8"], "not a model input"),
    (["x=1,3,8"], "has 4 dims"),
    (["x=1,4,8,8"], "fixed size 3 on axis 1"),
    (["x=2000000000,3,8,8"], "TiB"),
    ([], "symbolic dims"),
]


@pytest.mark.parametrize("verb", ["inspect", "cuts"])
@pytest.mark.parametrize(("shapes", "expected"), SHAPE_MISTAKES)
def test_bad_input_shape(capsys, files, verb, shapes, expected):
    folder, out = files
    args = [verb, folder / "sym.onnx"] + [a for s in shapes for a in ("--input-shape", s)]
    expect_rejected(capsys, args, watch=[folder, out], contains=expected)


@pytest.mark.parametrize(
    ("top", "expected"),
    [
        ("0", "no candidates"),
        ("-3", "no candidates"),
        ("abc", "invalid int"),
        ("1.5", "invalid int"),
        ("", "invalid int"),
    ],
)
def test_bad_top(capsys, files, top, expected):
    folder, out = files
    expect_rejected(
        capsys,
        ["cuts", folder / "skip.onnx", f"--top={top}"],
        watch=[folder, out],
        contains=expected,
    )


POSITION_MISTAKES = [
    (["--from", "0", "--to", "99"], "position 99 is out of range"),
    (["--from=-1", "--to", "3"], "position -1 is out of range"),
    (["--from=--3", "--to", "3"], "no node or tensor named '--3'"),
    (["--from", "99999999999999999999999", "--to", "3"], "out of range"),
    (["--from", "9" * 5000, "--to", "3"], "out of range"),
    (["--from", "6", "--to", "2"], "--from 6 is after --to 2"),
    (["--from", "conv9", "--to", "3"], "no node or tensor named 'conv9'"),
    (["--from", "conv", "--to", "3"], "did you mean conv1, conv2"),
    (["--from", "", "--to", "3"], "no node or tensor named ''"),
    (["--from", "a\nb", "--to", "3"], "'a\\x0ab'"),
    (["--from", "\x1b[2J", "--to", "3"], "\\x1b"),
    (["--from", "1"], "required: --to"),
    (["--to", "1"], "required: --from"),
]


@pytest.mark.parametrize(("args", "expected"), POSITION_MISTAKES)
def test_bad_positions(capsys, files, args, expected):
    folder, out = files
    expect_rejected(
        capsys,
        ["extract", folder / "skip.onnx", *args, "-o", out / "s.onnx"],
        watch=[folder, out],
        contains=expected,
    )


OUTPUT_MISTAKES = {
    "a directory": (lambda folder, out: out, "is a directory"),
    "in a missing folder": (lambda folder, out: out / "no" / "s.onnx", "does not exist"),
    "under a file": (lambda folder, out: folder / "plain.txt" / "s.onnx", "not a folder"),
    "over the model read": (lambda folder, out: folder / "skip.onnx", "the model being read"),
    "empty": (lambda folder, out: "", "is a directory"),
}


@pytest.mark.parametrize("case", OUTPUT_MISTAKES)
def test_bad_extract_output(capsys, files, case):
    folder, out = files
    where, expected = OUTPUT_MISTAKES[case]
    expect_rejected(
        capsys,
        ["extract", folder / "skip.onnx", "--from", "1", "--to", "3", "-o", where(folder, out)],
        watch=[folder, out],
        contains=expected,
    )


def test_extract_missing_output_argument(capsys, files):
    folder, out = files
    expect_rejected(
        capsys,
        ["extract", folder / "skip.onnx", "--from", "1", "--to", "3"],
        watch=[folder, out],
        contains="required: -o",
    )


def test_extract_into_a_read_only_folder(capsys, files, tmp_path):
    folder, _ = files
    with read_only_folder(tmp_path / "ro") as ro:
        expect_rejected(
            capsys,
            ["extract", folder / "skip.onnx", "--from", "1", "--to", "3", "-o", ro / "s.onnx"],
            watch=[folder, ro],
            contains="read-only",
        )


def test_extract_of_a_segment_with_unknown_shapes(capsys, files):
    """A custom operator's output has no shape: its segment would fail onnx.checker."""
    folder, out = files
    nodes = [
        helper.make_node("Relu", ["x"], ["a"], name="r1"),
        helper.make_node("Fused", ["a"], ["b"], name="custom", domain="com.example"),
        helper.make_node("Relu", ["b"], ["y"], name="r2"),
    ]
    g = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
    )
    onnx.save(
        helper.make_model(
            g, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.example", 1)]
        ),
        folder / "custom.onnx",
    )
    expect_rejected(
        capsys,
        ["extract", folder / "custom.onnx", "--from", "0", "--to", "3", "-o", out / "s.onnx"],
        watch=[folder, out],
        contains="shape of its output 'y' is unknown",
    )


ZOO_MISTAKES = [
    (["zoo", "build", "yolo", "-o", "{out}/y.onnx"], "unknown built-in model 'yolo'"),
    (["zoo", "build", "", "-o", "{out}/y.onnx"], "unknown built-in model ''"),
    (["zoo", "build", "yolov5n", "-o", "{out}"], "is a directory"),
    (["zoo", "build", "yolov5n", "-o", "{out}/no/such/y.onnx"], "does not exist"),
    (["zoo", "build", "yolov5n", "-o", "{folder}/plain.txt/y.onnx"], "not a folder"),
    (["zoo", "build", "yolov5n", "-o", "{out}/y.onnx", "--seed", "-5"], "--seed"),
    (["zoo", "build", "yolov5n", "-o", "{out}/y.onnx", "--seed", "abc"], "--seed"),
    (["zoo", "build", "yolov5n", "-o", "{out}/y.onnx", "--seed", str(2**64)], "--seed"),
    (["zoo", "build", "yolov5n"], "required: -o"),
    (["zoo"], "required: ACTION"),
    (["zoo", "remove", "yolov5n"], "invalid choice"),
    (["zoo", "list", "--bogus"], "unrecognized arguments"),
    (["inspect", "yolov9"], "no such file: yolov9"),
    (["inspect", "yolov5n", "--input-shape", "images=1,3,320,320"], "fixed size 640"),
    (["cuts", "squeezenet", "--input-shape", "data=1,3,224,224"], "not a model input"),
]


@pytest.mark.parametrize(("args", "expected"), ZOO_MISTAKES)
def test_bad_zoo_and_model_name_arguments(capsys, files, args, expected):
    folder, out = files
    args = [a.format(folder=folder, out=out) for a in args]
    expect_rejected(capsys, args, watch=[folder, out], contains=expected)


def test_zoo_build_into_a_read_only_folder(capsys, tmp_path):
    with read_only_folder(tmp_path / "ro", {"old.onnx": b"keep me"}) as ro:
        expect_rejected(
            capsys,
            ["zoo", "build", "yolov5n", "-o", ro / "old.onnx"],
            watch=[ro],
            contains="read-only",
        )
