"""Exactness of the top-K partition solver against independent references.

References: a brute-force simulator that moves the data hop by hop (written from the
problem statement, not from the solver's per-link formula), networkx's
shortest_simple_paths (Yen), and Eppstein's 1998 paper example.
Integer-valued instances make every sum exact in floating point, so results (including
ties, broken by the cut vector) are compared exactly.
"""

from __future__ import annotations

import itertools
import math

import networkx as nx
import numpy as np
import pytest

from backend.errors import OmdpError
from backend.solver.costs import LayerInstance, Memory, SegmentInstance
from backend.solver.layer_ranker import _range_argmin, _suffix_argmin
from backend.solver.ranking import Ranker, k_shortest_paths_dag, top_k

# ------------------------------------------------------------------------------------
# Independent references
# ------------------------------------------------------------------------------------


def simulate_segment(inst: SegmentInstance, idx, table, bw, lat):
    """(latency, bottleneck) of one cut vector by walking the data link by link, or None."""
    d_count, m = inst.n_devices, inst.n_candidates
    ii = [0, *idx, m - 1]
    compute = []
    for d in range(d_count):
        a, b = ii[d], ii[d + 1]
        if a < b:
            if not np.isfinite(table[d, a, b]):
                return None
            compute.append(float(table[d, a, b]))
    link = [0.0] * (d_count - 1)

    def send(ci, a, b):
        for lk in range(min(a, b), max(a, b)):
            t = inst.cut_bytes[ci] * 8 / (bw[lk] * 1000) + lat[lk] if bw[lk] > 0 else math.inf
            link[lk] += t

    holder = inst.source
    for d in range(d_count):
        if ii[d] < ii[d + 1]:
            send(ii[d], holder, d)
            holder = d
    if inst.sink is not None:
        send(m - 1, holder, inst.sink)
    return sum(compute) + sum(link), max(compute + link)


def brute_segment(inst, objective="latency", table=None, bw=None, lat=None):
    """All feasible partitions sorted by the documented order: [(cuts, latency, worst)]."""
    table = inst.segment_ms("measured") if table is None else table
    bw = inst.bandwidth_mbps if bw is None else np.asarray(bw, float)
    lat = inst.latency_ms if lat is None else np.asarray(lat, float)
    out = []
    for idx in itertools.combinations_with_replacement(
        range(inst.n_candidates), inst.n_devices - 1
    ):
        r = simulate_segment(inst, idx, table, bw, lat)
        if r is None or not math.isfinite(r[0]):
            continue
        cuts = tuple(int(inst.candidates[i]) for i in idx)
        key = (r[0], cuts) if objective == "latency" else (r[1], r[0], cuts)
        out.append((key, cuts, r[0], r[1]))
    out.sort()
    return [x[1:] for x in out]


def brute_layer(inst: LayerInstance, objective="latency"):
    n, d_count = inst.n_positions, inst.n_devices
    comp, tr = inst.compute_ms, inst.transfer_ms
    out = []
    for cuts in itertools.combinations_with_replacement(range(n + 1), d_count - 1):
        p = [0, *cuts, n]
        holder, comps, moves = inst.source, [], []
        for d in range(d_count):
            if p[d] < p[d + 1]:
                comps.append(float(sum(comp[p[d] : p[d + 1], d])))
                if holder != d:
                    moves.append(float(tr[p[d], holder, d]))
                holder = d
        if inst.sink is not None and holder != inst.sink:
            moves.append(float(tr[n, holder, inst.sink]))
        total = sum(comps) + sum(moves)
        if not math.isfinite(total):
            continue
        worst = max(comps + moves)
        key = (total, cuts) if objective == "latency" else (worst, total, cuts)
        out.append((key, tuple(cuts), total, worst))
    out.sort()
    return [x[1:] for x in out]


