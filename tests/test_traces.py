"""Bandwidth traces: parsing errors, time alignment, and the robust choice against brute force."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
import pytest

from backend.errors import OmdpError
from backend.solver.costs import SegmentInstance
from backend.solver.ranking import Ranker
from backend.solver.traces import Trace, align_traces, analyse_trace, load_trace, parse_trace

REAL = Path(__file__).parent / "data" / "bandwidth-traces" / "lumos5g_5g_trace_1_driving.tsv"

# ------------------------------------------------------------------------------------
# Parsing
# ------------------------------------------------------------------------------------


def test_parse_tabs_spaces_comments_and_blank_lines():
    tr = parse_trace("# t  Mbit/s\n0 10\n1\t20.5\n\n2.5   0  # link down\n", name="x")
    assert tr.name == "x"
    assert tr.times_s.tolist() == [0.0, 1.0, 2.5]
    assert tr.mbps.tolist() == [10.0, 20.5, 0.0]
    assert tr.step_s == 1.25  # median step: the last sample holds that long
    assert tr.end_s == 3.75


def test_real_trace_loads_with_its_outages():
    tr = load_trace(REAL)
    assert len(tr.times_s) == 230 and tr.times_s[0] == 1.0 and tr.step_s == 1.0
    assert tr.times_s[tr.mbps == 0].tolist() == [122.0, 153.0, 228.0]


@pytest.mark.parametrize(
    ("text", "line", "what"),
    [
        ("0 10\n1 abc\n", 2, "expected '<seconds> <Mbit/s>'"),
        ("0 10\n1 2 3\n", 2, "expected '<seconds> <Mbit/s>'"),
        ("0 10\n\n1\n", 3, "expected '<seconds> <Mbit/s>'"),
        ("0 10\n2 10\n1 11\n", 3, "goes back"),
        ("0 10\n2 10\n2 11\n1.5 3\n", 4, "goes back"),
        ("0 10\n1 -5\n", 2, "negative"),
        ("-1 10\n", 1, "negative"),
        ("0 nan\n", 1, "not finite"),
    ],
)
def test_trace_errors_name_file_and_line(tmp_path, text, line, what):
    path = tmp_path / "bad.tsv"
    path.write_text(text)
    with pytest.raises(OmdpError) as err:
        load_trace(path)
    msg = str(err.value)
    assert f"{path}:{line}:" in msg and what in msg
    assert "\n" not in msg and err.value.fix


def test_samples_sharing_a_time_stamp_are_averaged():
    tr = parse_trace("504 117.0\n505 90.5\n505 115.5\n506 90\n")
    assert tr.times_s.tolist() == [504, 505, 506]
    assert tr.mbps.tolist() == [117.0, 103.0, 90.0]


def test_missing_and_empty_trace_files(tmp_path):
    with pytest.raises(OmdpError, match="no trace file at"):
        load_trace(tmp_path / "nope.tsv")
    empty = tmp_path / "empty.tsv"
    empty.write_text("# nothing here\n\n")
    with pytest.raises(OmdpError, match="no samples"):
        load_trace(empty)


# ------------------------------------------------------------------------------------
# Alignment
# ------------------------------------------------------------------------------------


def trace(times, values, name="t"):
    return Trace(name, np.array(times, float), np.array(values, float))


def test_align_on_the_union_of_time_stamps_holding_values():
    a = trace([0, 2, 4], [10, 20, 30])  # covers [0, 6)
    b = trace([1, 2, 3, 5], [1, 2, 3, 4])  # step 1 (median) -> covers [1, 6)
    tl = align_traces({"x-y": a, "y-z": b}, ["x-y", "y-z", "z-w"], [7, 8, 9])
    assert tl.start_s.tolist() == [1, 2, 3, 4, 5]
    assert tl.duration_s.tolist() == [1, 1, 1, 1, 1]
    assert tl.bandwidth_mbps.tolist() == [
        [10, 1, 9],
        [20, 2, 9],
        [20, 3, 9],
        [30, 3, 9],
        [30, 4, 9],
    ]


def test_align_errors():
    a = trace([0, 1], [1, 1])
    with pytest.raises(OmdpError, match=r"unknown link 'q-r'.*valid links: x-y"):
        align_traces({"q-r": a}, ["x-y"], [1])
    with pytest.raises(OmdpError, match="do not overlap"):
        align_traces({"x-y": a, "y-z": trace([10, 11], [1, 1])}, ["x-y", "y-z"], [1, 1])
    with pytest.raises(OmdpError, match="no bandwidth trace"):
        align_traces({}, ["x-y"], [1])


# ------------------------------------------------------------------------------------
# Analysis against brute force
# ------------------------------------------------------------------------------------


def link_time(nbytes, bw, lat):
    return math.inf if bw == 0 else nbytes * 8 / (bw * 1000) + lat


def brute_costs(inst: SegmentInstance, bw, objective):
    """{cuts: cost} of every feasible partition, data moved hop by hop."""
    out = {}
    m = inst.n_candidates
    table = inst.segment_ms()
    for idx in itertools.combinations_with_replacement(range(m), inst.n_devices - 1):
        ii = [0, *idx, m - 1]
        comp = [table[d, ii[d], ii[d + 1]] for d in range(inst.n_devices) if ii[d] < ii[d + 1]]
        if not all(np.isfinite(comp)):
            continue
        links = [0.0] * (inst.n_devices - 1)
        holder = inst.source
        moves = [(ii[d], d) for d in range(inst.n_devices) if ii[d] < ii[d + 1]]
        if inst.sink is not None:
            moves.append((m - 1, inst.sink))
        for ci, dest in moves:
            for lk in range(min(holder, dest), max(holder, dest)):
                links[lk] += link_time(inst.cut_bytes[ci], bw[lk], inst.latency_ms[lk])
            holder = dest
        cost = sum(comp) + sum(links) if objective == "latency" else max(comp + links)
        out[tuple(int(inst.candidates[i]) for i in idx)] = (cost, sum(comp) + sum(links))
    return out


def weighted_p95(costs, w):
    order = sorted(range(len(costs)), key=lambda i: costs[i])
    acc = 0.0
    for i in order:
        acc += w[i]
        if acc >= 0.95 * sum(w) - 1e-9:
            return costs[i]
    return costs[order[-1]]


def small_instance(seed, sink=None):
    rng = np.random.default_rng(seed)
    m = 6
    cands = [0, 4, 9, 15, 22, 30]
    comp = rng.integers(1, 30, (3, m, m)).astype(float)
    comp[0] *= 3  # the first device is slow: offloading pays when the link is good
    cut = rng.integers(1, 6, m) * 1000.0
    return SegmentInstance(["g", "p", "c"], cands, cut, comp, [8, 8], [1, 2], sink=sink)


@pytest.mark.parametrize("objective", ["latency", "throughput"])
@pytest.mark.parametrize("seed", range(6))
def test_analysis_matches_brute_force(objective, seed):
    inst = small_instance(seed, sink=0 if seed % 2 else None)
    rng = np.random.default_rng(100 + seed)
    t1 = np.cumsum(rng.choice([1.0, 2.0], 25))
    t2 = np.cumsum(rng.choice([1.0, 3.0], 12))
    traces = {
        "g-p": trace(t1, rng.choice([0.0, 1.0, 2.0, 4.0, 8.0], 25)),
        "p-c": trace(t2, rng.choice([1.0, 2.0, 4.0, 8.0], 12)),
    }
    tl = align_traces(traces, inst.link_names, inst.bandwidth_mbps)
    res = analyse_trace(Ranker(inst, objective), tl)
    assert res.exhaustive
    steps = [brute_costs(inst, bw, objective) for bw in tl.bandwidth_mbps]
    w = tl.duration_s.tolist()
    for t, costs in enumerate(steps):
        best = min(costs.items(), key=lambda kv: (kv[1], kv[0]))  # cost, latency, cuts
        assert res.optimal_ms[t] == best[1][0]
        assert res.optimal_cuts[t] == best[0]
    assert math.isclose(sum(s for _, s in res.shares), 1.0)
    share = {}
    for c, wt in zip(res.optimal_cuts, w, strict=True):
        share[c] = share.get(c, 0.0) + wt / sum(w)
    assert dict(res.shares) == pytest.approx(share)
    series = {c: [s[c][0] for s in steps] for c in steps[0]}
    mean = {c: sum(x * wt for x, wt in zip(v, w, strict=True)) / sum(w) for c, v in series.items()}
    p95 = {c: weighted_p95(v, w) for c, v in series.items()}
    best_mean = min(mean, key=lambda c: (mean[c], p95[c], c))
    best_p95 = min(p95, key=lambda c: (p95[c], mean[c], c))
    assert res.best_mean.cuts == best_mean and res.best_p95.cuts == best_p95
    assert res.best_mean.mean_ms == pytest.approx(mean[best_mean])
    assert res.best_p95.p95_ms == pytest.approx(p95[best_p95])
    opt = res.optimal_ms
    regret = [x - o if x != o else 0.0 for x, o in zip(series[best_p95], opt, strict=True)]
    assert res.best_p95.max_regret_ms == pytest.approx(max(regret))
    mean_regret = sum(r * wt for r, wt in zip(regret, w, strict=True)) / sum(w)
    assert res.best_p95.mean_regret_ms == pytest.approx(mean_regret)
    assert res.best_p95.share_optimal == pytest.approx(share.get(best_p95, 0.0))


def test_search_mode_agrees_with_enumeration():
    inst = small_instance(3)
    rng = np.random.default_rng(9)
    tl = align_traces(
        {"g-p": trace(np.arange(30.0), rng.choice([0.0, 1.0, 4.0, 8.0], 30))},
        inst.link_names,
        inst.bandwidth_mbps,
    )
    full = analyse_trace(Ranker(inst), tl)
    searched = analyse_trace(Ranker(inst, method="search"), tl)
    assert not searched.exhaustive and searched.n_candidates < full.n_candidates
    assert searched.optimal_cuts == full.optimal_cuts
    assert searched.optimal_ms.tolist() == full.optimal_ms.tolist()
    assert searched.best_mean == full.best_mean  # linear in link times: exact either way


def offload_instance():
    """Slow glasses, fast phone and cloud: offloading wins whenever the link is up."""
    cands = [0, 10, 20, 30]
    m = len(cands)
    pos = np.array(cands, float)
    comp = np.full((3, m, m), np.nan)
    for d, ms_per_node in enumerate([10.0, 1.0, 0.5]):
        comp[d] = (pos[None, :] - pos[:, None]) * ms_per_node
    cut = [600e3, 200e3, 100e3, 10e3]
    return SegmentInstance(["g", "p", "c"], cands, cut, comp, [50, 200], [5, 10])


def test_real_trace_with_outages_is_handled():
    """A 0 Mbit/s step makes every partition that needs the link unusable at that step:
    its mean is inf, its p95 is not (3 outages in 230 s), and nothing crashes."""
    inst = offload_instance()
    tl = align_traces({"g-p": load_trace(REAL)}, inst.link_names, inst.bandwidth_mbps)
    assert len(tl) == 230 and tl.duration_s.sum() == 230.0
    res = analyse_trace(inst, tl)
    n = inst.n_positions
    down = tl.bandwidth_mbps[:, 0] == 0
    assert all(res.optimal_cuts[t] == (n, n) for t in np.flatnonzero(down))
    assert res.best_mean.cuts == (n, n)  # the only partition usable all the time
    assert math.isfinite(res.best_mean.mean_ms)
    assert res.best_p95.cuts != (n, n) and math.isfinite(res.best_p95.p95_ms)
    assert res.best_p95.max_regret_ms == math.inf  # it is unusable during outages
    assert res.best_p95.p95_ms <= res.best_mean.p95_ms


def test_analysis_rejects_a_mismatched_timeline():
    inst = small_instance(0)
    tl = align_traces({"a-b": trace([0, 1], [1, 1])}, ["a-b"], [1])
    with pytest.raises(OmdpError, match="do not match"):
        analyse_trace(inst, tl)


def test_a_replay_too_big_for_memory_is_refused_before_it_starts():
    """64 candidates x 3 devices = 2080 partitions; 9000 steps of them would be 150 MiB."""
    m = 64
    pos = np.arange(m, dtype=float)
    comp = np.broadcast_to(pos[None, :] - pos[:, None], (3, m, m)).copy()
    inst = SegmentInstance(["g", "p", "c"], np.arange(m), np.ones(m), comp, [50, 200], [5, 10])
    tl = align_traces({"g-p": trace(np.arange(9000), np.ones(9000))}, inst.link_names, [50, 200])
    with pytest.raises(OmdpError, match=r"9,000 steps .* 2,080 partitions.*\(8,065 steps here\)"):
        analyse_trace(inst, tl)
