"""Exact top-K partitions of a device chain, and K shortest paths in a general DAG.

How it is exact and fast
------------------------
Every partition is one path in a DAG, and every path one partition (no duplicates: a cut
vector p_1..p_{D-1} is the same thing as the per-device segments [p_{i-1}, p_i), because
p_i = number of positions handled by devices 0..i; an empty device just has p_{i-1} = p_i).

- Small cut spaces (segment-level, the common case: 64 candidates x 3 devices = 2080 cut
  vectors) are enumerated once; bandwidth-independent parts (compute sums, which cut each
  link carries) are precomputed, so re-ranking is a few numpy gathers plus a partial sort.
- Larger ones use a deviation ("sidetrack") search in the spirit of Eppstein: distances to
  the target by a vectorised backward DP, each path = the shortest-path tree plus a
  sequence of sidetracks, best-first over a tree of deviations where every path has
  exactly one parent and at most (path length + 1) children. Out-edges of a node are
  sorted lazily, only when a search reaches them. For layer-level instances the DAG is
  compressed to "run starts" (device d starts computing at layer l), so a path has at most
  D + 1 edges and the DP is a cumulative minimum along positions per device.
- Throughput (max stage) has no additive structure: K-best bottleneck paths are found
  exactly by a threshold search (count paths under a bottleneck by DP, bisect on the
  distinct stage times) followed by additive searches on the restricted graph.

Order: cost, then (throughput only) end-to-end latency, then the cut vector
lexicographically. Costs are always recomputed by the canonical functions of
`backend.solver.costs`, and near-ties (1e-9 relative) at the K-th place are all collected before
the final sort, so float noise in the search never changes which partitions are returned.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from backend.errors import OmdpError
from backend.solver.costs import (
    COST_MODELS,
    OBJECTIVES,
    Instance,
    LayerInstance,
    SegmentInstance,
    Stage,
    Transfer,
    add_links,
    compute_sum,
    count_partitions,
    layer_breakdowns,
    layer_costs,
    layer_rows,
    segment_breakdowns,
    segment_costs,
    segment_link_ms,
    segment_rows,
)

ENUMERATE_LIMIT = 400_000  # cut vectors; above this, search instead of enumerating
TIE_EXTRA_CAP = 10_000  # near-tie paths collected beyond K (only float-noise ties need it)
Method = Literal["auto", "enumerate", "search", "dag"]
METHODS = ("auto", "enumerate", "search", "dag")
_TARGET = -1


# --------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------


@dataclass(slots=True)
class Partition:
    """One ranked partition: which device runs which segment, and what it costs."""

    rank: int
    total_ms: float  # the objective: end-to-end latency, or the bottleneck stage time
    cuts: tuple[int, ...]  # p_1..p_{D-1}
    stages: list[Stage]  # one per device, empty ones included (start == end)
    transfers: list[Transfer]
    objective: str
    cost_model: str
    latency_ms: float  # end-to-end time of one frame
    bottleneck: str  # slowest stage, e.g. "compute phone" or "link glasses-phone"
    bottleneck_ms: float
    measured_total_ms: float | None = None  # objective under each cost model, when known
    estimated_total_ms: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (what `omdp solve --json` prints)."""
        return {
            "rank": self.rank,
            "total_ms": self.total_ms,
            "objective": self.objective,
            "cost_model": self.cost_model,
            "cuts": list(self.cuts),
            "latency_ms": self.latency_ms,
            "bottleneck": self.bottleneck,
            "bottleneck_ms": self.bottleneck_ms,
            "measured_total_ms": self.measured_total_ms,
            "estimated_total_ms": self.estimated_total_ms,
            "stages": [
                {
                    "device": s.device,
                    "start": s.start,
                    "end": s.end,
                    "compute_ms": s.compute_ms,
                    "measured_ms": s.measured_ms,
                    "estimated_ms": s.estimated_ms,
                    "memory_bytes": s.memory_bytes,
                }
                for s in self.stages
            ],
            "transfers": [
                {
                    "link": t.link,
                    "from": t.src,
                    "to": t.dst,
                    "position": t.position,
                    "bytes": t.bytes,
                    "ms": t.ms,
                }
                for t in self.transfers
            ],
        }