def layer_graph_nx(inst: LayerInstance) -> nx.DiGraph:
    """network_butcher's graph: node (l, d) = layer l runs on device d."""
    n, d_count = inst.n_positions, inst.n_devices
    comp, tr, s0, s1 = inst.compute_ms, inst.transfer_ms, inst.source, inst.sink
    g = nx.DiGraph()

    def add(a, b, w):
        if math.isfinite(w):
            g.add_edge(a, b, weight=float(w))

    for b in range(d_count):
        add("s", (0, b), comp[0, b] + (tr[0, s0, b] if b != s0 else 0.0))
    for layer in range(n - 1):
        for a in range(d_count):
            for b in range(a, d_count):
                move = tr[layer + 1, a, b] if b != a else 0.0
                add((layer, a), (layer + 1, b), comp[layer + 1, b] + move)
    for a in range(d_count):
        add((n - 1, a), "t", tr[n, a, s1] if s1 is not None and a != s1 else 0.0)
    return g


def nx_cuts(path, d_count):
    devs = [v[1] for v in path[1:-1]]
    return tuple(sum(1 for x in devs if x <= d) for d in range(d_count - 1))


# ------------------------------------------------------------------------------------
# Random instances (integer valued: exact sums, many ties)
# ------------------------------------------------------------------------------------


def random_segment(
    seed: int, *, max_devices=4, max_candidates=7, sink=True, holes=0.2, devices=None
):
    rng = np.random.default_rng(seed)
    d_count = int(rng.integers(1, max_devices + 1))
    d_count = devices or d_count
    m = int(rng.integers(2, max_candidates + 1))
    n = 30
    inner = np.sort(rng.choice(np.arange(1, n), m - 2, replace=False))
    cands = np.concatenate([[0], inner, [n]])
    comp = rng.integers(1, 20, (d_count, m, m)).astype(float)
    comp[rng.random((d_count, m, m)) < holes] = np.nan
    cut = rng.integers(0, 5, m) * 1000.0  # x 8 / (bw 1000) is an integer for bw in 1,2,4,8
    bw = rng.choice([1.0, 2.0, 4.0, 8.0], d_count - 1)
    lat = rng.integers(0, 3, d_count - 1).astype(float)
    source = int(rng.integers(0, d_count))
    snk = int(rng.integers(0, d_count)) if sink and rng.random() < 0.6 else None
    names = [f"d{i}" for i in range(d_count)]
    return SegmentInstance(names, cands, cut, comp, bw, lat, source, snk)


def random_layer(seed: int, *, max_devices=4, max_layers=8, holes=0.1):
    rng = np.random.default_rng(seed)
    d_count = int(rng.integers(1, max_devices + 1))
    n = int(rng.integers(1, max_layers + 1))
    comp = rng.integers(0, 9, (n, d_count)).astype(float)
    comp[rng.random((n, d_count)) < holes] = np.inf
    tr = rng.integers(0, 9, (n + 1, d_count, d_count)).astype(float)
    tr[rng.random((n + 1, d_count, d_count)) < holes] = np.inf
    source = int(rng.integers(0, d_count))
    sink = None if rng.random() < 0.4 else int(rng.integers(0, d_count))
    return LayerInstance([f"d{i}" for i in range(d_count)], comp, tr, source, sink)


def as_tuples(parts):
    return [(p.cuts, p.latency_ms, p.bottleneck_ms) for p in parts]


# ------------------------------------------------------------------------------------
# Generic DAG
# ------------------------------------------------------------------------------------

# Eppstein, "Finding the k shortest paths", SIAM J. Comput. 28(2), 1998, Fig. 1: a 3 x 4
# grid from s (top left) to t (bottom right), edges right and down. Weights recalled from
# the figure; they agree with JGraphT's test graph for the same figure and reproduce the
# paper's K = 10 path lengths, which this test checks.
EPPSTEIN_FIG1 = [
    ("s", "a", 2), ("a", "b", 20), ("b", "c", 14),
    ("s", "d", 13), ("a", "e", 27), ("b", "f", 14), ("c", "g", 15),
    ("d", "e", 9), ("e", "f", 10), ("f", "g", 25),
    ("d", "h", 15), ("e", "i", 20), ("f", "j", 12), ("g", "t", 7),
    ("h", "i", 18), ("i", "j", 8), ("j", "t", 11),
]  # fmt: skip


