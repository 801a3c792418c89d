"""The graph core: a fixed node order, the cut at every position, and segment extraction.

This module imports only the standard library, numpy and onnx, because the device agent
ships it as-is to devices that have nothing of this project installed. It is a little over
600 lines on purpose: the order, the cuts, extraction and the one preparation every
device repeats (`prepare`) must agree exactly, and are read together.

Words (see docs/architecture.md): position p in 0..N sits between nodes n_{p-1} and n_p;
the cut X(p) is the activations produced before p (or graph inputs) and consumed at/after
p (or graph outputs); segment [a, b) is nodes n_a..n_{b-1} as a model with inputs X(a),
outputs X(b). Static tensors (initializers, Constant outputs and anything computed only
from them) never cross a cut: a segment that needs them carries its own copy, including
the nodes that compute them.
"""

from __future__ import annotations

import heapq
import importlib.util
import mmap
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import GraphProto, ModelProto, NodeProto, ValueInfoProto

# Ops whose output depends on nothing but their attributes, yet must not be treated as
# constants (a fresh value on each run).
_NONDETERMINISTIC = {
    "RandomNormal",
    "RandomUniform",
    "RandomNormalLike",
    "RandomUniformLike",
    "Multinomial",
    "Bernoulli",
}


def subgraph_outer_refs(node: NodeProto) -> set[str]:
    """Names a node's subgraphs (If/Loop/Scan bodies) read from the enclosing scope."""
    refs: set[str] = set()
    for attr in node.attribute:
        if attr.type == onnx.AttributeProto.GRAPH:
            graphs = [attr.g]
        elif attr.type == onnx.AttributeProto.GRAPHS:
            graphs = list(attr.graphs)
        else:
            continue
        for g in graphs:
            refs |= _graph_free_names(g)
    return refs


def _graph_free_names(g: GraphProto) -> set[str]:
    defined = {i.name for i in g.input} | {t.name for t in g.initializer}
    defined |= {t.name for t in g.sparse_initializer}
    free: set[str] = set()
    for n in g.node:
        for name in list(n.input) + sorted(subgraph_outer_refs(n)):
            if name and name not in defined:
                free.add(name)
        defined.update(o for o in n.output if o)
    free |= {o.name for o in g.output if o.name not in defined}
    return free


def node_uses(node: NodeProto) -> list[str]:
    """Every tensor a node reads: its inputs plus what its subgraphs capture, in order."""
    uses = [i for i in node.input if i]
    if any(
        a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for a in node.attribute
    ):
        uses += sorted(subgraph_outer_refs(node) - set(uses))
    return uses


def topological_order(graph: GraphProto) -> list[int]:
    """The file's node order when it is valid, else a stable Kahn sort (ties by file index).

    Raises ValueError naming a tensor that nothing produces or a cycle.
    """
    available = {i.name for i in graph.input} | {t.name for t in graph.initializer}
    available |= {t.name for t in graph.sparse_initializer}
    uses = [node_uses(n) for n in graph.node]
    seen = set(available)
    valid = True
    for n, u in zip(graph.node, uses):
        if any(name not in seen for name in u):
            valid = False
            break
        seen.update(o for o in n.output if o)
    if valid:
        return list(range(len(graph.node)))

    producer: dict[str, int] = {}
    for idx, n in enumerate(graph.node):
        for o in n.output:
            if o:
                producer[o] = idx
    indegree = [0] * len(graph.node)
    consumers: list[list[int]] = [[] for _ in graph.node]
    for idx, u in enumerate(uses):
        for name in set(u):
            if name in available:
                continue
            if name not in producer:
                raise ValueError(
                    f"tensor '{name}' used by node {idx} "
                    f"('{graph.node[idx].name}') is produced by no node "
                    "and is not a graph input or initializer"
                )
            indegree[idx] += 1
            consumers[producer[name]].append(idx)
    ready = [i for i, d in enumerate(indegree) if d == 0]
    heapq.heapify(ready)
    order: list[int] = []
    while ready:
        i = heapq.heappop(ready)
        order.append(i)
        for c in consumers[i]:
            indegree[c] -= 1
            if indegree[c] == 0:
                heapq.heappush(ready, c)
    if len(order) != len(graph.node):
        stuck = next(i for i, d in enumerate(indegree) if d > 0)
        raise ValueError(f"the graph has a cycle through node {stuck} ('{graph.node[stuck].name}')")
    return order


