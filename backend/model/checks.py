"""The checks a model passes before the tool reads it, and a segment before it is written.

Two layers. First the structural rules the analysis relies on, each with a message that
names the node (index in the file, name, op) or the tensor at fault: a declared IR and
opset that exist, unique names (one producer per tensor), every tensor read or output
produced somewhere, no cycle, initializers whose data matches their type and dims, and
no negative, absurd or (on the graph's inputs and outputs) zero-size dims. Then the full
`onnx.checker` with strict shape inference (catches e.g. a MatMul of mismatched shapes).

Big weights are never loaded for this: the checker sees them as typed graph inputs, and the
size of the data left in the file is read from its protobuf framing (`_raw_data_length`).
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Iterable, Sequence

import onnx
from onnx import GraphProto, ModelProto, NodeProto, TensorProto, ValueInfoProto

from backend.device.segments import (
    LAZY_THRESHOLD,
    LazyWeights,
    itemsize,
    tensor_nbytes,
    topological_order,
)
from backend.errors import OmdpError
from backend.text import inert, shown

MAX_TENSOR_BYTES = 1 << 40  # 1 TiB: no tensor a device can hold comes near it
MAX_DIM = 2**31 - 1  # one axis; larger values overflow the runtimes' index types

FIX = "repair the model, or export it again"

_STANDARD = ("", "ai.onnx")
_LATEST_OPSET = {
    "": onnx.defs.onnx_opset_version(),
    "ai.onnx.ml": max(row[3] for row in onnx.helper.VERSION_TABLE),
    "ai.onnx.training": max(row[4] for row in onnx.helper.VERSION_TABLE if len(row) > 4),
}
# Bits per element of the types stored packed, several to a byte.
_PACKED_BITS: dict[int, int] = {
    TensorProto.INT4: 4,
    TensorProto.UINT4: 4,
    TensorProto.FLOAT4E2M1: 4,
    TensorProto.INT2: 2,
    TensorProto.UINT2: 2,
}
_UNCHECKED: set[int] = {TensorProto.FLOAT6E2M3, TensorProto.FLOAT6E3M2}  # packing not pinned down
_TYPED_FIELDS = (
    "float_data",
    "int32_data",
    "string_data",
    "int64_data",
    "double_data",
    "uint64_data",
)
_COMPLEX = {TensorProto.COMPLEX64, TensorProto.COMPLEX128}


def node_ref(i: int, node: NodeProto) -> str:
    """How messages name a node: its index in the file, its name and its op."""
    name = f" {shown(node.name)}" if node.name else ""
    return f"node {i}{name} ({shown(node.op_type)[1:-1]})"


# What onnx.checker and strict shape inference raise for a model they refuse.
CHECKER_ERRORS = (
    onnx.checker.ValidationError,
    onnx.shape_inference.InferenceError,
    onnx.defs.SchemaError,
    RuntimeError,
)


def _fail(where: str, what: str, fix: str = FIX) -> OmdpError:
    return OmdpError(f"{where}: invalid model: {what}", fix)


# -- the model as declared ---------------------------------------------------------------------


def check_structure(model: ModelProto, lazy: LazyWeights | None, where: str) -> list[int]:
    """The structural rules (module docstring); `where` names the model in messages.
    Returns the node order (see `segments.topological_order`)."""
    _check_header(model, where)
    g = model.graph
    _check_names(g, where)
    order = _check_references(g, where)
    _check_initializers(g, lazy, where)
    _check_value_infos(g, where)
    return order


def _check_header(model: ModelProto, where: str) -> None:
    if not model.HasField("graph"):
        raise OmdpError(
            f"{where} is not an ONNX model (no graph)",
            "give an ONNX file, e.g. exported with torch.onnx.export",
        )
    if not 3 <= model.ir_version <= onnx.IR_VERSION:
        raise _fail(
            where,
            f"IR version {model.ir_version} is not one this onnx reads (3..{onnx.IR_VERSION})",
            "re-export it with a supported exporter, or upgrade onnx",
        )
    if not model.opset_import:
        raise _fail(where, "it imports no opset")
    seen: set[str] = set()
    for op in model.opset_import:
        domain = "" if op.domain in _STANDARD else op.domain
        label = shown(op.domain or "ai.onnx")
        if domain in seen:
            raise _fail(where, f"opset domain {label} is imported twice")
        seen.add(domain)
        latest = _LATEST_OPSET.get(domain)
        if op.version < 1 or (latest is not None and op.version > latest):
            known = f"1..{latest}" if latest is not None else "1 or more"
            raise _fail(
                where,
                f"opset {op.version} of {label} does not exist (known: {known})",
                "re-export it with a supported opset, or upgrade onnx",
            )
    g = model.graph
    if not g.node:
        raise _fail(where, "the graph has no nodes", "give a model with at least one operator")
    if not g.output:
        raise _fail(where, "the graph has no outputs", "give a model that outputs something")


def _unique_names(names: Iterable[str], what: str, twice: str, where: str) -> set[str]:
    """The names, each present and given once (`what`: "an initializer", …)."""
    seen: set[str] = set()
    for name in names:
        if not name:
            raise _fail(where, f"{what} has no name")
        if name in seen:
            raise _fail(where, f"{what.split(' ', 1)[1]} {shown(name)} is {twice} twice")
        seen.add(name)
    return seen


def _check_names(g: GraphProto, where: str) -> None:
    initializers = _unique_names(
        (t.name for t in g.initializer), "an initializer", "defined", where
    )
    inputs = _unique_names((vi.name for vi in g.input), "a graph input", "declared", where)
    producer: dict[str, int] = {}
    named: dict[str, int] = {}
    for i, node in enumerate(g.node):
        if not node.op_type:
            raise _fail(where, f"{node_ref(i, node)} has no operator type")
        if node.name:
            if node.name in named:
                j = named[node.name]
                raise _fail(
                    where,
                    f"{node_ref(j, g.node[j])} and {node_ref(i, node)} have the same name",
                    "give every node its own name",
                )
            named[node.name] = i
        for out in node.output:
            if not out:
                continue
            if out in producer:
                j = producer[out]
                raise _fail(
                    where,
                    f"tensor {shown(out)} is produced by two nodes: "
                    f"{node_ref(j, g.node[j])} and {node_ref(i, node)}",
                )
            if out in initializers or out in inputs:
                kind = "an initializer" if out in initializers else "a graph input"
                raise _fail(
                    where, f"tensor {shown(out)} is {kind} and also produced by {node_ref(i, node)}"
                )
            producer[out] = i
    _unique_names((vi.name for vi in g.output), "a graph output", "declared", where)
    for name in (vi.name for vi in g.output):  # in file order: the first one is reported
        if name not in producer and name not in inputs and name not in initializers:
            raise _fail(where, f"graph output {shown(name)} is produced by no node")


def _check_references(g: GraphProto, where: str) -> list[int]:
    """Every tensor a node reads exists, and the nodes have an order (no cycle)."""
    try:
        return topological_order(g)
    except ValueError as exc:
        raise _fail(where, inert(str(exc))) from None


def _dims_text(dims: Iterable[int]) -> str:
    return "×".join(str(d) for d in dims) or "a scalar"


def _type_name(elem_type: int) -> str:
    try:
        return TensorProto.DataType.Name(elem_type).lower()
    except ValueError:
        return f"type {elem_type}"


def _element_bytes(elem_type: int, count: int) -> int | None:
    """Bytes `count` elements of this type take as raw data; None where not pinned down."""
    if elem_type in _PACKED_BITS:
        return math.ceil(count * _PACKED_BITS[elem_type] / 8)
    if elem_type in _UNCHECKED or elem_type == TensorProto.STRING:
        return None
    return count * _itemsize(elem_type)


_itemsize = functools.lru_cache(maxsize=None)(itemsize)


def _check_initializers(g: GraphProto, lazy: LazyWeights | None, where: str) -> None:
    valid_types = set(TensorProto.DataType.values()) - {TensorProto.UNDEFINED}
    for t in g.initializer:
        if t.data_type not in valid_types:
            raise _fail(
                where, f"initializer {shown(t.name)} has no valid element type ({t.data_type})"
            )
        if t.dims and min(t.dims) < 0:
            axis, d = next((a, d) for a, d in enumerate(t.dims) if d < 0)
            raise _fail(where, f"initializer {shown(t.name)} has a negative dim {d} on axis {axis}")
        if t.data_location == TensorProto.EXTERNAL:
            continue  # loaded by `load_model` before this, or refused there
        _check_data(t, lazy, where)  # data that fits its dims: no absurd size either


def _check_data(t: TensorProto, lazy: LazyWeights | None, where: str) -> None:
    """The tensor holds its data in exactly one field, of exactly the size its dims need."""
    count = math.prod(t.dims)
    raw = _raw_data_length(t, lazy)
    typed = [f for f in _TYPED_FIELDS if len(getattr(t, f))]
    if raw is not None and not typed and raw == _element_bytes(t.data_type, count):
        return  # the usual case, decided without building a message
    name = shown(t.name)
    need = f"its dims {_dims_text(t.dims)} ({_type_name(t.data_type)}) need"
    if (raw is not None and typed) or len(typed) > 1:
        raise _fail(where, f"initializer {name} holds its data in several fields")
    if raw is None and not typed:
        if count:
            raise _fail(where, f"initializer {name} has no data: {need} {count:,} elements")
        return
    if raw is not None:
        expected = _element_bytes(t.data_type, count)
        if t.data_type == TensorProto.STRING:
            raise _fail(where, f"initializer {name} holds strings as raw bytes")
        if expected is not None and raw != expected:
            raise _fail(
                where, f"initializer {name} holds {raw:,} bytes of data but {need} {expected:,}"
            )
        return
    field = typed[0]
    if t.data_type in _PACKED_BITS or t.data_type in _UNCHECKED:
        return
    expected = count * (2 if t.data_type in _COMPLEX else 1)
    held = len(getattr(t, field))
    if held != expected:
        raise _fail(where, f"initializer {name} holds {held:,} values but {need} {expected:,}")


def _varint_length(value: int) -> int:
    return max(1, (value.bit_length() + 6) // 7)


def _raw_data_length(t: TensorProto, lazy: LazyWeights | None) -> int | None:
    """Bytes of `t`'s raw data, or None if it has none.

    A big initializer left in the file (`LazyWeights`) is measured without reading it: the
    model holds only its header, and the file gives the whole field's span, which is a
    one-byte key, the payload's length and the payload; the payload is the header plus
    the raw data field (again a one-byte key, a length and the bytes). Protobuf writers
    encode lengths minimally, so the solution is unique.
    """
    if lazy is not None and t.name in lazy.fields:
        start, end = lazy.fields[t.name]
        payload = _solve_framed(end - start)
        return None if payload is None else _solve_framed(payload - t.ByteSize())
    return len(t.raw_data) if t.HasField("raw_data") else None


def _solve_framed(total: int) -> int | None:
    """n such that a one-byte key, n as a varint, and n bytes take `total` bytes."""
    for width in range(1, 11):
        n = total - 1 - width
        if n >= 0 and _varint_length(n) == width:
            return n
    return None


def _check_value_infos(g: GraphProto, where: str) -> None:
    """Declared shapes: no negative dim, no tensor over the size limit, and no empty
    tensor going in or out of the model."""
    initializers = {t.name for t in g.initializer}
    ends = [("graph input", vi) for vi in g.input if vi.name not in initializers]
    ends += [("graph output", vi) for vi in g.output]
    for kind, vi in ends + [("tensor", vi) for vi in g.value_info]:
        if (
            kind == "graph input"
            and vi.type.HasField("tensor_type")
            and not vi.type.tensor_type.elem_type
        ):
            raise _fail(where, f"graph input {shown(vi.name)} has no element type")
        dims = _declared_dims(vi)
        if dims is None:
            continue
        check_dims(
            f"{kind} {shown(vi.name)}",
            dims,
            itemsize(vi.type.tensor_type.elem_type),
            where,
            empty_ok=kind == "tensor",
        )


def _declared_dims(vi: ValueInfoProto) -> list[int | None] | None:
    if not vi.type.HasField("tensor_type") or not vi.type.tensor_type.HasField("shape"):
        return None
    return [d.dim_value if d.HasField("dim_value") else None for d in vi.type.tensor_type.shape.dim]


def check_dims(
    label: str,
    dims: Sequence[int | str | None],
    item_bytes: int,
    where: str,
    *,
    empty_ok: bool = True,
) -> None:
    """A shape (None or str: unknown dims) must be usable: no negative dim, no axis over
    `MAX_DIM`, no tensor over `MAX_TENSOR_BYTES` (counting its known dims), and no zero
    dim unless `empty_ok`."""
    known = [d for d in dims if isinstance(d, int)]
    for axis, d in enumerate(dims):
        if not isinstance(d, int):
            continue
        if d < 0:
            raise _fail(where, f"{label} has a negative dim {d} on axis {axis}")
        if d > MAX_DIM:
            raise _fail(
                where,
                f"{label} has dim {d:,} on axis {axis}, over the {MAX_DIM:,} one axis may have",
            )
        if d == 0 and not empty_ok:
            raise _fail(
                where,
                f"{label} has size 0 on axis {axis}: it would be an empty tensor",
                "give the model real input and output sizes",
            )
    size = math.prod(known) * max(item_bytes, 1)
    if size > MAX_TENSOR_BYTES:
        raise _fail(
            where,
            f"{label} is {_dims_text(known)} elements ({size:,} bytes), over "
            f"the {MAX_TENSOR_BYTES >> 40} TiB a tensor may have",
            "check the model's shapes and --input-shape",
        )


# -- onnx.checker ------------------------------------------------------------------------------


def check_with_onnx(
    model: ModelProto, input_shapes: dict[str, list[int]], order: list[int], where: str
) -> None:
    """The full onnx checker, strict shape inference included, on the model as declared.

    It runs on a copy that leaves the big weights out (typed inputs instead), puts the
    nodes in `order` (from `check_structure`), gives the inputs the dims of --input-shape
    where the file gives none, and omits outputs the file declares without a shape (the
    checker demands one, runtimes do not; the analysis infers it).
    """
    try:
        onnx.checker.check_model(_checker_stub(model, input_shapes, order), full_check=True)
    except CHECKER_ERRORS as exc:
        raise _fail(where, f"onnx.checker: {checker_message(exc)}") from None


def _checker_stub(
    model: ModelProto, input_shapes: dict[str, list[int]], order: list[int]
) -> ModelProto:
    g = model.graph
    stub = ModelProto(ir_version=max(model.ir_version, 4))
    stub.opset_import.extend(model.opset_import)
    stub.functions.extend(model.functions)
    sg = stub.graph
    sg.name = g.name or "graph"
    sg.node.extend(g.node[i] for i in order)
    initializers = {t.name for t in g.initializer}
    for vi in g.input:
        if vi.name in initializers:
            continue
        entry = sg.input.add()
        entry.CopyFrom(vi)
        tt = entry.type.tensor_type
        if entry.type.HasField("tensor_type") and not tt.HasField("shape"):
            for v in input_shapes.get(vi.name, []):
                tt.shape.dim.add().dim_value = v
    for t in g.initializer:
        if _has_data(t) and tensor_nbytes(t) <= LAZY_THRESHOLD:
            sg.initializer.append(t)
        else:  # big, or left in the file: its type and dims are what the checker needs
            sg.input.append(onnx.helper.make_tensor_value_info(t.name, t.data_type, t.dims))
    sg.sparse_initializer.extend(g.sparse_initializer)
    sg.output.extend(
        o
        for o in g.output
        if not o.type.HasField("tensor_type") or o.type.tensor_type.HasField("shape")
    )
    sg.value_info.extend(g.value_info)
    return stub


def _has_data(t: TensorProto) -> bool:
    return t.HasField("raw_data") or any(len(getattr(t, f)) for f in _TYPED_FIELDS)


def checker_message(exc: BaseException) -> str:
    """onnx's multi-line checker message as one line: its first finding, and the node."""
    text = inert(" ".join(str(exc).split()))
    found, _, context = text.partition("==> Context:")
    found = re.sub(r"^(\[\w+\] )?(Inference error\(s\): )?", "", found.strip())
    first = re.match(
        r"\(op_type:([^,)]*)(?:, node name: (.*?))?\): (?:\[\w+\] )?(.*?)"
        r"(?= \(op_type:|$)",
        found,
    )
    if first:
        op, name, finding = first.groups()
        node_text = f"node {shown(name)} ({op})" if name else f"a {op} node"
        return f"{node_text}: {finding}"[:400]
    node = re.search(r"Name: (.*?) OpType: (\S*)", context)
    if node:
        found += f" (node '{node.group(1)}', {node.group(2) or 'no op type'})"
    return found[:400]