def test_eppstein_figure_1_path_lengths():
    paths = k_shortest_paths_dag(EPPSTEIN_FIG1, "s", "t", 10)
    assert [p.cost for p in paths] == [55, 58, 59, 61, 62, 64, 65, 68, 68, 71]
    assert paths[0].nodes == ("s", "d", "e", "f", "j", "t")  # 13 + 9 + 10 + 12 + 11
    g = nx.DiGraph()
    g.add_weighted_edges_from(EPPSTEIN_FIG1)
    for p in paths:
        assert nx.path_weight(g, list(p.nodes), "weight") == p.cost
    # the grid has exactly C(5, 2) = 10 monotone paths: asking for more returns those
    assert len(k_shortest_paths_dag(EPPSTEIN_FIG1, "s", "t", 100)) == 10
    assert len({p.nodes for p in paths}) == 10


def random_dag(seed: int, n: int = 9, p: float = 0.45, low: int = 0):
    rng = np.random.default_rng(seed)
    edges = [
        (i, j, int(rng.integers(low, 13)))
        for i in range(n)
        for j in range(i + 1, n)
        if rng.random() < p
    ]
    return edges


@pytest.mark.parametrize("seed", range(40))
def test_dag_sum_matches_networkx(seed):
    edges = random_dag(seed)
    g = nx.DiGraph()
    g.add_weighted_edges_from(edges)
    if 0 not in g or 8 not in g or not nx.has_path(g, 0, 8):
        pytest.skip("no path in this random graph")
    k = 1 + seed % 15
    ref = list(itertools.islice(nx.shortest_simple_paths(g, 0, 8, weight="weight"), k))
    ref_costs = [nx.path_weight(g, p, "weight") for p in ref]
    got = k_shortest_paths_dag(edges, 0, 8, k)
    assert [p.cost for p in got] == ref_costs
    assert len({p.nodes for p in got}) == len(got)
    for p in got:
        assert nx.path_weight(g, list(p.nodes), "weight") == p.cost
    # ties: every path strictly cheaper than the k-th is the same set
    kth = ref_costs[-1]
    assert {tuple(p) for p, c in zip(ref, ref_costs, strict=True) if c < kth} == {
        p.nodes for p in got if p.cost < kth
    }


@pytest.mark.parametrize("seed", range(20))
def test_dag_negative_weights_match_brute_force(seed):
    """Negative weights are fine in a DAG (networkx's Dijkstra-based Yen is not)."""
    edges = random_dag(500 + seed, n=8, p=0.5, low=-6)
    g = nx.DiGraph()
    g.add_weighted_edges_from(edges)
    if 0 not in g or 7 not in g or not nx.has_path(g, 0, 7):
        pytest.skip("no path in this random graph")
    ref = sorted(nx.path_weight(g, p, "weight") for p in nx.all_simple_paths(g, 0, 7))
    k = 1 + seed % 12
    assert [p.cost for p in k_shortest_paths_dag(edges, 0, 7, k)] == ref[:k]


@pytest.mark.parametrize("seed", range(25))
def test_dag_max_matches_brute_force(seed):
    edges = random_dag(100 + seed, n=8, p=0.5, low=-3)
    g = nx.DiGraph()
    for i, (a, b, w) in enumerate(edges):
        g.add_edge(a, b, weight=w, idx=i)
    if 0 not in g or 7 not in g or not nx.has_path(g, 0, 7):
        pytest.skip("no path in this random graph")
    ref = []
    for path in nx.all_simple_paths(g, 0, 7):
        ids = tuple(g[a][b]["idx"] for a, b in itertools.pairwise(path))
        ws = [edges[e][2] for e in ids]
        ref.append((max(ws), sum(ws), ids))
    ref.sort()
    k = 1 + seed % 12
    got = k_shortest_paths_dag(edges, 0, 7, k, objective="max")
    assert [(p.cost, p.secondary, p.edges) for p in got] == ref[:k]


