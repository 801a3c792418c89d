"""Built-in models ("zoo"): YOLOv5 n/s/m/l/x generated in code, and the real architectures the
onnx wheel ships as `light_*.onnx`, with their placeholder weights folded into random ones.

Nothing is downloaded: both families come from this project or the installed onnx package.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from google.protobuf.message import Message
from onnx import TensorProto, helper, numpy_helper

from backend.device.segments import tensor_nbytes
from backend.errors import OmdpError
from backend.files import atomic_open_all, atomic_write, check_writable
from backend.model import yolo
from backend.model.parameters import count_parameters

# The onnx wheel's copies of classic ImageNet architectures (weights are ConstantOfShape 0.02).
LIGHT_DIR = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light"
# Protobuf refuses to serialise messages of 2 GiB or more; leave room for the graph itself.
PROTOBUF_LIMIT = 2**31 - 64 * 2**20
EXTERNAL_THRESHOLD = 1024  # bytes: smaller initializers stay inside a split model's file


@dataclass(frozen=True)
class ZooEntry:
    """One built-in model: `name` is what `build` and every `MODEL` argument accept."""

    name: str
    family: str  # "yolov5" | "light"
    description: str
    input_shape: tuple[int, ...]


@dataclass(frozen=True)
class _Light:
    file: str
    description: str


_LIGHT: dict[str, _Light] = {
    "resnet50": _Light("light_resnet50.onnx", "ResNet-50 (Caffe2, ImageNet)"),
    "vgg19": _Light("light_vgg19.onnx", "VGG-19 (Caffe, ImageNet)"),
    "densenet121": _Light("light_densenet121.onnx", "DenseNet-121 (Caffe, ImageNet)"),
    "inception_v1": _Light("light_inception_v1.onnx", "GoogLeNet / Inception v1 (Caffe2)"),
    "inception_v2": _Light("light_inception_v2.onnx", "Inception v2 / BN-Inception (Caffe2)"),
    "squeezenet": _Light("light_squeezenet.onnx", "SqueezeNet 1.1 (Caffe2)"),
    "shufflenet": _Light("light_shufflenet.onnx", "ShuffleNet v1, 4 groups (Caffe2)"),
    "alexnet": _Light("light_bvlc_alexnet.onnx", "AlexNet (BVLC Caffe)"),
    "zfnet512": _Light("light_zfnet512.onnx", "ZFNet-512 (Caffe2)"),
}

_YOLO_DESCRIPTIONS = {
    "yolov5n": "YOLOv5 nano, ultralytics v7.0 architecture, BN folded",
    "yolov5s": "YOLOv5 small, ultralytics v7.0 architecture, BN folded",
    "yolov5m": "YOLOv5 medium, ultralytics v7.0 architecture, BN folded",
    "yolov5l": "YOLOv5 large, ultralytics v7.0 architecture, BN folded",
    "yolov5x": "YOLOv5 xlarge, ultralytics v7.0 architecture, BN folded",
}


def list_models() -> list[ZooEntry]:
    """Every built-in model, YOLOv5 sizes first; cheap (nothing is built or read)."""
    entries = [
        ZooEntry(name, "yolov5", _YOLO_DESCRIPTIONS[name], (1, 3, 640, 640))
        for name in yolo.VARIANTS
    ]
    entries += [
        ZooEntry(name, "light", spec.description, (1, 3, 224, 224)) for name, spec in _LIGHT.items()
    ]
    return entries


def entry(name: str) -> ZooEntry:
    """The entry called `name`; an OmdpError listing the valid names if there is none."""
    for e in list_models():
        if e.name == name:
            return e
    names = ", ".join(e.name for e in list_models())
    raise OmdpError(f"unknown built-in model '{name}'", f"choose one of: {names}")


def build(name: str, *, seed: int = 0, fold: bool = True) -> onnx.ModelProto:
    """The model called `name`, with weights drawn from `seed`.

    `fold` only matters for the light models: False returns the file exactly as shipped
    (IR 3, ConstantOfShape weights), True gives random initializers and a modern IR.
    """
    entry(name)
    if name in yolo.VARIANTS:
        return yolo.build_yolov5(name, seed)
    model = _load_light(name)
    return fold_constant_weights(model, seed=seed) if fold else model


def _load_light(name: str) -> onnx.ModelProto:
    path = LIGHT_DIR / _LIGHT[name].file
    if not path.is_file():
        raise OmdpError(
            f"built-in model '{name}' needs {path}, which this onnx installation lacks",
            "reinstall onnx from its PyPI wheel (it ships backend/test/data/light)",
        )
    return onnx.load(str(path))


def parameter_count(name: str) -> int:
    """Parameters of a built-in model (see `backend.model.parameters`) once folded,
    computed without drawing any weights."""
    entry(name)
    if name in yolo.VARIANTS:
        return yolo.parameter_count(name)
    g = _load_light(name).graph
    consts = _constant_values(g)
    folded = _foldable(g, consts)
    used = {i for n in g.node for i in n.input} | {o.name for o in g.output}
    shipped = count_parameters(t for t in g.initializer if t.name in used)
    return sum(math.prod(s) for s in folded.values()) + shipped


def build_to(name: str, path: str | Path, *, seed: int = 0, fold: bool = True) -> Path:
    """Build `name` and save it at `path` (see `save`)."""
    entry(name)
    check_writable(path, "model.onnx")
    return save(build(name, seed=seed, fold=fold), path)


def save(model: onnx.ModelProto, path: str | Path) -> Path:
    """Write `model` to `path`, whole or not at all; its weights go to `<file>.data` next
    to it when the model would exceed protobuf's 2 GiB limit (the model's tensors then
    point at that file, and both files appear together)."""
    path = check_writable(path, "model.onnx")
    if not needs_external_data(model):
        atomic_write(path, model.SerializeToString())
        return path
    header, chunks = _split_external(model, external_data_path(path).name)
    with atomic_open_all([path, external_data_path(path)]) as (model_file, data_file):
        for chunk in chunks:
            data_file.write(chunk)
        model_file.write(header.SerializeToString())
    return path


def _split_external(model: onnx.ModelProto, location: str) -> tuple[onnx.ModelProto, list[bytes]]:
    """The model with each initializer of 1 KiB or more pointing into `location` (offset,
    length) instead of holding its data, and those data in file order."""
    header = onnx.ModelProto()
    _copy_except(model, header, "graph")
    _copy_except(model.graph, header.graph, "initializer")
    chunks: list[bytes] = []
    offset = 0
    for t in model.graph.initializer:
        kept = header.graph.initializer.add()
        if not t.HasField("raw_data") or tensor_nbytes(t) < EXTERNAL_THRESHOLD:
            kept.CopyFrom(t)
            continue
        _copy_except(t, kept, "raw_data")
        data = t.raw_data
        kept.data_location = TensorProto.EXTERNAL
        for key, value in (
            ("location", location),
            ("offset", str(offset)),
            ("length", str(len(data))),
        ):
            kept.external_data.add(key=key, value=value)
        chunks.append(data)
        offset += len(data)
    return header, chunks


def _copy_except(source: Message, target: Message, skip: str) -> None:
    """Copy every field of `source` but `skip` into `target` (the skipped one, a graph's
    weights, is never read: reading a bytes field copies it)."""
    for fd in source.DESCRIPTOR.fields:
        if fd.name == skip:
            continue
        if fd.is_repeated:
            getattr(target, fd.name).extend(getattr(source, fd.name))
        elif source.HasField(fd.name):
            if fd.message_type is not None:
                getattr(target, fd.name).CopyFrom(getattr(source, fd.name))
            else:
                setattr(target, fd.name, getattr(source, fd.name))


def needs_external_data(model: onnx.ModelProto) -> bool:
    """True when the weights alone come near protobuf's 2 GiB message limit."""
    return _weight_bytes(model.graph.initializer) >= PROTOBUF_LIMIT


