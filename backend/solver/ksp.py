"""K shortest paths in a DAG, exactly, with a deterministic order among ties.

The search every ranker shares: distances to the target (computed by the caller's graph
encoding), each path = the shortest-path tree plus a sequence of sidetracks, best-first
over a tree of deviations where every path has exactly one parent and at most (path
length + 1) children, in the spirit of Eppstein. Out-edges of a node are sorted lazily,
only when the search reaches them.

`Graph` is what a ranker implements (the segment and layer rankers encode their own
compressed DAGs); `Dag` is an explicit DAG over numbered nodes, also the exact fallback for
the throughput objective (K-best bottleneck paths by a threshold search: count paths under
a bottleneck by DP, bisect on the distinct edge values, then additive searches on the
restricted graph). `k_shortest_paths_dag` is the generic entry point over any edge list.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from backend.errors import OmdpError

ENUMERATE_LIMIT = 400_000  # cut vectors; above this, rankers search instead of enumerating
Method = Literal["auto", "enumerate", "search", "dag"]
METHODS: tuple[str, ...] = ("auto", "enumerate", "search", "dag")
MAX_DAG_EDGES = 10_000_000  # an explicit Dag keeps ~6 numbers per edge: ~0.5 GiB at the limit
TIE_EXTRA_CAP = 10_000  # near-tie paths collected beyond K (only float-noise ties need it)
TARGET = -1  # the target node, in every graph encoding


@dataclass(frozen=True, slots=True)
class DagPath:
    """A path of `k_shortest_paths_dag`: its cost, node sequence and edge indices."""

    cost: float
    nodes: tuple[Hashable, ...]
    edges: tuple[int, ...]
    secondary: float | None = None  # max objective: sum of the secondary weights


class Graph:
    """A DAG seen from the search: a source, the shortest-path tree (`succ`) and each
    node's out-edges sorted by (value, lexid), where value = weight + distance of the head
    and lexid orders a node's edges the way the final tie-break orders paths."""

    source: int
    root_value: float  # distance from the source to the target

    def __init__(self) -> None:
        self._tree: dict[int, tuple[tuple[int, ...], tuple[int, ...]]] = {TARGET: ((), ())}

    def succ(self, node: int) -> tuple[int, int]:
        """(head, lexid) of the node's tree edge (head TARGET at the end)."""
        raise NotImplementedError

    def ranked(self, node: int, r: int) -> tuple[float, int, int] | None:
        """(delta, head, lexid) of the node's r-th out-edge (r >= 1), None if none."""
        raise NotImplementedError

    def tree(self, node: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """Tails and lexids of the tree path from `node` to the target (memoised)."""
        memo = self._tree
        if node in memo:
            return memo[node]
        chain = []
        v = node
        while v not in memo:
            head, lexid = self.succ(v)
            chain.append((v, lexid))
            v = head
        nodes, lex = memo[v]
        for v, lexid in reversed(chain):
            nodes, lex = (v, *nodes), (lexid, *lex)
            memo[v] = (nodes, lex)
        return memo[node]


def deviation_search(
    g: Graph, k: int, tol: float
) -> list[tuple[float, tuple[int, ...], tuple[int, ...]]]:
    """The k best source-target paths of `g` in (cost, lexid tuple) order, as
    (key, tails, lexids), plus any path whose key is within `tol` of the k-th.

    A path = tree path with deviations; a popped path whose last deviation is at index i
    with rank r has children: rank r + 1 at i (its sibling) and rank 1 at each later node
    of its tree completion. Every path has exactly one parent and costs no less, so a
    best-first search pops paths in order.
    """
    if not math.isfinite(g.root_value):
        return []
    nodes, lex = g.tree(g.source)
    heap: list[tuple] = [(g.root_value, lex, nodes, -1, 0, g.root_value)]
    out: list[tuple[float, tuple[int, ...], tuple[int, ...]]] = []
    limit = math.inf
    while heap:
        key, lex, nodes, last, rank, base = heapq.heappop(heap)
        if len(out) >= k and (key > limit or len(out) >= k + TIE_EXTRA_CAP):
            break
        out.append((key, nodes, lex))
        if len(out) == k:
            limit = key + tol
        if last >= 0:
            e = g.ranked(nodes[last], rank + 1)
            if e is not None:
                delta, head, lexid = e
                tn, tl = g.tree(head)
                heapq.heappush(
                    heap,
                    (
                        base + delta,
                        (*lex[:last], lexid, *tl),
                        (*nodes[: last + 1], *tn),
                        last,
                        rank + 1,
                        base,
                    ),
                )
        for j in range(last + 1, len(nodes)):
            e = g.ranked(nodes[j], 1)
            if e is not None:
                delta, head, lexid = e
                tn, tl = g.tree(head)
                heapq.heappush(
                    heap,
                    (key + delta, (*lex[:j], lexid, *tl), (*nodes[: j + 1], *tn), j, 1, key),
                )
    return out


def tolerance(*scales: float) -> float:
    """Near-tie window for keys built from values of these magnitudes: far above float
    noise (extra candidates are harmless, they are sorted out by their canonical cost)."""
    finite = [abs(s) for s in scales if math.isfinite(s)]
    return 1e-9 * (1.0 + sum(finite))


class Dag:
    """An explicit DAG over nodes 0..n-1 with edges in insertion order (= lexid order)."""

    def __init__(self, n: int, src: np.ndarray, dst: np.ndarray, topo: np.ndarray | None = None):
        self.n = n
        self.src = np.asarray(src, dtype=np.int64)
        self.dst = np.asarray(dst, dtype=np.int64)
        order = np.argsort(self.src, kind="stable")
        counts = np.bincount(self.src, minlength=n)
        self.start = np.concatenate([[0], np.cumsum(counts)])
        self.out = order
        self.topo = np.arange(n) if topo is None else topo

    @classmethod
    def from_edges(cls, n: int, src: Sequence[int], dst: Sequence[int]) -> Dag:
        """Build with a topological order from Kahn's algorithm (ValueError on a cycle)."""
        src_a, dst_a = np.asarray(src, dtype=np.int64), np.asarray(dst, dtype=np.int64)
        dag = cls(n, src_a, dst_a, np.arange(n))
        indeg = np.bincount(dst_a, minlength=n).tolist()
        ready = [v for v in range(n) if indeg[v] == 0]
        topo = []
        while ready:
            v = ready.pop()
            topo.append(v)
            for e in dag.out[dag.start[v] : dag.start[v + 1]].tolist():
                h = int(dst_a[e])
                indeg[h] -= 1
                if indeg[h] == 0:
                    ready.append(h)
        if len(topo) != n:
            raise ValueError("the graph has a cycle: k_shortest_paths_dag needs a DAG")
        dag.topo = np.array(topo)
        return dag

    def edges_of(self, v: int) -> np.ndarray:
        return self.out[self.start[v] : self.start[v + 1]]

    def count_paths(self, s: int, t: int, allowed: np.ndarray, cap: int) -> int:
        """Number of s-t paths over allowed edges, capped at `cap`."""
        cnt = np.zeros(self.n)
        cnt[t] = 1.0
        for v in self.topo[::-1].tolist():
            if v == t:
                continue
            es = self.edges_of(v)
            es = es[allowed[es]]
            if len(es):
                cnt[v] = min(cap, float(cnt[self.dst[es]].sum()))
        return int(cnt[s])

    def search(
        self, s: int, t: int, w: np.ndarray, allowed: np.ndarray, k: int
    ) -> list[tuple[float, tuple[int, ...]]]:
        """k best s-t paths by the sum of w over allowed edges: (key, edge ids)."""
        g = _DagGraph(self, s, t, w, allowed)
        return [(key, lex) for key, _, lex in deviation_search(g, k, g.tol)]

    def top_k_sum(self, s: int, t: int, w: np.ndarray, k: int) -> list[tuple[int, ...]]:
        return [p for _, p in self.search(s, t, w, np.isfinite(w), k)]

    def top_k_max(
        self, s: int, t: int, w_max: np.ndarray, w_sum: np.ndarray, k: int
    ) -> list[tuple[int, ...]]:
        """Edge paths that contain the k best by (max w_max, sum w_sum, edge ids).

        Threshold method: theta = the k-th smallest bottleneck (bisect over distinct edge
        values with path counts), then all paths below theta, plus the best k by w_sum
        among paths whose bottleneck is <= theta (those equal to theta rank by w_sum).
        """
        finite = np.isfinite(w_max) & np.isfinite(w_sum)
        total = self.count_paths(s, t, finite, k + 1)
        if total == 0:
            return []
        if total <= k:
            return [p for _, p in self.search(s, t, w_sum, finite, total)]
        values = np.unique(w_max[finite])
        lo, hi = 0, len(values) - 1  # count(<= values[hi]) >= k
        while lo < hi:
            mid = (lo + hi) // 2
            if self.count_paths(s, t, finite & (w_max <= values[mid]), k) >= k:
                hi = mid
            else:
                lo = mid + 1
        theta = values[lo]
        below = finite & (w_max < theta)
        n_below = self.count_paths(s, t, below, k)
        paths = [p for _, p in self.search(s, t, w_sum, below, n_below)] if n_below else []
        paths += [p for _, p in self.search(s, t, w_sum, finite & (w_max <= theta), k)]
        return list(dict.fromkeys(paths))


ExplicitDag = tuple["Dag", np.ndarray, np.ndarray, np.ndarray]  # dag, w_sum, w_max, heads


def check_dag_size(n_edges: int, what: str, fix: str) -> None:
    """Refuse, before building it, an explicit DAG of more than MAX_DAG_EDGES edges."""
    if n_edges > MAX_DAG_EDGES:
        raise OmdpError(
            f"{what} needs an explicit graph of {n_edges:,} edges; the limit is {MAX_DAG_EDGES:,}",
            fix,
        )


class _DagGraph(Graph):
    """An explicit DAG as a search graph: distances by a reverse topological pass."""

    def __init__(self, dag: Dag, s: int, t: int, w: np.ndarray, allowed: np.ndarray):
        super().__init__()
        self.dag, self.t, self.w = dag, t, w
        self.allowed = allowed & np.isfinite(w)
        dist = np.full(dag.n, np.inf)
        dist[t] = 0.0
        for v in dag.topo[::-1].tolist():
            if v == t:
                continue
            es = dag.edges_of(v)
            es = es[self.allowed[es]]
            if len(es):
                dist[v] = float(np.min(w[es] + dist[dag.dst[es]]))
        self.dist = dist
        self.source = s
        self.root_value = float(dist[s])
        finite_w = np.abs(w[self.allowed])
        finite_d = np.abs(dist[np.isfinite(dist)])
        scale = finite_w.max(initial=0.0) + finite_d.max(initial=0.0)
        self.tol = 1e-12 * (1 + dag.n) * (1.0 + scale)  # error grows with path length
        self._sorted: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def _out(self, v: int) -> tuple[np.ndarray, np.ndarray]:
        got = self._sorted.get(v)
        if got is None:
            es = self.dag.edges_of(v)
            es = es[self.allowed[es]]
            vals = self.w[es] + self.dist[self.dag.dst[es]]
            keep = np.isfinite(vals)
            es, vals = es[keep], vals[keep]
            order = np.lexsort((es, vals))
            got = (vals[order], es[order])
            self._sorted[v] = got
        return got

    def _head(self, e: int) -> int:
        h = int(self.dag.dst[e])
        return TARGET if h == self.t else h

    def succ(self, node: int) -> tuple[int, int]:
        _, es = self._out(node)
        return self._head(int(es[0])), int(es[0])

    def ranked(self, node: int, r: int) -> tuple[float, int, int] | None:
        vals, es = self._out(node)
        if r >= len(es):
            return None
        return float(vals[r] - vals[0]), self._head(int(es[r])), int(es[r])


def k_shortest_paths_dag(
    edges: Iterable[tuple[Hashable, Hashable, float]],
    source: Hashable,
    target: Hashable,
    k: int,
    *,
    objective: Literal["sum", "max"] = "sum",
    secondary: Sequence[float] | None = None,
) -> list[DagPath]:
    """The k best source-target paths of a DAG given as (tail, head, weight) edges.

    objective "sum": by total weight (negative weights are fine in a DAG); "max": by the
    largest edge weight, ties by the sum of `secondary` weights (default: the weights).
    Remaining ties: by edge indices (insertion order), lexicographically. inf = no edge.
    Parallel edges are distinct paths. Raises ValueError on a cycle or unknown endpoint.
    """
    if k < 1:
        raise ValueError("k must be >= 1")
    ids: dict[Hashable, int] = {}
    src, dst, w = [], [], []
    for a, b, weight in edges:
        src.append(ids.setdefault(a, len(ids)))
        dst.append(ids.setdefault(b, len(ids)))
        w.append(float(weight))
    if source not in ids or target not in ids:
        raise ValueError("source and target must be endpoints of some edge")
    names = list(ids)
    dag = Dag.from_edges(len(ids), src, dst)
    wa = np.array(w, dtype=float)
    s, t = ids[source], ids[target]
    if source == target:
        return [DagPath(0.0, (source,), ())]
    if objective == "sum":
        paths = dag.top_k_sum(s, t, wa, k)
        sec = None
    elif objective == "max":
        sec = wa if secondary is None else np.asarray(secondary, dtype=float)
        if sec.shape != wa.shape:
            raise ValueError("secondary needs one weight per edge")
        paths = dag.top_k_max(s, t, wa, sec, k)
    else:
        raise ValueError(f"objective must be 'sum' or 'max', got {objective!r}")
    results = []
    for p in paths:
        if objective == "max":
            cost = max(w[e] for e in p)
        else:
            cost = 0.0
            for e in p:  # in path order, like networkx.path_weight
                cost += w[e]
        second = None
        if sec is not None:
            second = 0.0
            for e in p:
                second += float(sec[e])
        nodes = (names[src[p[0]]], *(names[dst[e]] for e in p))
        results.append(DagPath(cost, nodes, p, second))
    results.sort(key=lambda r: (r.cost, r.secondary or 0.0, r.edges))
    return results[:k]