def test_dag_rejects_cycles_and_bad_arguments():
    with pytest.raises(ValueError, match="cycle"):
        k_shortest_paths_dag([(0, 1, 1), (1, 0, 1), (1, 2, 1)], 0, 2, 3)
    with pytest.raises(ValueError):
        k_shortest_paths_dag([(0, 1, 1)], 0, 1, 0)
    assert k_shortest_paths_dag([(0, 1, 1), (2, 3, 1)], 0, 3, 5) == []


def test_dag_parallel_edges_are_distinct_paths():
    got = k_shortest_paths_dag([("a", "b", 1), ("a", "b", 1), ("b", "c", 2)], "a", "c", 5)
    assert [(p.cost, p.edges) for p in got] == [(3.0, (0, 2)), (3.0, (1, 2))]


# ------------------------------------------------------------------------------------
# Segment-level instances
# ------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["enumerate", "search", "dag"])
@pytest.mark.parametrize("objective", ["latency", "throughput"])
def test_segment_top_k_matches_brute_force(method, objective):
    for seed in range(150):
        inst = random_segment(seed)
        ref = brute_segment(inst, objective)
        k = 1 + seed % 14
        got = top_k(inst, k, objective, method=method)
        assert as_tuples(got) == ref[:k], f"seed {seed}"
        assert [p.rank for p in got] == list(range(1, len(got) + 1))
        key = "latency_ms" if objective == "latency" else "bottleneck_ms"
        assert all(getattr(p, key) == p.total_ms for p in got)


def test_segment_float_costs_without_ties():
    """Continuous random times (no ties): same order as brute force, costs to 1e-9."""
    for seed in range(30):
        rng = np.random.default_rng(1000 + seed)
        d_count, m = 3, 8
        cands = np.array([0, 5, 9, 14, 20, 31, 40, 57])
        comp = rng.uniform(1, 50, (d_count, m, m))
        inst = SegmentInstance(
            ["g", "p", "c"], cands, rng.uniform(1e4, 2e6, m), comp,
            rng.uniform(1, 200, 2), rng.uniform(0, 30, 2), sink=0 if seed % 2 else None,
        )  # fmt: skip
        ref = brute_segment(inst)
        for method in ("enumerate", "search"):
            got = top_k(inst, 25, method=method)
            assert [p.cuts for p in got] == [r[0] for r in ref[:25]]
            assert np.allclose([p.total_ms for p in got], [r[1] for r in ref[:25]], rtol=1e-12)


def test_all_partitions_returned_once():
    """Distinctness = per-device segments = cut vector: asking for everything returns each
    feasible partition exactly once, empty devices included."""
    for seed in range(20):
        inst = random_segment(200 + seed, holes=0.0)
        ref = brute_segment(inst)
        got = top_k(inst, 10_000, method="search")
        assert (
            len(got)
            == len(ref)
            == math.comb(inst.n_candidates + inst.n_devices - 2, inst.n_devices - 1)
        )
        assert len({p.cuts for p in got}) == len(got)
        for p in got:
            segs = [(s.start, s.end) for s in p.stages]
            assert segs[0][0] == 0 and segs[-1][1] == inst.n_positions
            assert all(a[1] == b[0] for a, b in itertools.pairwise(segs))


def test_full_ties_are_broken_by_cut_vector():
    m, d_count = 6, 3
    inst = SegmentInstance(
        ["a", "b", "c"], [0, 1, 2, 3, 4, 5], np.zeros(m), np.zeros((d_count, m, m)), [10, 10],
        [0, 0],
    )  # fmt: skip
    expected = list(itertools.combinations_with_replacement([0, 1, 2, 3, 4, 5], 2))
    for method in ("enumerate", "search", "dag"):
        for objective in ("latency", "throughput"):
            got = top_k(inst, 7, objective, method=method)
            assert [p.cuts for p in got] == expected[:7]
            assert all(p.total_ms == 0 for p in got)


