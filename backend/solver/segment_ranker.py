"""Segment-level ranking: the layered DAG of a session's candidates, ranked again and again.

Node t*M + i of the DAG means "devices 0..t-1 handled positions [0, C_i)"; a path is a
partition. Small cut spaces (the common case: 64 candidates x 3 devices = 2080 cut
vectors) are enumerated once by `Ranker`, with everything that does not depend on the
links precomputed (compute sums, compute bottlenecks, the tie-break columns).

The way a bandwidth change travels: `Ranker.rank(bandwidths, latencies)` prices the links
once (`costs.link_stage_ms`: one (L, M) table, each link's busy time as a function of its
cut), adds it to the precomputed compute sums (`costs.add_links`, a few numpy gathers),
and picks the K best (`partition.select`, a partial sort). Partition objects are built
only when asked for (`Ranking.partitions`). Bigger cut spaces use the exact searches of
`backend.solver.ksp` on the same DAG.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from backend.solver.costs import (
    OBJECTIVES,
    SegmentInstance,
    add_links,
    check_choice,
    compute_sum,
    link_stage_ms,
    segment_costs,
)
from backend.solver.ksp import (
    ENUMERATE_LIMIT,
    METHODS,
    TARGET,
    Dag,
    ExplicitDag,
    Graph,
    Method,
    check_dag_size,
    deviation_search,
    tolerance,
)
from backend.solver.partition import (
    Partition,
    check_k,
    count_partitions,
    segment_breakdowns,
    segment_rows,
    select,
)


class _SegmentGraph(Graph):
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
            return TARGET, self.m - 1
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


def _segment_dag(seg: np.ndarray, link_ms: np.ndarray) -> ExplicitDag:
    """Explicit layered DAG of a segment instance: (dag, w_sum, w_max, head index j)."""
    d, m, _ = seg.shape
    check_dag_size(
        (d - 1) * (m * (m + 1) // 2) + m,
        f"ranking {m:,} candidates x {d} devices this way",
        "choose fewer candidate positions",
    )
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
    dag = Dag(d * m + 1, np.concatenate(src), np.concatenate(dst))
    return dag, np.concatenate(w_sum), np.concatenate(w_max), np.concatenate(heads)


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
        check_choice(objective, OBJECTIVES, "objective")
        check_choice(method, METHODS, "method")
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

    def rank(self, bandwidth_mbps: Any = None, latency_ms: Any = None, k: int = 10) -> Ranking:
        """The k best partitions under these bandwidths (Mbit/s; 0 = link down) and
        latencies (ms), as sequences in link order or {link name: value} mappings;
        anything not given keeps the instance's value."""
        link, tau = link_stage_ms(self.instance, bandwidth_mbps, latency_ms)
        return self.rank_link_ms(link, k, tau)

    def costs(self, link_ms: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(latency, bottleneck) of every enumerated partition (rows order)."""
        if self.rows is None:
            raise ValueError("costs() needs an enumerated ranker")
        return add_links(self._compute, self._worst, link_ms, self.rows)

    def rank_link_ms(self, link_ms: np.ndarray, k: int, tau: np.ndarray | None = None) -> Ranking:
        """Rank with link stage times given directly (L, M), e.g. averaged over a trace."""
        check_k(k)
        if self.rows is not None:
            latency, worst = self.costs(link_ms)
            primary, second = (latency, None) if self.objective == "latency" else (worst, latency)
            pick = select(primary, second, self._tie_cols, k)
            rows = self.rows[pick]
            return Ranking(self, rows, primary[pick], latency[pick], worst[pick], link_ms, tau)
        rows = self._search_rows(link_ms, k)
        return self._ranking_from_rows(rows, link_ms, tau, k)

    def _search_rows(self, link_ms: np.ndarray, k: int) -> np.ndarray:
        d = self.instance.n_devices
        if self.method == "search" and self.objective == "latency":
            g = _SegmentGraph(self.seg, link_ms)
            tol = tolerance(g.root_value, float(np.abs(link_ms[np.isfinite(link_ms)]).sum()))
            found = deviation_search(g, k, tol)
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
        pick = select(primary, second, cols, k)
        return Ranking(self, rows[pick], primary[pick], latency[pick], worst[pick], link_ms, tau)


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
    for model in ("measured", "estimated"):
        if not inst.has_cost_model(model):
            continue
        table = inst.segment_ms(model)
        if model == "measured" and inst.stand_in is not None:  # nothing standing in
            table = np.where(inst.stand_in, np.inf, table)
        lat, worst = segment_costs(table, r.link_ms, r.rows)
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
