"""The graph core: a fixed node order, the cut at every position, and segment extraction.

This module imports only the standard library, numpy and onnx, because the device agent
ships it as-is to devices that have nothing of this project installed.

Words (see DESIGN.md): position p in 0..N sits between nodes n_{p-1} and n_p; the cut X(p)
is the activations produced before p (or graph inputs) and consumed at/after p (or graph
outputs); segment [a, b) is nodes n_a..n_{b-1} as a model with inputs X(a), outputs X(b).
Static tensors (initializers, Constant outputs and anything computed only from them) never
cross a cut: a segment that needs them carries its own copy, including the nodes that
compute them.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable
from dataclasses import dataclass, field

import onnx
from onnx import GraphProto, ModelProto, NodeProto, ValueInfoProto

# Ops whose output depends on nothing but their attributes, yet must not be treated as
# constants (a fresh value on each run).
_NONDETERMINISTIC = {"RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike",
                     "Multinomial", "Bernoulli"}


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
    if any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS)
           for a in node.attribute):
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
    for n, u in zip(graph.node, uses, strict=True):
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
                raise ValueError(f"tensor '{name}' used by node {idx} "
                                 f"('{graph.node[idx].name}') is produced by no node "
                                 "and is not a graph input or initializer")
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
        raise ValueError(f"the graph has a cycle through node {stuck} "
                         f"('{graph.node[stuck].name}')")
    return order


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

    @property
    def n(self) -> int:
        return len(self.nodes)

    @classmethod
    def build(cls, model: ModelProto) -> GraphIndex:
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
        for pos, (node, u) in enumerate(zip(nodes, uses, strict=True)):
            is_static = (node.op_type == "Constant" and node.domain in ("", "ai.onnx")) or (
                bool(u) and node.op_type not in _NONDETERMINISTIC
                and all(name in static for name in u))
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
        return cls(model, nodes, uses, inputs, outputs, initializers, static, static_producer,
                   producer, last_use, vi)

    # -- cuts ---------------------------------------------------------------------------

    def crossing(self, p: int) -> list[str]:
        """X(p): activations crossing position p, in order of production (then name)."""
        self._check_position(p)
        if p == self.n:
            return list(self.outputs)
        out = [t for t, prod in self.producer.items()
               if prod < p <= self.last_use.get(t, -2)]
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

    def extract(self, a: int, b: int, inputs: list[str] | None = None,
                outputs: list[str] | None = None, name: str | None = None) -> ModelProto:
        """Segment [a, b) as a standalone model: inputs X(a), outputs X(b).

        `inputs`/`outputs` may be passed when the caller already holds the cuts (saves a
        scan). Only the initializers the segment reads are copied into it.
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
        g.initializer.extend(self.initializers[t] for t in self.initializers if t in used)
        g.sparse_initializer.extend(s for s in self.model.graph.sparse_initializer
                                    if s.values.name in used)
        g.input.extend(self._value_info(t) for t in ins)
        g.output.extend(self._value_info(t) for t in outs)
        m = onnx.ModelProto(ir_version=max(self.model.ir_version, 4),
                            producer_name="omdp", producer_version=self.model.producer_version,
                            domain=self.model.domain, model_version=self.model.model_version)
        m.opset_import.extend(self.model.opset_import)
        m.functions.extend(self.model.functions)
        m.graph.CopyFrom(g)
        return m

    def _value_info(self, name: str) -> ValueInfoProto:
        vi = self.value_info.get(name)
        if vi is None or not vi.type.ListFields():
            elem = self._elem_type(name)
            if elem is None:
                raise ValueError(f"the type of tensor '{name}' is unknown: shape inference "
                                 "could not reach it")
            return onnx.helper.make_tensor_value_info(name, elem, None)
        return vi

    def _elem_type(self, name: str) -> int | None:
        t = self.initializers.get(name)
        return t.data_type if t is not None else None