def test_ranker_reranks_like_a_fresh_solve():
    inst = random_segment(7, max_candidates=12, holes=0.1, devices=3)
    rng = np.random.default_rng(5)
    for objective in ("latency", "throughput"):
        rankers = [Ranker(inst, objective, method=m) for m in ("enumerate", "search", "dag")]
        for _ in range(10):
            bw = rng.choice([1.0, 2.0, 4.0, 8.0], inst.n_devices - 1)
            lat = rng.integers(0, 4, inst.n_devices - 1).astype(float)
            ref = brute_segment(inst, objective, bw=bw, lat=lat)[:15]
            for r in rankers:
                ranking = r.rank(bw, lat, k=15)
                assert [tuple(c) for c in ranking.cuts.tolist()] == [x[0] for x in ref]
                assert as_tuples(ranking.partitions()) == ref


def test_rank_accepts_link_name_mappings():
    inst = random_segment(3, devices=3)
    r = Ranker(inst)
    by_name = r.rank({"d0-d1": 2.0}, {"d1-d2": 1.0}, k=5)
    by_seq = r.rank([2.0, inst.bandwidth_mbps[1]], [inst.latency_ms[0], 1.0], k=5)
    assert by_name.cuts.tolist() == by_seq.cuts.tolist()
    with pytest.raises(OmdpError, match=r"unknown link 'x-y'.*d0-d1, d1-d2"):
        r.rank({"x-y": 3.0})


def test_link_down_excludes_partitions_that_need_it():
    base = random_segment(11, holes=0.0, sink=False, devices=3)
    inst = SegmentInstance(
        base.devices, base.candidates, base.cut_bytes, base.compute_ms, base.bandwidth_mbps,
        base.latency_ms, source=0,
    )  # fmt: skip
    bw = inst.bandwidth_mbps.copy()
    bw[0] = 0.0  # d0-d1 down: only "everything on d0" (the source) remains usable
    for method in ("enumerate", "search", "dag"):
        got = top_k(inst, 50, bandwidth_mbps=bw, method=method)
        n = inst.n_positions
        assert [p.cuts for p in got] == [tuple([n] * (inst.n_devices - 1))]
        assert got[0].transfers == []
    assert as_tuples(top_k(inst, 50, bandwidth_mbps=bw)) == brute_segment(inst, bw=bw)


def test_source_and_sink_transfers_are_reported():
    # 3 devices, source in the middle, output must come back to device 0
    cands = [0, 10, 20]
    comp = np.full((3, 3, 3), 5.0)
    inst = SegmentInstance(
        ["g", "p", "c"], cands, [8000.0, 4000.0, 2000.0], comp, [8.0, 4.0], [1.0, 2.0],
        source=1, sink=0,
    )  # fmt: skip
    best = {p.cuts: p for p in top_k(inst, 100)}
    p = best[(0, 0)]  # only c computes: X(0) p->c, X(N) c->p->g
    moves = [(t.link, t.src, t.dst, t.position, t.bytes) for t in p.transfers]
    assert moves == [  # in time order
        ("p-c", "p", "c", 0, 8000.0),
        ("p-c", "c", "p", 20, 2000.0),
        ("g-p", "p", "g", 20, 2000.0),
    ]
    # 8000 B at 4 Mbit/s = 16 ms (+2), 2000 B at 4 = 4 (+2), 2000 B at 8 Mbit/s = 2 ms (+1)
    assert [t.ms for t in p.transfers] == [18.0, 6.0, 3.0]
    assert p.latency_ms == 5.0 + 27.0
    assert [s.empty for s in p.stages] == [True, True, False]
    q = best[(10, 20)]  # g [0,10) gets X(0) from p (backward), p [10,20), c empty
    assert [(t.src, t.dst, t.position) for t in q.transfers] == [
        ("p", "g", 0),
        ("g", "p", 10),
        ("p", "g", 20),
    ]


