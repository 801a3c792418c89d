"""Layer-level ranking (network_butcher-style instances): the run-start DAG.

Node l*D + d means "device d starts computing at layer l, the data is already there", so
a path has at most D + 1 edges, and distances are a cumulative minimum along positions
per device (vectorised with numpy). Latency is ranked by the deviation search of
`backend.solver.ksp` over this graph; throughput by enumeration when the cut space is
small, else by the explicit DAG's bottleneck search.
"""

from __future__ import annotations

import math

import numpy as np

from backend.solver.costs import LayerInstance, layer_costs
from backend.solver.ksp import (
    TARGET,
    Dag,
    ExplicitDag,
    Graph,
    check_dag_size,
    deviation_search,
    tolerance,
)
from backend.solver.partition import (
    Partition,
    count_partitions,
    layer_breakdowns,
    layer_rows,
    select,
)


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


class LayerGraph(Graph):
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
        sorted_out: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = {}
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
        self.dist, self.succ_m, self.succ_e = dist, succ_m, succ_e
        self.sorted_out = [sorted_out[dev] for dev in range(d)]
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
            return TARGET, self.n * d + d
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
                heads = np.where(ms[idx] == self.n, TARGET, ms[idx] * d + es[idx])
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


def _layer_dag(inst: LayerInstance) -> ExplicitDag:
    """Explicit run-start DAG (for throughput beyond enumeration, and cross-checks):
    returns (dag, w_sum, w_max, head (m, e) per edge; e = -1 for the end). Node 0 is the
    source, 1 + l*D + d the run start (l, d), the last node the target."""
    n, d = inst.n_positions, inst.n_devices
    edges = d + (d * (d - 1) // 2) * (n * (n - 1) // 2) + d * n
    check_dag_size(
        edges,
        f"ranking {n:,} layers x {d} devices this way",
        "use the latency objective, or merge layers (e.g. a segment-level instance)",
    )
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
    dag = Dag(tgt + 1, np.concatenate(s_list), np.concatenate(t_list))
    return dag, np.concatenate(ws), np.concatenate(wm), np.concatenate(heads)


def _layer_dag_rows(inst: LayerInstance, dag: Dag, paths: list[tuple[int, ...]]) -> np.ndarray:
    n, d = inst.n_positions, inst.n_devices
    rows = []
    for p in paths:
        runs = [divmod(int(dag.dst[e]) - 1, d) for e in p[:-1]]
        rows.append(_cuts_from_runs(runs, n, d))
    return np.array(rows, dtype=np.int64).reshape(-1, d + 1)


def layer_top_k(
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
        g = LayerGraph(inst)
        found = deviation_search(g, k, tolerance(g.scale, g.root_value))
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
    pick = select(primary, second, cols, k)
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