# -- lazy weights ------------------------------------------------------------------------
# Big initializers are not parsed: the file is memory-mapped and each one is remembered as
# a byte range, so analysis never copies the weights and a segment is written by splicing
# those ranges next to a freshly serialised (small) graph.

_GRAPH_FIELD = 7  # ModelProto.graph
_INIT_FIELD = 5  # GraphProto.initializer
_RAW_DATA_FIELD = 9  # TensorProto.raw_data
LAZY_THRESHOLD = 4096  # bytes: smaller initializers (shapes, axes) are parsed as usual
PROTOBUF_LIMIT = 2**31 - 1  # the largest message protobuf reads


def _varint(buf, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise ValueError("the file is truncated (a number runs past its end)")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, pos
        shift += 7


def _encode_varint(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _fields(buf, start: int, end: int) -> Iterator[tuple[int, int, int, int]]:
    """(field number, field start, value start, value end) of each field in buf[start:end]."""
    pos = start
    while pos < end:
        field_start = pos
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            _, value_end = _varint(buf, pos)
        elif wire == 1:
            value_end = pos + 8
        elif wire == 2:
            length, pos = _varint(buf, pos)
            value_end = pos + length
        elif wire == 5:
            value_end = pos + 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire} at byte {field_start}")
        if value_end > end:
            raise ValueError("the file is truncated")
        yield number, field_start, pos, value_end
        pos = value_end


def _length_delimited(field: int, payload: bytes) -> bytes:
    return _encode_varint(field << 3 | 2) + _encode_varint(len(payload)) + payload


@dataclass
class LazyWeights:
    """Where each big initializer's serialised field lies in a memory-mapped model file."""

    path: str
    buffer: mmap.mmap
    fields: dict[str, tuple[int, int]]  # initializer name -> (start, end) of its field


def load_lazy(path: str, threshold: int = LAZY_THRESHOLD) -> tuple[ModelProto, LazyWeights]:
    """Parse a model file except the raw data of its big initializers (left in the file).

    The returned model's big initializers keep their name, type and dims but no data;
    pass the LazyWeights to GraphIndex.build so segments get the real bytes.
    Raises ValueError if the file is not valid protobuf.
    """
    with open(path, "rb") as f:
        buf = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    model_parts: list[bytes] = []
    graph_range = None
    for number, fstart, vstart, vend in _fields(buf, 0, len(buf)):
        if number == _GRAPH_FIELD and graph_range is None:
            graph_range = (vstart, vend)
        else:
            model_parts.append(buf[fstart:vend])
    if graph_range is None:
        raise ValueError("no graph in the file")
    graph_parts: list[bytes] = []
    fields: dict[str, tuple[int, int]] = {}
    for number, fstart, vstart, vend in _fields(buf, *graph_range):
        if number == _INIT_FIELD and vend - vstart > threshold:
            header = b"".join(
                buf[fs:ve]
                for num, fs, _, ve in _fields(buf, vstart, vend)
                if num != _RAW_DATA_FIELD
            )
            fields[onnx.TensorProto.FromString(header).name] = (fstart, vend)
            graph_parts.append(_length_delimited(_INIT_FIELD, header))
        else:
            graph_parts.append(buf[fstart:vend])
    model = ModelProto.FromString(
        b"".join(model_parts) + _length_delimited(_GRAPH_FIELD, b"".join(graph_parts))
    )
    return model, LazyWeights(path, buf, fields)


def _piece_len(piece: bytes | tuple[int, int]) -> int:
    return len(piece) if isinstance(piece, bytes) else piece[1] - piece[0]


def _copy_range(source, out, start: int, end: int) -> None:
    """Copy source[start:end] to the end of out, in the kernel where it can."""
    offset = start
    try:
        while offset < end:
            done = os.copy_file_range(source.fileno(), out.fileno(), end - offset, offset)
            if done == 0:
                raise OSError("short copy")
            offset += done
    except (AttributeError, OSError):  # no copy_file_range here: copy through memory
        source.seek(offset)
        out.write(source.read(end - offset))


@dataclass
class GraphIndex:
    """A model's nodes in fixed order with, for each tensor, where it is made and last used.

    Built in one linear pass; every cut and segment is answered from it without touching
    the graph again.
    """

    model: ModelProto
    nodes: list[NodeProto]
    uses: list[list[str]]
    inputs: list[str]  # real graph inputs (IR-3 initializer inputs excluded)
    outputs: list[str]
    initializers: dict[str, onnx.TensorProto]
    static: set[str]  # tensors that never cross: weights, constants, constant-only results
    static_producer: dict[str, int]  # static tensor -> node position that computes it
    producer: dict[str, int]  # activation -> node position (-1 for graph inputs)
    last_use: dict[str, int]  # activation -> last consuming position (N for graph outputs)
    value_info: dict[str, ValueInfoProto] = field(default_factory=dict)
    lazy: LazyWeights | None = None  # big initializers' bytes, when loaded with load_lazy

    @property
    def n(self) -> int:
        return len(self.nodes)

    @classmethod
    def build(cls, model: ModelProto, lazy: LazyWeights | None = None) -> GraphIndex:
        g = model.graph
        order = topological_order(g)
        nodes = [g.node[i] for i in order]
        uses = [node_uses(n) for n in nodes]
        initializers = {t.name: t for t in g.initializer}
        inputs = [i.name for i in g.input if i.name not in initializers]
        outputs = [o.name for o in g.output]
        static = set(initializers) | {t.name for t in g.sparse_initializer}
        static_producer: dict[str, int] = {}
        producer = {name: -1 for name in inputs}
        for pos, (node, u) in enumerate(zip(nodes, uses)):
            is_static = (node.op_type == "Constant" and node.domain in ("", "ai.onnx")) or (
                bool(u)
                and node.op_type not in _NONDETERMINISTIC
                and all(name in static for name in u)
            )
            for o in node.output:
                if not o:
                    continue
                if is_static:
                    static.add(o)
                    static_producer[o] = pos
                else:
                    producer[o] = pos
        last_use: dict[str, int] = {}
        for pos, u in enumerate(uses):
            for name in u:
                if name in producer:
                    last_use[name] = pos
        for name in outputs:
            if name in producer:
                last_use[name] = len(nodes)
        vi = {v.name: v for v in list(g.input) + list(g.value_info) + list(g.output)}
        return cls(
            model,
            nodes,
            uses,
            inputs,
            outputs,
            initializers,
            static,
            static_producer,
            producer,
            last_use,
            vi,
            lazy,
        )

    # -- cuts ---------------------------------------------------------------------------

    def crossing(self, p: int) -> list[str]:
        """X(p): activations crossing position p, in order of production (then name)."""
        self._check_position(p)
        if p == self.n:
            return list(self.outputs)
        out = [t for t, prod in self.producer.items() if prod < p <= self.last_use.get(t, -2)]
        return out

    def all_crossings(self) -> list[list[str]]:
        """X(p) for every p in 0..N in one sweep: O(N + total cut size)."""
        n = self.n
        starts: list[list[str]] = [[] for _ in range(n + 2)]
        ends: list[list[str]] = [[] for _ in range(n + 2)]
        for t, prod in self.producer.items():
            last = self.last_use.get(t)
            if last is None or last <= prod:
                continue  # never consumed: crosses nothing
            starts[prod + 1].append(t)
            ends[last + 1].append(t)
        live: dict[str, None] = {}
        cuts: list[list[str]] = []
        for p in range(n + 1):
            for t in ends[p]:
                live.pop(t, None)
            for t in starts[p]:
                live[t] = None
            cuts.append(list(live))
        cuts[n] = list(self.outputs)
        return cuts

    def _check_position(self, p: int) -> None:
        if not 0 <= p <= self.n:
            raise ValueError(f"position {p} is out of range 0..{self.n}")

    # -- segments -----------------------------------------------------------------------

    def segment_nodes(self, a: int, b: int, outputs: Iterable[str] | None = None) -> list[int]:
        """Positions of the nodes segment [a, b) runs: its own compute nodes plus the
        static nodes (anywhere before) that its nodes or outputs need, in order."""
        own = [i for i in range(a, b) if not self._is_static_node(i)]
        needed = {name for i in own for name in self.uses[i] if name in self.static_producer}
        if outputs is not None:
            needed |= {o for o in outputs if o in self.static_producer}
        extra: set[int] = set()
        stack = list(needed)
        while stack:
            pos = self.static_producer[stack.pop()]
            if pos in extra:
                continue
            extra.add(pos)
            stack.extend(u for u in self.uses[pos] if u in self.static_producer)
        return sorted(set(own) | extra)

    def _is_static_node(self, pos: int) -> bool:
        outs = [o for o in self.nodes[pos].output if o]
        return bool(outs) and all(o in self.static_producer for o in outs)

    def segment_parts(
        self,
        a: int,
        b: int,
        inputs: list[str] | None = None,
        outputs: list[str] | None = None,
        name: str | None = None,
    ) -> list[bytes | tuple[int, int]]:
        """Segment [a, b) as serialised ModelProto pieces, to be joined or written in order:
        bytes, or (start, end) ranges of the lazily loaded source file.

        Inputs are X(a), outputs X(b) (`inputs`/`outputs` may be passed when the caller
        already holds the cuts). Only the initializers the segment reads are included, and
        big ones are spliced from the source file's bytes rather than copied through
        protobuf objects.
        """
        self._check_position(a)
        self._check_position(b)
        if a > b:
            raise ValueError(f"segment start {a} is after its end {b}")
        ins = self.crossing(a) if inputs is None else inputs
        outs = self.crossing(b) if outputs is None else outputs
        positions = self.segment_nodes(a, b, outs)
        used: set[str] = set(outs)
        for i in positions:
            used.update(self.uses[i])
        g = onnx.GraphProto(name=name or f"{self.model.graph.name or 'graph'}_{a}_{b}")
        g.node.extend(self.nodes[i] for i in positions)
        g.sparse_initializer.extend(
            s for s in self.model.graph.sparse_initializer if s.values.name in used
        )
        g.input.extend(self._value_info(t) for t in ins)
        g.output.extend(self._value_info(t) for t in outs)
        weights: list[bytes | tuple[int, int]] = []
        for t in self.initializers:
            if t not in used:
                continue
            if self.lazy is not None and t in self.lazy.fields:
                weights.append(self.lazy.fields[t])
            else:
                weights.append(
                    _length_delimited(_INIT_FIELD, self.initializers[t].SerializeToString())
                )
        graph_head = g.SerializeToString()
        graph_len = len(graph_head) + sum(_piece_len(w) for w in weights)
        m = onnx.ModelProto(
            ir_version=max(self.model.ir_version, 4),
            producer_name="omdp",
            producer_version=self.model.producer_version,
            domain=self.model.domain,
            model_version=self.model.model_version,
        )
        m.opset_import.extend(self.model.opset_import)
        m.functions.extend(self.model.functions)
        head = (
            m.SerializeToString()
            + _encode_varint(_GRAPH_FIELD << 3 | 2)
            + _encode_varint(graph_len)
        )
        return [head, graph_head, *weights]

    def segment_bytes(self, a: int, b: int, **kwargs) -> bytes:
        """Segment [a, b) serialised, ready for an InferenceSession or a file."""
        view = memoryview(self.lazy.buffer if self.lazy is not None else b"")
        return b"".join(
            p if isinstance(p, bytes) else view[p[0] : p[1]]
            for p in self.segment_parts(a, b, **kwargs)
        )

    def extract(self, a: int, b: int, **kwargs) -> ModelProto:
        """Segment [a, b) as a standalone ModelProto (see `segment_parts`)."""
        return ModelProto.FromString(self.segment_bytes(a, b, **kwargs))

    def write_segment(self, a: int, b: int, path: str, **kwargs) -> int:
        """Write segment [a, b) to a file without building it in memory; returns bytes.
        Big weights are copied from the source file by the kernel where it can."""
        parts = self.segment_parts(a, b, **kwargs)
        size = sum(_piece_len(p) for p in parts)
        if size > PROTOBUF_LIMIT:
            raise ValueError(
                f"segment [{a}, {b}) is {size / 2**30:.2f} GiB, over the 2 GiB "
                "a single ONNX file can hold"
            )
        tmp = f"{path}.part"
        with open(tmp, "wb") as out:
            source = open(self.lazy.path, "rb") if self.lazy is not None else None  # noqa: SIM115
            try:
                for part in parts:
                    if isinstance(part, bytes):
                        out.write(part)
                    else:
                        out.flush()
                        _copy_range(source, out, *part)
            except BaseException:
                out.close()
                os.unlink(tmp)
                raise
            finally:
                if source is not None:
                    source.close()
        os.replace(tmp, path)  # whole or not at all: never a half-written model
        return size

    def _value_info(self, name: str) -> ValueInfoProto:
        vi = self.value_info.get(name)
        if vi is None or not vi.type.ListFields():
            elem = self._elem_type(name)
            if elem is None:
                raise ValueError(
                    f"the type of tensor '{name}' is unknown: shape inference could not reach it"
                )
            return onnx.helper.make_tensor_value_info(name, elem, None)
        return vi

    def _elem_type(self, name: str) -> int | None:
        t = self.initializers.get(name)
        return t.data_type if t is not None else None


# -- preparing a model: the same steps on the lab machine and on every device ---------------


def apply_input_shapes(model: ModelProto, shapes: dict[str, list[int]]) -> None:
    """Set the given inputs' dims, and forget shapes an exporter recorded for the old ones."""
    if not shapes:
        return
    for vi in model.graph.input:
        if vi.name in shapes and vi.type.HasField("tensor_type"):
            dims = vi.type.tensor_type.shape.dim
            del dims[:]
            for v in shapes[vi.name]:
                dims.add().dim_value = int(v)
    del model.graph.value_info[:]
    for out in model.graph.output:
        if out.type.HasField("tensor_type"):
            out.type.tensor_type.ClearField("shape")


def itemsize(elem_type: int) -> int:
    """Bytes per element of an ONNX tensor type (0 for strings and undefined)."""
    if elem_type in (onnx.TensorProto.STRING, onnx.TensorProto.UNDEFINED):
        return 0
    try:
        return np.dtype(_np_type(elem_type)).itemsize
    except (KeyError, TypeError, ValueError):
        return 1


def _np_type(elem_type: int) -> np.dtype:
    convert = getattr(onnx.helper, "tensor_dtype_to_np_dtype", None)  # onnx 1.13+
    if convert is None:
        return np.dtype(getattr(onnx, "mapping").TENSOR_TYPE_TO_NP_TYPE[elem_type])  # noqa: B009
    return np.dtype(convert(elem_type))


def tensor_nbytes(t: onnx.TensorProto) -> int:
    """Size of an initializer from its type and dims (its data need not be loaded)."""
    n = 1
    for d in t.dims:
        n *= d
    return n * itemsize(t.data_type)


def _shape_stub(model: ModelProto) -> ModelProto:
    """The model with big initializers turned into typed inputs: what shape inference needs,
    without serialising the weights."""
    g = model.graph
    stub = ModelProto(ir_version=max(model.ir_version, 4))
    stub.opset_import.extend(model.opset_import)
    stub.functions.extend(model.functions)
    sg = stub.graph
    sg.name = g.name
    sg.node.extend(g.node)
    sg.output.extend(g.output)
    sg.value_info.extend(g.value_info)
    inits = {t.name for t in g.initializer}
    sg.input.extend(i for i in g.input if i.name not in inits)
    for t in g.initializer:
        if tensor_nbytes(t) <= LAZY_THRESHOLD:
            sg.initializer.append(t)
        else:
            sg.input.append(onnx.helper.make_tensor_value_info(t.name, t.data_type, t.dims))
    sg.sparse_initializer.extend(g.sparse_initializer)
    return stub


def infer_shapes(model: ModelProto) -> None:
    """Shape inference into the model's value_info and outputs (ValueError on failure)."""
    g = model.graph
    try:
        inferred = onnx.shape_inference.infer_shapes(
            _shape_stub(model), check_type=False, strict_mode=False, data_prop=True
        )
    except (onnx.shape_inference.InferenceError, RuntimeError) as exc:
        raise ValueError(f"shape inference failed: {exc}") from exc
    del g.value_info[:]
    known = {i.name for i in g.input} | {o.name for o in g.output}
    g.value_info.extend(v for v in inferred.graph.value_info if v.name not in known)
    by_name = {v.name: v for v in inferred.graph.output}
    for out in g.output:
        inf = by_name.get(out.name)
        if inf is not None and inf.type.tensor_type.HasField("shape"):
            out.type.CopyFrom(inf.type)


_FOLD_MAX_ELEMENTS = 4096  # shape arithmetic is small; anything bigger is left alone


def _known_dims(g: GraphProto) -> dict[str, list[int]]:
    dims = {}
    for vi in list(g.input) + list(g.value_info) + list(g.output):
        tt = vi.type.tensor_type
        if (
            vi.type.HasField("tensor_type")
            and tt.HasField("shape")
            and all(d.HasField("dim_value") for d in tt.shape.dim)
        ):
            dims[vi.name] = [d.dim_value for d in tt.shape.dim]
    for t in g.initializer:
        dims[t.name] = list(t.dims)
    return dims


def fold_shape_computations(model: ModelProto) -> int:
    """Replace `Shape` of fully known tensors, and the small arithmetic computed from it,
    by Constant nodes (in place, so node positions do not move). Returns how many.

    With fixed input shapes these values are constants; folding them keeps int64 shape
    tensors out of the cuts and lets shape inference reach every Reshape.
    """
    g = model.graph
    dims = _known_dims(g)
    small = {t.name: t for t in g.initializer if tensor_nbytes(t) <= LAZY_THRESHOLD}
    constant_ok = set(small)
    values: dict[str, object] = {}  # Shape outputs computed here
    fold: list[int] = []
    derived: set[str] = set()
    for i in topological_order(g):
        node = g.node[i]
        standard = node.domain in ("", "ai.onnx")
        if node.op_type == "Constant" and standard:
            constant_ok.update(node.output)
        elif node.op_type == "Shape" and standard and node.input[0] in dims:
            attrs = {a.name: a.i for a in node.attribute}
            shape = dims[node.input[0]][attrs.get("start", 0) : attrs.get("end")]
            values[node.output[0]] = np.array(shape, dtype=np.int64)
            fold.append(i)
            derived.add(node.output[0])
        elif (
            standard
            and len(node.output) == 1
            and node.input
            and node.op_type not in _NONDETERMINISTIC
            and not any(
                a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS)
                for a in node.attribute
            )
            and all(not t or t in derived or t in constant_ok for t in node.input)
            and any(t in derived for t in node.input)
        ):
            fold.append(i)
            derived.add(node.output[0])
    if not fold:
        return 0
    results = _evaluate(model, [i for i in fold if g.node[i].op_type != "Shape"], values, small)
    results.update(values)
    folded = 0
    for i in fold:
        node = g.node[i]
        value = results.get(node.output[0])
        if value is None or value.size > _FOLD_MAX_ELEMENTS:
            continue
        const = onnx.helper.make_node(
            "Constant",
            [],
            [node.output[0]],
            name=node.name,
            value=onnx.numpy_helper.from_array(value, node.output[0]),
        )
        g.node[i].CopyFrom(const)
        folded += 1
    return folded