def test_memory_limits_from_positions():
    cands = [0, 2, 4]
    mem = Memory.from_positions(
        [100.0, 50.0],
        cands,
        node_weight_bytes=[10, 20, 5, 5],
        position_activation_bytes=[1, 30, 2, 4, 3],
    )
    # weights [0,2) = 30, [2,4) = 10, [0,4) = 40; peaks: max(act[0..2]) = 30, act[2..4] = 4,
    # act[0..4] = 30
    assert mem.weight_bytes[0, 0, 1] == 30 and mem.weight_bytes[0, 1, 2] == 10
    assert mem.weight_bytes[0, 0, 2] == 40
    assert mem.activation_bytes[0, 0, 1] == 30 and mem.activation_bytes[0, 1, 2] == 4
    assert mem.activation_bytes[0, 0, 2] == 30
    fits = mem.feasible()
    assert fits[0, 0, 2] and not fits[1, 0, 2] and not fits[1, 0, 1] and fits[1, 1, 2]


def test_memory_peaks_match_their_definition():
    """peak([a, b)) = the largest live size at any position a..b, for random positions."""
    rng = np.random.default_rng(5)
    for _ in range(30):
        n = int(rng.integers(1, 30))
        cands = sorted({0, n, *rng.integers(0, n + 1, 5).tolist()})
        act = rng.integers(0, 100, n + 1).astype(float)
        mem = Memory.from_positions([1.0], cands, np.ones(n), act)
        for i, a in enumerate(cands):
            for j, b in enumerate(cands[i:], start=i):
                assert mem.activation_bytes[0, i, j] == act[a : b + 1].max()


@pytest.mark.parametrize("objective", ["latency", "throughput"])
def test_memory_limits_match_brute_force(objective):
    for seed in range(30):
        base = random_segment(400 + seed, holes=0.05)
        rng = np.random.default_rng(seed)
        d_count, m = base.n_devices, base.n_candidates
        weight = rng.integers(0, 50, (d_count, m, m)).astype(float)
        act = rng.integers(0, 50, (d_count, m, m)).astype(float)
        limit = rng.choice([40.0, 60.0, 80.0, np.inf], d_count)
        inst = SegmentInstance(
            base.devices, base.candidates, base.cut_bytes, base.compute_ms,
            base.bandwidth_mbps, base.latency_ms, base.source, base.sink,
            memory=Memory(limit, weight, act),
        )  # fmt: skip
        table = base.compute_ms.copy()
        for d in range(d_count):
            for i in range(m):
                for j in range(i + 1, m):
                    if weight[d, i, j] + act[d, i, j] > limit[d]:
                        table[d, i, j] = np.inf
        ref = brute_segment(inst, objective, table=table)
        for method in ("enumerate", "search", "dag"):
            got = top_k(inst, 12, objective, method=method)
            assert as_tuples(got) == ref[:12], f"seed {seed} {method}"
        for p in got:
            for s in p.stages:
                if not s.empty:
                    d = inst.devices.index(s.device)
                    assert s.memory_bytes <= limit[d]


def test_estimated_cost_model_ranks_and_reports_both():
    for seed in range(20):
        inst0 = random_segment(600 + seed, holes=0.3)
        rng = np.random.default_rng(seed)
        est = rng.integers(1, 20, inst0.compute_ms.shape).astype(float)
        inst = SegmentInstance(
            inst0.devices, inst0.candidates, inst0.cut_bytes, inst0.compute_ms,
            inst0.bandwidth_mbps, inst0.latency_ms, inst0.source, inst0.sink, estimated_ms=est,
        )  # fmt: skip
        ref = brute_segment(inst, table=inst.segment_ms("estimated"))
        got = top_k(inst, 10, cost_model="estimated")
        assert as_tuples(got) == ref[:10]
        measured = {r[0]: r[1] for r in brute_segment(inst)}
        for p in got:
            assert p.estimated_total_ms == p.total_ms
            assert p.measured_total_ms == measured.get(p.cuts)  # None where not measured
        for p in top_k(inst, 10):
            assert p.measured_total_ms == p.total_ms
            assert all(s.estimated_ms is not None for s in p.stages)
    with pytest.raises(OmdpError, match="no estimated times"):
        top_k(random_segment(1), 3, cost_model="estimated")