@dataclass(frozen=True, slots=True)
class DagPath:
    """A path of `k_shortest_paths_dag`: its cost, node sequence and edge indices."""

    cost: float
    nodes: tuple[Hashable, ...]
    edges: tuple[int, ...]
    secondary: float | None = None  # max objective: sum of the secondary weights


# --------------------------------------------------------------------------------------
# The deviation search (shared by every graph encoding)
# --------------------------------------------------------------------------------------


class _Graph:
    """A DAG seen from the search: a source, the shortest-path tree (`succ`) and each
    node's out-edges sorted by (value, lexid), where value = weight + distance of the head
    and lexid orders a node's edges the way the final tie-break orders paths."""

    source: int
    root_value: float  # distance from the source to the target

    def __init__(self) -> None:
        self._tree: dict[int, tuple[tuple[int, ...], tuple[int, ...]]] = {_TARGET: ((), ())}

    def succ(self, node: int) -> tuple[int, int]:
        """(head, lexid) of the node's tree edge (head _TARGET at the end)."""
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


def _deviation_search(
    g: _Graph, k: int, tol: float
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


def _tolerance(*scales: float) -> float:
    """Near-tie window for keys built from values of these magnitudes: far above float
    noise (extra candidates are harmless, they are sorted out by their canonical cost)."""
    finite = [abs(s) for s in scales if math.isfinite(s)]
    return 1e-9 * (1.0 + sum(finite))


# --------------------------------------------------------------------------------------
# Explicit DAG (generic; also the exact fallback for throughput)
# --------------------------------------------------------------------------------------


class _Dag:
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
    def from_edges(cls, n: int, src: Sequence[int], dst: Sequence[int]) -> _Dag:
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
        return [(key, lex) for key, _, lex in _deviation_search(g, k, g.tol)]

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


class _DagGraph(_Graph):
    """An explicit DAG as a search graph: distances by a reverse topological pass."""

    def __init__(self, dag: _Dag, s: int, t: int, w: np.ndarray, allowed: np.ndarray):
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
        return _TARGET if h == self.t else h

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
    dag = _Dag.from_edges(len(ids), src, dst)
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


# --------------------------------------------------------------------------------------
# Segment-level: the layered DAG (device t ends its segment at candidate i)
# --------------------------------------------------------------------------------------


class _SegmentGraph(_Graph):
    """Node id t*M + i: devices 0..t-1 handled positions [0, C_i). Source = 0."""

    def __init__(self, seg: np.ndarray, link_ms: np.ndarray):
        super().__init__()
        d, m, _ = seg.shape
        self.m, self.d = m, d
        vals: list[np.ndarray | None] = [None] * d  # the last device has one edge per node
        dist = seg[d - 1][:, m - 1].copy()
        for t in range(d - 2, -1, -1):
            v = seg[t] + link_ms[t][None, :] + dist[None, :]
            vals[t] = v
            dist = v.min(axis=1)
        self.vals = vals
        self.source = 0
        self.root_value = float(dist[0])
        self._sorted: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def _out(self, node: int) -> tuple[np.ndarray, np.ndarray]:
        got = self._sorted.get(node)
        if got is None:
            t, i = divmod(node, self.m)
            row = self.vals[t][i]
            order = np.argsort(row, kind="stable")
            order = order[np.isfinite(row[order])]
            got = (row[order], order)
            self._sorted[node] = got
        return got

    def succ(self, node: int) -> tuple[int, int]:
        t, i = divmod(node, self.m)
        if t == self.d - 1:
            return _TARGET, self.m - 1
        j = int(np.argmin(self.vals[t][i]))
        return (t + 1) * self.m + j, j

    def ranked(self, node: int, r: int) -> tuple[float, int, int] | None:
        t, _ = divmod(node, self.m)
        if t == self.d - 1:
            return None
        vals, js = self._out(node)
        if r >= len(js):
            return None
        j = int(js[r])
        return float(vals[r] - vals[0]), (t + 1) * self.m + j, j

    def row(self, nodes: tuple[int, ...]) -> list[int]:
        return [v % self.m for v in nodes] + [self.m - 1]


_ExplicitDag = tuple["_Dag", np.ndarray, np.ndarray, np.ndarray]


def _segment_dag(seg: np.ndarray, link_ms: np.ndarray) -> _ExplicitDag:
    """Explicit layered DAG of a segment instance: (dag, w_sum, w_max, head index j)."""
    d, m, _ = seg.shape
    iu, ju = np.triu_indices(m)
    src, dst, w_sum, w_max, heads = [], [], [], [], []
    for t in range(d):
        if t < d - 1:
            i, j = iu, ju
            comp, link = seg[t, i, j], link_ms[t, j]
            src.append(t * m + i)
            dst.append((t + 1) * m + j)
            w_sum.append(comp + link)
            w_max.append(np.maximum(comp, link))
        else:
            i = np.arange(m)
            j = np.full(m, m - 1)
            comp = seg[t, i, m - 1]
            src.append(t * m + i)
            dst.append(np.full(m, d * m))
            w_sum.append(comp)
            w_max.append(comp)
        heads.append(j)
    dag = _Dag(d * m + 1, np.concatenate(src), np.concatenate(dst))
    return dag, np.concatenate(w_sum), np.concatenate(w_max), np.concatenate(heads)


# --------------------------------------------------------------------------------------
# Segment-level ranking with precomputation (re-ranking after a bandwidth change)
# --------------------------------------------------------------------------------------


class Ranker:
    """Ranks one segment-level instance again and again under changing link conditions.

    Built once: the feasible cut vectors (when there are at most `enumerate_limit`), their
    compute sums and compute bottlenecks, and which cut each link carries. `rank()` then
    only prices the links (an (L, M) table) and adds it in, so re-ranking costs a few numpy
    gathers and a partial sort. Bigger cut spaces fall back to the exact searches.
    """

    def __init__(
        self,
        instance: SegmentInstance,
        objective: str = "latency",
        cost_model: str = "measured",
        *,
        enumerate_limit: int = ENUMERATE_LIMIT,
        method: Method = "auto",
    ):
        _check_choice(objective, OBJECTIVES, "objective")
        _check_choice(method, METHODS, "method")
        instance.check_cost_model(cost_model)
        self.instance = instance
        self.objective = objective
        self.cost_model = cost_model
        self.seg = instance.segment_ms(cost_model)
        d, m = instance.n_devices, instance.n_candidates
        if method == "auto":
            small = count_partitions(m, d) <= enumerate_limit
            method = "enumerate" if small else "search" if objective == "latency" else "dag"
        self.method = method
        self.rows: np.ndarray | None = None
        if method == "enumerate":
            self.rows = segment_rows(self.seg)
            self._compute, self._worst = compute_sum(self.seg, self.rows)
            self._tie_cols = tuple(
                np.ascontiguousarray(self.rows[:, c]) for c in range(d - 1, 0, -1)
            )

    @property
    def enumerated(self) -> bool:
        return self.rows is not None

    def link_ms(
        self, bandwidth_mbps: Any = None, latency_ms: Any = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(link_ms (L, M), tau (L, M)) for these link conditions (see segment_link_ms)."""
        bw, lat = self.instance.link_arrays(bandwidth_mbps, latency_ms)
        return segment_link_ms(self.instance, bw, lat)

    def rank(self, bandwidth_mbps: Any = None, latency_ms: Any = None, k: int = 10) -> Ranking:
        """The k best partitions under these bandwidths (Mbit/s; 0 = link down) and
        latencies (ms), as sequences in link order or {link name: value} mappings;
        anything not given keeps the instance's value."""
        link, tau = self.link_ms(bandwidth_mbps, latency_ms)
        return self.rank_link_ms(link, k, tau)

    def costs(self, link_ms: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(latency, bottleneck) of every enumerated partition (rows order)."""
        if self.rows is None:
            raise ValueError("costs() needs an enumerated ranker")
        return add_links(self._compute, self._worst, link_ms, self.rows)

    def rank_link_ms(self, link_ms: np.ndarray, k: int, tau: np.ndarray | None = None) -> Ranking:
        """Rank with link stage times given directly (L, M), e.g. averaged over a trace."""
        _check_k(k)
        if self.rows is not None:
            latency, worst = self.costs(link_ms)
            primary, second = (latency, None) if self.objective == "latency" else (worst, latency)
            pick = _select(primary, second, self._tie_cols, k)
            rows = self.rows[pick]
            return Ranking(self, rows, primary[pick], latency[pick], worst[pick], link_ms, tau)
        rows = self._search_rows(link_ms, k)
        return self._ranking_from_rows(rows, link_ms, tau, k)

    def _search_rows(self, link_ms: np.ndarray, k: int) -> np.ndarray:
        d = self.instance.n_devices
        if self.method == "search" and self.objective == "latency":
            g = _SegmentGraph(self.seg, link_ms)
            tol = _tolerance(g.root_value, float(np.abs(link_ms[np.isfinite(link_ms)]).sum()))
            found = _deviation_search(g, k, tol)
            return np.array([g.row(nodes) for _, nodes, _ in found], dtype=np.int64).reshape(
                -1, d + 1
            )
        dag, w_sum, w_max, heads = _segment_dag(self.seg, link_ms)
        sink = dag.n - 1
        if self.objective == "latency":
            paths = dag.top_k_sum(0, sink, w_sum, k)
        else:
            paths = dag.top_k_max(0, sink, w_max, w_sum, k)
        m = self.instance.n_candidates
        return np.array(
            [[0, *(int(heads[e]) for e in p[:-1]), m - 1] for p in paths], dtype=np.int64
        ).reshape(-1, d + 1)

    def _ranking_from_rows(
        self, rows: np.ndarray, link_ms: np.ndarray, tau: np.ndarray | None, k: int
    ) -> Ranking:
        latency, worst = segment_costs(self.seg, link_ms, rows)
        primary, second = (latency, None) if self.objective == "latency" else (worst, latency)
        ok = np.isfinite(primary)
        rows, latency, worst, primary = rows[ok], latency[ok], worst[ok], primary[ok]
        second = None if second is None else second[ok]
        cols = tuple(rows[:, c] for c in range(rows.shape[1] - 2, 0, -1))
        pick = _select(primary, second, cols, k)
        return Ranking(self, rows[pick], primary[pick], latency[pick], worst[pick], link_ms, tau)


def _select(
    primary: np.ndarray, secondary: np.ndarray | None, tie_cols: tuple[np.ndarray, ...], k: int
) -> np.ndarray:
    """Indices of the k best finite entries by (primary, secondary, cut vector), exactly:
    everything tied with the k-th value takes part in the final sort."""
    if len(primary) > k:
        kth = np.partition(primary, k - 1)[k - 1]
        cand = np.flatnonzero(primary <= kth)
    else:
        cand = np.arange(len(primary))
    cand = cand[np.isfinite(primary[cand])]
    keys = [c[cand] for c in tie_cols]
    if secondary is not None:
        keys.append(secondary[cand])
    keys.append(primary[cand])
    return cand[np.lexsort(keys)[:k]]


@dataclass
class Ranking:
    """The result of one `Ranker.rank`: arrays first (cheap), Partition objects on demand."""

    ranker: Ranker
    rows: np.ndarray  # (n, D+1) candidate indices, row = (0, i_1, .., i_{D-1}, M-1)
    total_ms: np.ndarray  # objective values, best first
    latency_ms: np.ndarray
    bottleneck_ms: np.ndarray
    link_ms: np.ndarray
    tau: np.ndarray | None = None
    _partitions: list[Partition] | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def cuts(self) -> np.ndarray:
        """(n, D-1) cut positions p_1..p_{D-1}."""
        return self.ranker.instance.candidates[self.rows[:, 1:-1]]

    def partitions(self) -> list[Partition]:
        if self._partitions is None:
            self._partitions = _segment_partitions(self)
        return self._partitions


def _segment_partitions(r: Ranking) -> list[Partition]:
    inst, ranker = r.ranker.instance, r.ranker
    tau = r.tau
    if tau is None:  # link times given directly: per-transfer times are not meaningful
        tau = np.full_like(r.link_ms, np.nan)
    others: dict[str, np.ndarray] = {}
    for model in COST_MODELS:
        if model == "estimated" and inst.estimated_ms is None:
            continue
        lat, worst = segment_costs(inst.segment_ms(model), r.link_ms, r.rows)
        others[model] = lat if ranker.objective == "latency" else worst
    out = []
    parts = segment_breakdowns(inst, r.rows, ranker.cost_model, r.link_ms, tau)
    cuts = [tuple(x) for x in r.cuts.tolist()]
    for n, (stages, transfers, name, worst_ms) in enumerate(parts):
        out.append(
            Partition(
                rank=n + 1,
                total_ms=float(r.total_ms[n]),
                cuts=cuts[n],
                stages=stages,
                transfers=transfers,
                objective=ranker.objective,
                cost_model=ranker.cost_model,
                latency_ms=float(r.latency_ms[n]),
                bottleneck=name,
                bottleneck_ms=worst_ms,
                measured_total_ms=_opt(others.get("measured"), n),
                estimated_total_ms=_opt(others.get("estimated"), n),
            )
        )
    return out


def _opt(values: np.ndarray | None, n: int) -> float | None:
    if values is None or not math.isfinite(values[n]):
        return None
    return float(values[n])


# --------------------------------------------------------------------------------------
# Layer-level: run-start DAG, vectorised along positions
# --------------------------------------------------------------------------------------


def _range_argmin(h: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Min and first argmin of h[lo..hi] (inclusive) per query; (inf, -1) when lo > hi."""
    n = len(h)
    if n == 0:
        return np.full(len(lo), np.inf), np.full(len(lo), -1)
    table = [np.arange(n)]
    span = 1
    while 2 * span <= n:
        prev = table[-1]
        a, b = prev[: n - 2 * span + 1], prev[span : n - span + 1]
        table.append(np.where(h[b] < h[a], b, a))
        span *= 2
    full = np.zeros((len(table), n), dtype=np.int64)
    for j, row in enumerate(table):
        full[j, : len(row)] = row
    valid = lo <= hi
    length = np.where(valid, hi - lo + 1, 1)
    level = np.floor(np.log2(length)).astype(np.int64)
    lo_c = np.where(valid, lo, 0)
    a = full[level, lo_c]
    b = full[level, np.where(valid, hi, 0) - (1 << level) + 1]
    arg = np.where(h[b] < h[a], b, a)
    return np.where(valid, h[arg], np.inf), np.where(valid, arg, -1)


def _suffix_argmin(h: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each start s in 0..n: min and first argmin of h[s:] ((inf, -1) for s = n)."""
    n = len(h)
    sm = np.minimum.accumulate(h[::-1])[::-1]
    idx = np.where((h == sm) & np.isfinite(h), np.arange(n), n)
    am = np.minimum.accumulate(idx[::-1])[::-1]
    return np.append(sm, np.inf), np.where(np.append(am, n) < n, np.append(am, n), -1)


class _LayerGraph(_Graph):
    """Run-start DAG of a layer instance: node l*D + d = "device d starts at layer l, the
    data is already there". Edges: to (m, e), e > d, after running [l, m) on d and moving
    X(m) from d to e; or to the end after running [l, N) (and moving X(N) to the sink).

    With P_d the prefix sums, the value of edge (m, e) is P_d[m] + tr[m,d,e] + dist(m, e),
    independent of l, so dist(l, d) = min over m in (l, ub] of those values - P_d[l]:
    a suffix minimum along positions per device (a range minimum if layers are forbidden).
    Each device's edge values are sorted once; a node's sorted out-list is that order
    filtered by l < m <= ub, built lazily in doubling chunks.
    """

    def __init__(self, inst: LayerInstance):
        super().__init__()
        n, d = inst.n_positions, inst.n_devices
        self.n, self.d = n, d
        pre = inst.prefix_ms
        tr = inst.transfer_ms
        bad = ~np.isfinite(inst.compute_ms)  # (N, D)
        pos = np.arange(n)
        # ub[d, l]: runs [l, m) on d are allowed for m <= ub (next forbidden layer >= l)
        ub = np.empty((d, n), dtype=np.int64)
        for dev in range(d):
            nxt = np.where(bad[:, dev], pos, n)
            ub[dev] = np.minimum.accumulate(nxt[::-1])[::-1]
        self.ub = ub
        dist = np.full((d, n), np.inf)
        succ_m = np.full((d, n), -1, dtype=np.int64)
        succ_e = np.full((d, n), -1, dtype=np.int64)
        sorted_out = [None] * d
        for dev in range(d - 1, -1, -1):
            best = np.full(n, np.inf)
            best_e = np.full(n, -1, dtype=np.int64)
            ms, es, vs = [], [], []
            for e in range(d - 1, dev, -1):
                v = pre[dev, :n] + tr[:n, dev, e] + dist[e]
                v[0] = np.inf  # m > l >= 0
                better = v < best
                best = np.where(better, v, best)
                best_e = np.where(better, e, best_e)
                ms.append(pos[1:])
                es.append(np.full(n - 1, e))
                vs.append(v[1:])
            end = pre[dev, n] + inst.sink_ms[dev]
            if np.all(ub[dev] == n):
                rmin, rarg = _suffix_argmin(best)
                rmin, rarg = rmin[1:], rarg[1:]  # range starts at l + 1
                end_ok = np.ones(n, dtype=bool)
            else:
                rmin, rarg = _range_argmin(best, pos + 1, np.minimum(ub[dev], n - 1))
                end_ok = ub[dev] == n
            take_end = end_ok & (end < rmin)
            dist[dev] = np.where(take_end, end, rmin) - pre[dev, :n]
            succ_m[dev] = np.where(take_end, n, rarg)
            succ_e[dev] = np.where(take_end, -1, best_e[np.maximum(rarg, 0)])
            ms.append(np.array([n]))
            es.append(np.array([-1]))
            vs.append(np.array([end]))
            m_all, e_all, v_all = np.concatenate(ms), np.concatenate(es), np.concatenate(vs)
            keep = np.isfinite(v_all)
            m_all, e_all, v_all = m_all[keep], e_all[keep], v_all[keep]
            lexid = m_all * d + (d - 1 - e_all)
            order = np.lexsort((lexid, v_all))
            sorted_out[dev] = (v_all[order], m_all[order], e_all[order], lexid[order])
        self.dist, self.succ_m, self.succ_e, self.sorted_out = dist, succ_m, succ_e, sorted_out
        src = inst.source
        tr0 = np.where(np.arange(d) == src, 0.0, tr[0, src, :])
        src_vals = tr0 + dist[:, 0]
        lex0 = d - 1 - np.arange(d)
        order = np.lexsort((lex0, src_vals))
        order = order[np.isfinite(src_vals[order])]
        self._src = (src_vals[order], order)
        self.source = -2
        self.root_value = float(src_vals[order[0]]) if len(order) else math.inf
        # ranked out-edges per node: (delta, head, lexid), built lazily; the source's now
        self._lists: dict[int, list[tuple[float, int, int]]] = {
            -2: [(float(src_vals[b] - self.root_value), int(b), d - 1 - int(b)) for b in order]
        }
        self._scanned: dict[int, int] = {-2: d}
        self._tree_val: dict[int, float] = {}
        self.scale = float(np.abs(pre).max() + np.abs(tr[np.isfinite(tr)]).max(initial=0.0))

    def succ(self, node: int) -> tuple[int, int]:
        d = self.d
        if node == -2:
            b = int(self._src[1][0])
            return b, d - 1 - b
        pos, dev = divmod(node, d)
        m = int(self.succ_m[dev, pos])
        if m == self.n:
            return _TARGET, self.n * d + d
        e = int(self.succ_e[dev, pos])
        return m * d + e, m * d + (d - 1 - e)

    def ranked(self, node: int, r: int) -> tuple[float, int, int] | None:
        found = self._lists.get(node)
        if found is not None and r < len(found):
            return found[r]
        return self._extend(node, r)

    def _extend(self, node: int, r: int) -> tuple[float, int, int] | None:
        """Scan the device's sorted edges in doubling chunks until rank r is known."""
        if node == -2:  # the source's list is complete from the start
            return None
        d = self.d
        found = self._lists.setdefault(node, [])
        pos, dev = divmod(node, d)
        vals, ms, es, lex = self.sorted_out[dev]
        scanned = self._scanned.get(node, 0)
        hi_m = self.ub[dev, pos]
        while len(found) <= r and scanned < len(ms):
            hi = min(len(ms), max(32, 2 * scanned))
            chunk = ms[scanned:hi]
            idx = np.flatnonzero((chunk > pos) & (chunk <= hi_m)) + scanned
            scanned = hi
            if len(idx):
                if not found:
                    self._tree_val[node] = vals[idx[0]]
                heads = np.where(ms[idx] == self.n, _TARGET, ms[idx] * d + es[idx])
                deltas = vals[idx] - self._tree_val[node]
                found.extend(zip(deltas.tolist(), heads.tolist(), lex[idx].tolist(), strict=True))
        self._scanned[node] = scanned
        return found[r] if r < len(found) else None

    def row(self, nodes: tuple[int, ...]) -> list[int]:
        """Cut vector (0, p_1, .., p_{D-1}, N) of a path given by its tails."""
        return _cuts_from_runs([divmod(v, self.d) for v in nodes[1:]], self.n, self.d)


def _cuts_from_runs(runs: list[tuple[int, int]], n: int, d: int) -> list[int]:
    """(0, p_1, .., p_{D-1}, N) from the path's run starts (layer, device), in order."""
    cuts = [0] * (d + 1)
    j, cur = 0, 0
    for dev in range(d):
        if j < len(runs) and runs[j][1] == dev:
            j += 1
            cur = runs[j][0] if j < len(runs) else n
        cuts[dev + 1] = cur
    return cuts


def _layer_dag(inst: LayerInstance) -> _ExplicitDag:
    """Explicit run-start DAG (for throughput beyond enumeration, and cross-checks):
    returns (dag, w_sum, w_max, head (m, e) per edge; e = -1 for the end). Node 0 is the
    source, 1 + l*D + d the run start (l, d), the last node the target."""
    n, d = inst.n_positions, inst.n_devices
    tr, snk = inst.transfer_ms, inst.sink_ms
    tgt = 1 + n * d  # the source is node 0
    s_list, t_list, ws, wm, heads = [], [], [], [], []
    devs = np.arange(d - 1, -1, -1)  # lexid order at the source: later devices first
    tr0 = np.where(devs == inst.source, 0.0, tr[0, inst.source, devs])
    s_list.append(np.zeros(d, dtype=np.int64))
    t_list.append(1 + devs)
    ws.append(tr0)
    wm.append(tr0)
    heads.append(np.stack([np.zeros(d, dtype=np.int64), devs], axis=1))
    li, mi = np.triu_indices(n + 1, 1)  # l < m <= N
    keep = li < n
    li, mi = li[keep], mi[keep]
    tails_l, tails_d, heads_m, heads_e = [], [], [], []
    for dev in range(d):
        for e in [*range(d - 1, dev, -1), -1]:
            sel = (mi < n) if e >= 0 else (mi == n)
            tails_l.append(li[sel])
            tails_d.append(np.full(sel.sum(), dev))
            heads_m.append(mi[sel])
            heads_e.append(np.full(sel.sum(), e))
    tl, td = np.concatenate(tails_l), np.concatenate(tails_d)
    hm, he = np.concatenate(heads_m), np.concatenate(heads_e)
    lexid = hm * d + (d - 1 - he)
    order = np.lexsort((lexid, td, tl))  # per tail, in lexid order
    tl, td, hm, he = tl[order], td[order], hm[order], he[order]
    run = inst.prefix_ms[td, hm] - inst.prefix_ms[td, tl]
    ok = inst.forbidden_prefix[td, hm] == inst.forbidden_prefix[td, tl]
    run = np.where(ok, run, np.inf)
    move = np.where(he >= 0, tr[np.minimum(hm, n), td, np.maximum(he, 0)], snk[td])
    s_list.append(1 + tl * d + td)
    t_list.append(np.where(he >= 0, 1 + hm * d + np.maximum(he, 0), tgt))
    ws.append(run + move)
    wm.append(np.maximum(run, move))
    heads.append(np.stack([hm, he], axis=1))
    dag = _Dag(tgt + 1, np.concatenate(s_list), np.concatenate(t_list))
    return dag, np.concatenate(ws), np.concatenate(wm), np.concatenate(heads)


def _layer_dag_rows(inst: LayerInstance, dag: _Dag, paths: list[tuple[int, ...]]) -> np.ndarray:
    n, d = inst.n_positions, inst.n_devices
    rows = []
    for p in paths:
        runs = [divmod(int(dag.dst[e]) - 1, d) for e in p[:-1]]
        rows.append(_cuts_from_runs(runs, n, d))
    return np.array(rows, dtype=np.int64).reshape(-1, d + 1)


def _layer_top_k(
    inst: LayerInstance, k: int, objective: str, method: str, enumerate_limit: int
) -> list[Partition]:
    n, d = inst.n_positions, inst.n_devices
    if method == "auto":
        if objective == "latency":
            method = "search"
        else:
            method = "enumerate" if count_partitions(n + 1, d) <= enumerate_limit else "dag"
    if method == "enumerate":
        rows = layer_rows(inst)
    elif method == "search" and objective == "latency":
        g = _LayerGraph(inst)
        found = _deviation_search(g, k, _tolerance(g.scale, g.root_value))
        rows = np.array([g.row(nodes) for _, nodes, _ in found], dtype=np.int64).reshape(-1, d + 1)
    else:
        dag, w_sum, w_max, _ = _layer_dag(inst)
        tgt = dag.n - 1
        if objective == "latency":
            paths = dag.top_k_sum(0, tgt, w_sum, k)
        else:
            paths = dag.top_k_max(0, tgt, w_max, w_sum, k)
        rows = _layer_dag_rows(inst, dag, paths)
    latency, worst = layer_costs(inst, rows)
    primary, second = (latency, None) if objective == "latency" else (worst, latency)
    cols = tuple(rows[:, c] for c in range(d - 1, 0, -1))
    pick = _select(primary, second, cols, k)
    out = []
    rows, primary, latency = rows[pick], primary[pick], latency[pick]
    cuts = [tuple(x) for x in rows[:, 1:-1].tolist()]
    for i, (stages, transfers, name, worst_ms) in enumerate(layer_breakdowns(inst, rows)):
        out.append(
            Partition(
                rank=i + 1,
                total_ms=float(primary[i]),
                cuts=cuts[i],
                stages=stages,
                transfers=transfers,
                objective=objective,
                cost_model="measured",
                latency_ms=float(latency[i]),
                bottleneck=name,
                bottleneck_ms=worst_ms,
                measured_total_ms=float(primary[i]),
            )
        )
    return out


# --------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------


def top_k(
    instance: Instance,
    k: int,
    objective: str = "latency",
    *,
    cost_model: str = "measured",
    bandwidth_mbps: Any = None,
    latency_ms: Any = None,
    method: Method = "auto",
    enumerate_limit: int = ENUMERATE_LIMIT,
) -> list[Partition]:
    """The exact k best distinct partitions, best first (fewer if fewer are feasible).

    objective: "latency" (sum of compute and transfers) or "throughput" (the slowest
    stage; ties then by latency). cost_model ranks by measured or estimated segment times
    (segment-level only). bandwidth_mbps / latency_ms override the instance's links.
    method forces an algorithm (tests compare them): enumerate, search, dag.
    """
    _check_k(k)
    _check_choice(objective, OBJECTIVES, "objective")
    _check_choice(method, METHODS, "method")
    if isinstance(instance, LayerInstance):
        if cost_model != "measured":
            raise OmdpError("layer-level instances have one cost model", "drop --cost-model")
        if bandwidth_mbps is not None or latency_ms is not None:
            raise OmdpError(
                "layer-level instances give transfer times, not link bandwidths",
                "edit transfer_ms in the instance instead",
            )
        return _layer_top_k(instance, k, objective, method, enumerate_limit)
    ranker = Ranker(instance, objective, cost_model, enumerate_limit=enumerate_limit, method=method)
    return ranker.rank(bandwidth_mbps, latency_ms, k).partitions()


def _check_k(k: int) -> None:
    if not isinstance(k, (int, np.integer)) or isinstance(k, bool) or k < 1:
        raise OmdpError(
            f"K must be a whole number >= 1, got {k!r}", "ask for at least one partition"
        )


def _check_choice(value: str, options: tuple[str, ...], what: str) -> None:
    if value not in options:
        raise OmdpError(f"unknown {what} {value!r}", f"use one of: {', '.join(options)}")


__all__ = [
    "ENUMERATE_LIMIT",
    "DagPath",
    "Partition",
    "Ranker",
    "Ranking",
    "k_shortest_paths_dag",
    "top_k",
]