def _evaluate(model: ModelProto, positions: list[int], feeds: dict, small: dict) -> dict:
    """Run the given nodes with onnx's reference evaluator (they are all small)."""
    if not positions:
        return {}
    from onnx.reference import ReferenceEvaluator

    g = model.graph
    nodes = [g.node[i] for i in positions]
    produced = {o for n in nodes for o in n.output}
    needed = {t for n in nodes for t in n.input if t and t not in produced}
    constants = [n for n in g.node if n.op_type == "Constant" and n.output[0] in needed]
    mini = onnx.helper.make_graph(
        constants + nodes,
        "shapes",
        [
            onnx.helper.make_tensor_value_info(t, onnx.TensorProto.INT64, None)
            for t in needed
            if t in feeds
        ],
        [
            onnx.helper.make_tensor_value_info(n.output[0], onnx.TensorProto.UNDEFINED, None)
            for n in nodes
        ],
        [small[t] for t in needed if t in small],
    )
    m = onnx.helper.make_model(
        mini, opset_imports=model.opset_import, ir_version=max(model.ir_version, 4)
    )
    try:
        outs = ReferenceEvaluator(m).run(None, {t: feeds[t] for t in needed if t in feeds})
    except Exception:  # an op the reference evaluator lacks: leave the graph as it is
        return {}
    return {n.output[0]: v for n, v in zip(nodes, outs) if hasattr(v, "size")}


def cutting_problem() -> str | None:
    """Why this onnx cannot prepare a model exactly as the lab does (None: it can): the
    shape folding in `prepare` runs onnx's reference evaluator, new in onnx 1.13."""
    if importlib.util.find_spec("onnx.reference") is None:
        return f"onnx {onnx.__version__} has no onnx.reference (1.13+ has)"
    return None


def prepare(
    model: ModelProto,
    input_shapes: dict[str, list[int]] | None = None,
    lazy: LazyWeights | None = None,
) -> GraphIndex:
    """Fix input dims, infer shapes, fold shape arithmetic, index: the one way a model is
    read, so the lab machine and every device agree on positions and cuts."""
    apply_input_shapes(model, input_shapes or {})
    infer_shapes(model)
    if fold_shape_computations(model):
        infer_shapes(model)
    return GraphIndex.build(model, lazy)