def test_omdp_plan_shape_only_prefixes_and_suffixes():
    """First device measured only on [0, c), last only on [c, N), middle on any [a, b)."""
    m = 7
    cands = [0, 3, 8, 12, 19, 25, 30]
    rng = np.random.default_rng(3)
    comp = np.full((3, m, m), np.nan)
    comp[0, 0, 1:] = rng.integers(1, 30, m - 1)
    comp[2, :-1, m - 1] = rng.integers(1, 30, m - 1)
    iu = np.triu_indices(m, 1)
    comp[1][iu] = rng.integers(1, 30, len(iu[0]))
    inst = SegmentInstance(["g", "p", "c"], cands, np.full(m, 4000.0), comp, [4, 8], [1, 1])
    got = top_k(inst, 1000)
    assert as_tuples(got) == brute_segment(inst)
    assert len(got) == math.comb(m + 1, 2)  # every (p1 <= p2) is priceable


# ------------------------------------------------------------------------------------
# Layer-level instances
# ------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["enumerate", "search", "dag"])
@pytest.mark.parametrize("objective", ["latency", "throughput"])
def test_layer_top_k_matches_brute_force(method, objective):
    for seed in range(150):
        inst = random_layer(seed)
        k = 1 + seed % 20
        got = top_k(inst, k, objective, method=method)
        assert as_tuples(got) == brute_layer(inst, objective)[:k], f"seed {seed}"


@pytest.mark.parametrize("seed", range(30))
def test_layer_top_k_matches_networkx(seed):
    inst = random_layer(300 + seed, max_layers=10, holes=0.03)
    g = layer_graph_nx(inst)
    if "s" not in g or "t" not in g or not nx.has_path(g, "s", "t"):
        pytest.skip("no feasible partition")
    k = 12
    ref = list(itertools.islice(nx.shortest_simple_paths(g, "s", "t", weight="weight"), k))
    ref_costs = [nx.path_weight(g, p, "weight") for p in ref]
    got = top_k(inst, k)
    assert [p.total_ms for p in got] == ref_costs
    kth = ref_costs[-1]
    assert {nx_cuts(p, inst.n_devices) for p, c in zip(ref, ref_costs, strict=True) if c < kth} == {
        p.cuts for p in got if p.total_ms < kth
    }


def test_layer_search_with_forbidden_layers_and_deep_ranks():
    """Long instances: exercises the range minimum (forbidden layers) and the lazily
    extended sorted out-lists far beyond their first chunk."""
    for seed in range(6):
        rng = np.random.default_rng(seed)
        n, d_count = 60, 3
        comp = rng.integers(1, 6, (n, d_count)).astype(float)
        if seed % 2:
            comp[rng.random((n, d_count)) < 0.08] = np.inf
        tr = rng.integers(0, 12, (n + 1, d_count, d_count)).astype(float)
        inst = LayerInstance(["a", "b", "c"], comp, tr, sink=0 if seed % 3 == 0 else None)
        fast = top_k(inst, 300, method="search")
        assert as_tuples(fast) == as_tuples(top_k(inst, 300, method="enumerate"))


def test_layer_partition_fields():
    comp = np.array([[1.0, 2.0], [3.0, 1.0], [2.0, 2.0]])
    tr = np.zeros((4, 2, 2))
    tr[:, 0, 1] = [5, 6, 7, 8]
    tr[:, 1, 0] = [1, 1, 1, 9]
    inst = LayerInstance(["a", "b"], comp, tr, source=0, sink=0)
    best = {p.cuts: p for p in top_k(inst, 10)}
    p = best[(1,)]  # a runs layer 0, b runs 1..2, output back to a
    assert [(s.device, s.start, s.end, s.compute_ms) for s in p.stages] == [
        ("a", 0, 1, 1.0),
        ("b", 1, 3, 3.0),
    ]
    assert [(t.link, t.src, t.dst, t.position, t.ms) for t in p.transfers] == [
        ("a-b", "a", "b", 1, 6.0),
        ("b-a", "b", "a", 3, 9.0),
    ]
    assert p.total_ms == 19.0 and p.bottleneck == "link b-a"


# ------------------------------------------------------------------------------------
# Pieces and validation
# ------------------------------------------------------------------------------------


