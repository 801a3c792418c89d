"""Reading a model the way the rest of the tool sees it: nodes, shapes, bytes, compute, cuts.

`analyze()` is the one entry point: load (with clear errors), fix symbolic input dims,
infer shapes, fix a node order, then per node and per position everything later stages
need. It never modifies the user's file.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import stat
import warnings
from collections import Counter
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import onnx
import pandas as pd
from google.protobuf.message import DecodeError
from onnx import ModelProto
from onnx.external_data_helper import load_external_data_for_tensor

from backend.device.segments import (
    GraphIndex,
    LazyWeights,
    itemsize,
    load_lazy,
    prepare,
    tensor_nbytes,
)
from backend.errors import OmdpError
from backend.files import file_sha256
from backend.model.checks import (
    FIX,
    MAX_DIM,
    check_dims,
    check_structure,
    check_with_onnx,
)
from backend.model.cuts import Cut, build_cuts, rank_candidates, resolve_position
from backend.model.flops import node_flops
from backend.model.parameters import count_parameters, is_parameter
from backend.text import inert, shown


@dataclass(frozen=True)
class TensorInfo:
    name: str
    shape: tuple[int | str | None, ...] | None  # None: rank unknown; str: symbolic dim
    dtype: str
    bytes: int | None  # None when the shape is not fully known

    def as_dict(self) -> dict:
        return {
            "name": self.name,
            "shape": None if self.shape is None else list(self.shape),
            "dtype": self.dtype,
            "bytes": self.bytes,
        }


@dataclass(frozen=True)
class NodeInfo:
    index: int  # position of the node in the fixed order: the cut after it is index + 1
    name: str
    op: str
    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]
    params: int
    flops: int | None  # None: not counted (see backend.model.flops)
    static: bool  # computes only from constants: never a place to cut


@dataclass
class ModelAnalysis:
    """Everything the tool knows about a model before running it."""

    model: ModelProto
    index: GraphIndex
    path: Path | None
    input_shapes: dict[str, list[int]]
    tensors: dict[str, TensorInfo]
    nodes: list[NodeInfo]
    cuts: list[Cut]
    parameters: int
    flops: int
    uncounted: dict[str, int] = field(default_factory=dict)  # op -> nodes without FLOPs

    @property
    def n(self) -> int:
        return self.index.n

    @property
    def inputs(self) -> list[TensorInfo]:
        return [self.tensors[t] for t in self.index.inputs]

    @property
    def outputs(self) -> list[TensorInfo]:
        return [self.tensors[t] for t in self.index.outputs]

    @cached_property
    def sha256(self) -> str:
        """Content hash of the model as analysed (the file's bytes when loaded from one)."""
        if self.path is not None:
            return file_sha256(self.path)
        return hashlib.sha256(self.model.SerializeToString()).hexdigest()

    def model_bytes(self) -> bytes:
        """The model as analysed (dims fixed, shape arithmetic folded) with its real
        weights, serialised: what devices receive. `self.model` lacks big weights."""
        return self.index.segment_bytes(0, self.n)

    def resolve(self, spec: str | int) -> int:
        """A position from an index or node/tensor name (see `cuts.resolve_position`)."""
        producers = {o: i for i, node in enumerate(self.index.nodes) for o in node.output if o}
        return resolve_position(spec, self.n, [n.name for n in self.nodes], producers)

    def candidates(self, k: int) -> list[int]:
        return rank_candidates(
            self.cuts, [n.flops or 0 for n in self.nodes], [n.static for n in self.nodes], k
        )

    def node_table(self) -> pd.DataFrame:
        """One row per node in order; `cut_bytes` is the size of the cut right after it."""
        rows = []
        for node in self.nodes:
            out = node.outputs[0] if node.outputs else None
            rows.append(
                {
                    "index": node.index,
                    "name": node.name,
                    "op": node.op,
                    "output_shape": None if out is None or out.shape is None else list(out.shape),
                    "output_bytes": sum(o.bytes or 0 for o in node.outputs),
                    "flops": node.flops,
                    "params": node.params,
                    "cut_bytes": self.cuts[node.index + 1].bytes,
                    "static": node.static,
                }
            )
        return pd.DataFrame(
            rows,
            columns=[
                "index",
                "name",
                "op",
                "output_shape",
                "output_bytes",
                "flops",
                "params",
                "cut_bytes",
                "static",
            ],
        )

    def summary(self) -> dict:
        ops = Counter(n.op for n in self.nodes)
        return {
            "path": str(self.path) if self.path else None,
            "nodes": self.n,
            "parameters": self.parameters,
            "flops": self.flops,
            "inputs": [t.as_dict() for t in self.inputs],
            "outputs": [t.as_dict() for t in self.outputs],
            "opsets": {o.domain or "ai.onnx": o.version for o in self.model.opset_import},
            "ir_version": self.model.ir_version,
            "ops": dict(ops.most_common()),
            "flops_uncounted": self.uncounted,
        }

    def weight_bytes(self, a: int, b: int) -> int:
        """Bytes of the initializers segment [a, b) carries."""
        used = {u for i in self.index.segment_nodes(a, b) for u in self.index.uses[i]}
        return sum(tensor_nbytes(t) for name, t in self.index.initializers.items() if name in used)


# -- loading -------------------------------------------------------------------------------

_DIMS = re.compile(r"[0-9]{1,12}")


def parse_input_shapes(specs: list[str] | None) -> dict[str, list[int]]:
    """`NAME=1,3,640,640` (repeatable) → {NAME: [1, 3, 640, 640]}."""
    shapes: dict[str, list[int]] = {}
    for spec in specs or []:
        name, sep, dims = spec.partition("=")
        parts = [d.strip() for d in dims.replace("x", ",").split(",")]
        values = [int(d) for d in parts if _DIMS.fullmatch(d)]
        if (
            not sep
            or not name
            or not values
            or len(values) != len(parts)
            or any(not 1 <= v <= MAX_DIM for v in values)
        ):
            raise OmdpError(
                f"bad --input-shape {shown(spec)}",
                f"write NAME=D0,D1,... with whole numbers from 1 to {MAX_DIM}, "
                "e.g. images=1,3,640,640",
            )
        if name in shapes:
            raise OmdpError(
                f"--input-shape gives input {shown(name)} twice", "give each input once"
            )
        shapes[name] = values
    return shapes


def load_model(path: str | os.PathLike) -> tuple[ModelProto, LazyWeights]:
    """Load an ONNX file (and its external data) or fail with a one-line, fixable error.

    Big initializers stay in the memory-mapped file (see `segments.load_lazy`): the model
    returned has their type and dims but not their data.
    """
    p = Path(path)
    try:
        info = p.stat()
    except FileNotFoundError:
        raise OmdpError(f"no such file: {p}", _zoo_hint()) from None
    except OSError as exc:
        raise OmdpError(f"cannot read {p}: {exc.strerror or exc}", "check the path") from None
    if stat.S_ISDIR(info.st_mode):
        raise OmdpError(f"{p} is a directory, not an ONNX file", "give the path of a .onnx file")
    if not stat.S_ISREG(info.st_mode):
        raise OmdpError(f"{p} is not a regular file", "give the path of a .onnx file")
    if info.st_size == 0:
        raise OmdpError(f"{p} is empty", "give an ONNX model file")
    try:
        model, lazy = load_lazy(str(p))
    except OSError as exc:
        raise OmdpError(
            f"cannot read {p}: {exc.strerror or exc}", "check the file's permissions"
        ) from None
    except (DecodeError, RuntimeError, ValueError, IndexError, UnicodeDecodeError) as exc:
        raise OmdpError(
            f"{p} is not a readable ONNX model (truncated or not ONNX: {_first_line(exc)})",
            "re-export or re-copy the model",
        ) from None
    if not model.HasField("graph") or not model.opset_import or not model.graph.node:
        raise OmdpError(
            f"{p} is not an ONNX model (no graph or opset)",
            "give an ONNX file, e.g. exported with torch.onnx.export",
        )
    _load_external_data(model, p)
    return model, lazy


def _load_external_data(model: ModelProto, p: Path) -> None:
    """Read the weights a model keeps in files beside it; onnx refuses locations outside
    the model's folder and data that does not fit the file."""
    g = model.graph
    tensors = list(g.initializer) + [
        a.t for n in g.node for a in n.attribute if a.type == onnx.AttributeProto.TENSOR
    ]
    for t in tensors:
        if t.data_location != onnx.TensorProto.EXTERNAL:
            continue
        location = next((e.value for e in t.external_data if e.key == "location"), "")
        try:
            with warnings.catch_warnings():  # unknown keys: onnx warns, then ignores them
                warnings.simplefilter("ignore")
                load_external_data_for_tensor(t, str(p.parent))
        except (OSError, ValueError, TypeError, onnx.checker.ValidationError) as exc:
            raise OmdpError(
                f"{p} keeps the weights of {shown(t.name)} in external data "
                f"{shown(location)}, which cannot be read ({_first_line(exc)})",
                f"copy the model's data file(s) into {p.parent} beside it",
            ) from None


def _zoo_hint() -> str:
    from backend.model.zoo import list_models

    names = ", ".join(e.name for e in list_models())
    return f"check the path, or use a built-in model name ({names})"


def _first_line(exc: BaseException) -> str:
    """An exception's first line, inert (it may quote the file) and at most 200 characters."""
    text = str(exc).strip().splitlines()
    return inert(text[0][:200]) if text else type(exc).__name__


def open_model(
    source: str | os.PathLike | ModelProto,
) -> tuple[ModelProto, Path | None, LazyWeights | None]:
    """A model from a path, a built-in model name, or an in-memory ModelProto."""
    if isinstance(source, ModelProto):
        return source, None, None
    p = Path(source)
    if not p.exists() and p.suffix == "" and os.sep not in str(source):
        from backend.model import zoo

        if str(source) in {e.name for e in zoo.list_models()}:
            return zoo.build(str(source)), None, None
    model, lazy = load_model(p)
    return model, p, lazy


def check_input_shapes(model: ModelProto, shapes: dict[str, list[int]]) -> None:
    """The user's input dims must name real inputs, fit their rank and fixed dims, and
    cover every symbolic dim."""
    inits = {t.name for t in model.graph.initializer}
    real = [i for i in model.graph.input if i.name not in inits]
    names = [i.name for i in real]
    for name in shapes:
        if name not in names:
            raise OmdpError(
                f"--input-shape names {shown(name)}, which is not a model input",
                f"the inputs are: {', '.join(shown(n) for n in names)}",
            )
    for vi in real:
        if not vi.type.HasField("tensor_type"):
            continue
        dims = vi.type.tensor_type.shape.dim
        given = shapes.get(vi.name)
        if given is not None:
            if vi.type.tensor_type.HasField("shape") and len(dims) != len(given):
                raise OmdpError(
                    f"input {shown(vi.name)} has {len(dims)} dims but "
                    f"--input-shape gives {len(given)}",
                    f"give {len(dims)} values",
                )
            for axis, (d, v) in enumerate(zip(dims, given, strict=False)):
                if d.HasField("dim_value") and d.dim_value != v:
                    raise OmdpError(
                        f"input {shown(vi.name)} has fixed size {d.dim_value} on "
                        f"axis {axis}, not {v}",
                        "keep the model's fixed dims as they are",
                    )
            continue
        if not vi.type.tensor_type.HasField("shape") or any(
            not d.HasField("dim_value") for d in dims
        ):
            declared = (
                ",".join(
                    d.dim_param or "?" if not d.HasField("dim_value") else str(d.dim_value)
                    for d in dims
                )
                or "unknown rank"
            )
            example = (
                ",".join(
                    str(d.dim_value)
                    if d.HasField("dim_value")
                    else "1"
                    if axis == 0
                    else (d.dim_param or f"D{axis}").upper()
                    for axis, d in enumerate(dims)
                )
                or "1,3,224,224"
            )
            raise OmdpError(
                f"input {shown(vi.name)} has symbolic dims [{shown(declared)[1:-1]}]",
                f"give numbers for them, e.g. --input-shape "
                f"{shown(vi.name)[1:-1]}={shown(example)[1:-1]}",
            )


def _dtype_name(elem_type: int) -> str:
    """numpy-style names (float32, int64) where numpy has the type, else ONNX's name."""
    try:
        return onnx.helper.tensor_dtype_to_np_dtype(elem_type).name
    except (KeyError, TypeError, ValueError):
        try:
            return onnx.TensorProto.DataType.Name(elem_type).lower()
        except ValueError:
            return "unknown"


def _item_bytes(info: TensorInfo) -> int:
    """Bytes per element of a tensor whose size is known (1 otherwise: a lower bound)."""
    count = math.prod(d for d in info.shape or () if isinstance(d, int))
    return info.bytes // count if info.bytes and count else 1


def _tensor_info(
    name: str, vi: onnx.ValueInfoProto | None, init: onnx.TensorProto | None
) -> TensorInfo:
    if init is not None:
        return TensorInfo(
            name, tuple(int(d) for d in init.dims), _dtype_name(init.data_type), tensor_nbytes(init)
        )
    if vi is None or not vi.type.HasField("tensor_type"):
        return TensorInfo(name, None, "unknown", None)
    tt = vi.type.tensor_type
    if not tt.HasField("shape"):
        return TensorInfo(name, None, _dtype_name(tt.elem_type), None)
    shape: tuple[int | str | None, ...] = tuple(
        d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in tt.shape.dim
    )
    known = [d for d in shape if isinstance(d, int)]
    nbytes = math.prod(known) * itemsize(tt.elem_type) if len(known) == len(shape) else None
    return TensorInfo(name, shape, _dtype_name(tt.elem_type), nbytes)


def analyze(
    source: str | os.PathLike | ModelProto, input_shapes: dict[str, list[int]] | None = None
) -> ModelAnalysis:
    """Check, load, shape-infer and index a model; compute per-node facts and every cut."""
    model, path, lazy = open_model(source)
    if path is None and isinstance(source, ModelProto):
        model = ModelProto()
        model.CopyFrom(source)  # never modify the caller's model
    where = (
        str(path)
        if path is not None
        else "the model"
        if isinstance(source, ModelProto)
        else f"built-in model {shown(str(source))}"
    )
    shapes = dict(input_shapes or {})
    order = check_structure(model, lazy, where)
    check_input_shapes(model, shapes)
    check_with_onnx(model, shapes, order, where)
    try:
        index = prepare(model, shapes, lazy)
    except ValueError as exc:
        raise OmdpError(f"{where}: invalid model: {_first_line(exc)}", FIX) from None
    g = model.graph
    vis = index.value_info
    names = set(vis) | set(index.initializers) | set(index.inputs) | set(index.outputs)
    for node in index.nodes:
        names.update(node.output)
        names.update(node.input)
    names.discard("")
    tensors = {t: _tensor_info(t, vis.get(t), index.initializers.get(t)) for t in names}
    produced = (o for node in index.nodes for o in node.output if o)
    for name in dict.fromkeys([*index.inputs, *produced]):  # in graph order: the first says
        info = tensors[name]  # what went wrong, e.g. a huge --input-shape on an input
        if info.shape is not None:
            check_dims(f"tensor {shown(name)}", info.shape, _item_bytes(info), where)

    nodes: list[NodeInfo] = []
    uncounted: Counter[str] = Counter()
    seen_names: set[str] = set()
    for i, (node, uses) in enumerate(zip(index.nodes, index.uses, strict=True)):
        ins = tuple(tensors[t] for t in node.input if t)
        outs = tuple(tensors[t] for t in node.output if t)
        static = index._is_static_node(i)
        fl = 0 if static else node_flops(node, [t.shape for t in ins], [t.shape for t in outs])
        if fl is None:
            uncounted[node.op_type] += 1
        params = sum(
            math.prod(index.initializers[t].dims)
            for t in set(uses)
            if t in index.initializers and is_parameter(index.initializers[t])
        )
        name = node.name if node.name and node.name not in seen_names else f"{node.op_type}_{i}"
        seen_names.add(name)
        nodes.append(NodeInfo(i, name, node.op_type, ins, outs, params, fl, static))

    sizes = {t: info.bytes for t, info in tensors.items()}
    cuts = build_cuts(index.all_crossings(), sizes)
    parameters = count_parameters(g.initializer)
    flops = sum(n.flops or 0 for n in nodes)
    return ModelAnalysis(
        model, index, path, shapes, tensors, nodes, cuts, parameters, flops, dict(uncounted)
    )