def external_data_path(path: str | Path) -> Path:
    """Where `save` puts the weights of a model too large for one protobuf: `<file>.data`."""
    path = Path(path)
    return path.with_name(f"{path.name}.data")


def _weight_bytes(tensors: Iterable[TensorProto]) -> int:
    return sum(tensor_nbytes(t) for t in tensors)


def _is_float(data_type: int) -> bool:
    return data_type in (
        TensorProto.FLOAT,
        TensorProto.DOUBLE,
        TensorProto.FLOAT16,
        TensorProto.BFLOAT16,
    )


# -- folding the light models' ConstantOfShape weights ----------------------------------------

_Uses = dict[str, list[tuple[onnx.NodeProto, int]]]
_SHAPE_ONLY = ("Unsqueeze", "Reshape", "Identity", "Flatten")


def _constant_values(graph: onnx.GraphProto) -> dict[str, np.ndarray]:
    """Values known without running the graph: initializers and Constant nodes."""
    values = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            values[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    return values


def _foldable(graph: onnx.GraphProto, consts: dict[str, np.ndarray]) -> dict[str, tuple[int, ...]]:
    """Output name → shape of each float ConstantOfShape whose shape is a known constant."""
    return {
        n.output[0]: tuple(int(d) for d in consts[n.input[0]])
        for n in graph.node
        if n.op_type == "ConstantOfShape"
        and n.input
        and n.input[0] in consts
        and _is_float(_fill_type(n))
    }


def _role(
    tensor: str, shape: tuple[int, ...], uses: _Uses, consts: dict[str, np.ndarray]
) -> tuple[onnx.NodeProto | None, int, tuple[int, ...]]:
    """The node and input slot that finally use `tensor`, and the shape it has there,
    looking through shape-only ops (Caffe blobs such as [1, 1, 1000, 1024] get reshaped)."""
    for _ in range(8):
        users = uses.get(tensor, [])
        if not users:
            return None, -1, shape
        node, index = users[0]
        if node.op_type not in _SHAPE_ONLY or index != 0 or len(users) != 1:
            return node, index, shape
        if node.op_type == "Reshape" and len(node.input) > 1 and node.input[1] in consts:
            target = [int(d) for d in consts[node.input[1]]]
            target = [shape[i] if d == 0 and i < len(shape) else d for i, d in enumerate(target)]
            if -1 in target:
                known = math.prod(d for d in target if d != -1)
                target[target.index(-1)] = math.prod(shape) // max(known, 1)
            shape = tuple(target)
        tensor = node.output[0]
    return None, -1, shape


def _residual_gammas(graph: onnx.GraphProto, static: set[str]) -> dict[str, float]:
    """Scale for the gamma of each BN that ends a residual branch.

    With random weights every residual Sum adds the branch's variance to the stream's, so
    ResNet-50 would grow ~2^16 in variance. A small gamma on branches that are added to an
    identity path (what trained ResNets end up with), and 1/sqrt(k) where k BN branches are
    summed (projection blocks), keep activations O(1) through any depth.
    """
    producer = {o: n for n in graph.node for o in n.output}
    gammas: dict[str, float] = {}
    for node in graph.node:
        if node.op_type not in ("Sum", "Add"):
            continue
        dynamic = [t for t in node.input if t and t not in static]
        if len(dynamic) < 2:
            continue  # a bias add (Caffe Scale), not a residual join
        branches = []
        for t in dynamic:
            p = producer.get(t)
            # look through a Caffe-style affine (Mul/Add with a constant operand)
            while p is not None and p.op_type in ("Mul", "Add"):
                rest = [i for i in p.input if i not in static]
                if len(rest) != 1:
                    break
                p = producer.get(rest[0])
            if p is not None and p.op_type == "BatchNormalization":
                branches.append(p.output[0])
        identity = len(dynamic) - len(branches)
        for bn in branches:
            gammas[bn] = 0.3 if identity else 1.0 / math.sqrt(len(branches))
    return gammas


def _random_parameter(
    rng: np.random.Generator,
    shape: tuple[int, ...],
    role: tuple[onnx.NodeProto | None, int, tuple[int, ...]],
    gamma_scale: float,
    gain: float,
) -> np.ndarray | None:
    """float32 values a trained network would roughly hold in this slot, so activations stay
    O(1); None for a slot we do not recognise."""
    node, index, used_shape = role
    op = node.op_type if node is not None else ""
    trans_b = node is not None and any(a.name == "transB" and a.i for a in node.attribute)
    size = math.prod(shape)
    if op == "BatchNormalization" and index == 4:  # running variance: positive
        values = rng.random(size, dtype=np.float32) + np.float32(0.5)
    elif op == "BatchNormalization" and index == 1:  # gamma
        values = (rng.random(size, dtype=np.float32) * 0.4 + 0.8) * np.float32(gamma_scale)
    elif op == "Mul" and len(shape) == 1 and size > 1:  # Caffe Scale gamma, after a BN
        values = rng.random(size, dtype=np.float32) * np.float32(0.4) + np.float32(0.8)
    elif op in ("Conv", "ConvTranspose", "Gemm", "MatMul") and index == 1 and len(used_shape) >= 2:
        if op in ("Gemm", "MatMul") and not trans_b:
            fan_in = used_shape[0]
        else:
            fan_in = math.prod(used_shape[1:])
        values = rng.standard_normal(size, dtype=np.float32)
        # He (gain 2) after a ReLU keeps the activations' scale; after a linear op, gain 1.
        values *= np.float32(math.sqrt(gain / fan_in))
    elif (
        (op in ("Conv", "ConvTranspose", "Gemm") and index == 2)
        or (op == "BatchNormalization" and index in (2, 3))  # beta, running mean
        or (op == "Add" and len(shape) == 1 and size > 1)  # Caffe Scale bias
    ):
        values = rng.standard_normal(size, dtype=np.float32) * np.float32(0.01)
    else:
        return None
    return values.reshape(shape)


def fold_constant_weights(model: onnx.ModelProto, *, seed: int = 0) -> onnx.ModelProto:
    """Give a light model real-sized, seeded random weights and a modern IR.

    Every ConstantOfShape whose shape is constant becomes an initializer of that shape. The
    few float parameters the file does ship (biases, BN statistics) are trained values that
    belonged to the weights that are no longer there (a BN variance of 1e-12 multiplies by
    300), so they are redrawn the same way. The result drops the now unused shape tensors,
    lists no initializer as a graph input and carries the IR version its opsets need (4 for
    opset 9), which onnxruntime loads and `onnx.checker` accepts.
    """
    out = onnx.ModelProto()
    out.CopyFrom(model)
    g = out.graph
    consts = _constant_values(g)
    uses: _Uses = {}
    for node in g.node:
        for i, name in enumerate(node.input):
            uses.setdefault(name, []).append((node, i))
    folded = _foldable(g, consts)
    static = set(consts) | set(folded)
    for node in g.node:  # tensors computed from constants only (e.g. Unsqueeze of a weight)
        if node.input and all(i in static for i in node.input if i):
            static.update(node.output)
    gammas = _residual_gammas(g, static)
    producer = {o: n for n in g.node for o in n.output}
    rng = np.random.default_rng(seed)

    def draw(shape: tuple[int, ...], role) -> np.ndarray | None:
        return _random_parameter(rng, shape, role, _gamma(role, gammas), _gain(role[0], producer))

    fresh: dict[str, np.ndarray] = {}
    for node in g.node:
        for name in node.output if node.op_type == "ConstantOfShape" else ():
            if name in folded:
                role = _role(name, folded[name], uses, consts)
                values = draw(folded[name], role)
                if values is None:  # unknown slot: small values are the safe default
                    values = rng.standard_normal(folded[name], dtype=np.float32) * 0.01
                dtype = helper.tensor_dtype_to_np_dtype(_fill_type(node))
                fresh[name] = values.astype(dtype, copy=False)
    for t in g.initializer:
        if _is_float(t.data_type) and t.name in uses:
            role = _role(t.name, tuple(t.dims), uses, consts)
            values = draw(tuple(t.dims), role)
            if values is not None:
                dtype = helper.tensor_dtype_to_np_dtype(t.data_type)
                fresh[t.name] = values.astype(dtype, copy=False)

    keep = [n for n in g.node if not (n.op_type == "ConstantOfShape" and n.output[0] in folded)]
    del g.node[:]
    g.node.extend(keep)
    used = _drop_dead_constants(g)
    # Only small tensors are copied here; the fresh weights are written in place below.
    shipped = [t for t in g.initializer if t.name not in fresh and t.name in used]
    del g.initializer[:]
    g.initializer.extend(shipped)
    for name, values in fresh.items():
        tensor = g.initializer.add()
        tensor.name = name
        tensor.data_type = helper.np_dtype_to_tensor_dtype(values.dtype)
        tensor.dims.extend(values.shape)
        tensor.raw_data = values.astype(values.dtype.newbyteorder("<"), copy=False).tobytes()
    init_names = {t.name for t in g.initializer}
    real_inputs = [i for i in g.input if i.name not in init_names and i.name not in consts]
    del g.input[:]
    g.input.extend(real_inputs)
    names = used | {i.name for i in g.input} | {o for n in g.node for o in n.output}
    value_info = [v for v in g.value_info if v.name in names]
    del g.value_info[:]
    g.value_info.extend(value_info)
    out.ir_version = max(helper.find_min_ir_version_for(list(out.opset_import)), 4)
    return out


def _fill_type(node: onnx.NodeProto) -> int:
    value = next((a.t for a in node.attribute if a.name == "value"), None)
    return value.data_type if value is not None else TensorProto.FLOAT


def _gamma(
    role: tuple[onnx.NodeProto | None, int, tuple[int, ...]], gammas: dict[str, float]
) -> float:
    node, index, _ = role
    if node is None or node.op_type != "BatchNormalization" or index != 1:
        return 1.0
    return gammas.get(node.output[0], 1.0)


_LINEAR = ("BatchNormalization", "Conv", "Gemm", "MatMul", "Add", "Sum", "Mul")


def _gain(node: onnx.NodeProto | None, producer: dict[str, onnx.NodeProto]) -> float:
    """2 when a weight's layer reads rectified activations (He), 1 after a linear op."""
    p = producer.get(node.input[0]) if node is not None and node.input else None
    while p is not None and p.op_type in ("Reshape", "Transpose", "Flatten", "Dropout"):
        p = producer.get(p.input[0])
    return 1.0 if p is not None and p.op_type in _LINEAR else 2.0


def _drop_dead_constants(g: onnx.GraphProto) -> set[str]:
    """Remove Constant nodes nothing reads; return the names still read by nodes or outputs."""
    while True:
        used = {i for n in g.node for i in n.input} | {o.name for o in g.output}
        live = [n for n in g.node if n.op_type != "Constant" or n.output[0] in used]
        if len(live) == len(g.node):
            return used
        del g.node[:]
        g.node.extend(live)