def test_range_and_suffix_argmin_match_naive():
    rng = np.random.default_rng(0)
    for _ in range(50):
        n = int(rng.integers(1, 40))
        h = rng.integers(0, 5, n).astype(float)
        h[rng.random(n) < 0.2] = np.inf
        lo = rng.integers(0, n + 1, 30)
        hi = rng.integers(-1, n, 30)
        vals, args = _range_argmin(h, lo, hi)
        for q in range(30):
            if lo[q] > hi[q]:
                assert vals[q] == np.inf and args[q] == -1
            else:
                window = h[lo[q] : hi[q] + 1]
                assert vals[q] == window.min()
                assert args[q] == lo[q] + int(np.argmin(window))
        sm, sa = _suffix_argmin(h)
        for s in range(n + 1):
            tail = h[s:]
            if len(tail) and np.isfinite(tail.min()):
                assert sm[s] == tail.min() and sa[s] == s + int(np.argmin(tail))
            else:
                assert sm[s] == np.inf and sa[s] == -1


@pytest.mark.parametrize("bad", [0, -1, 2.5, "3", True])
def test_k_must_be_a_positive_integer(bad):
    with pytest.raises(OmdpError, match="K must be"):
        top_k(random_segment(0), bad)


def test_unknown_objective_and_method():
    with pytest.raises(OmdpError, match="objective"):
        top_k(random_segment(0), 1, "fast")
    with pytest.raises(OmdpError, match="method"):
        top_k(random_segment(0), 1, method="magic")


def test_partition_to_dict_shape():
    p = top_k(random_segment(5, holes=0.0), 1)[0]
    d = p.to_dict()
    assert {"rank", "total_ms", "stages", "transfers", "cuts"} <= set(d)
    assert {"device", "start", "end", "compute_ms"} <= set(d["stages"][0])
    for t in d["transfers"]:
        assert {"link", "from", "to", "position", "bytes", "ms"} == set(t)


def test_realistic_scale_methods_agree():
    """64 candidates x 3 devices in OMDP's plan shape, float times: all methods agree."""
    rng = np.random.default_rng(42)
    m, n = 64, 500
    cands = np.concatenate([[0], np.sort(rng.choice(np.arange(1, n), m - 2, replace=False)), [n]])
    pre = np.concatenate([[0.0], np.cumsum(rng.uniform(0.2, 2.0, n))])[cands]
    seg = pre[None, :] - pre[:, None]
    comp = np.full((3, m, m), np.nan)
    comp[0, 0, :] = seg[0, :]
    comp[1] = np.where(seg > 0, seg / 4 * rng.uniform(0.9, 1.1, (m, m)), np.nan)
    comp[2, :, m - 1] = seg[:, m - 1] / 20
    inst = SegmentInstance(
        ["g", "p", "c"], cands, rng.lognormal(12, 1, m), comp, [20, 100], [5, 20], sink=0
    )
    for objective in ("latency", "throughput"):
        rankers = [Ranker(inst, objective, method=x) for x in ("enumerate", "search", "dag")]
        for bw in rng.uniform(1, 200, (3, 2)):
            got = [r.rank(bw, k=100) for r in rankers]
            for other in got[1:]:
                assert other.cuts.tolist() == got[0].cuts.tolist()
                assert np.array_equal(other.total_ms, got[0].total_ms)


@pytest.mark.slow
def test_many_random_instances():
    """Wider sweep (more devices and candidates) of every method against brute force."""
    for seed in range(400):
        inst = random_segment(10_000 + seed, max_devices=5, max_candidates=9)
        lay = random_layer(20_000 + seed, max_devices=5, max_layers=11)
        for objective in ("latency", "throughput"):
            ref_s = brute_segment(inst, objective)
            ref_l = brute_layer(lay, objective)
            for method in ("enumerate", "search", "dag"):
                k = 1 + seed % 40
                assert as_tuples(top_k(inst, k, objective, method=method)) == ref_s[:k]
                assert as_tuples(top_k(lay, k, objective, method=method)) == ref_l[:k]
