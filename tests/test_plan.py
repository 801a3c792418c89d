"""The plan (OMDP's scheme) and its time estimate."""

from __future__ import annotations

from itertools import combinations

import pytest

from backend.device.protocol import TimingSettings
from backend.profiling import plan
from backend.profiling.plan import PlanItem, build_plan


def segs(p: plan.Plan, device: str) -> set[tuple[int, int]]:
    return {it.segment for it in p.items if it.device == device}


def test_one_device_runs_only_the_whole_model():
    p = build_plan(10, [3, 6], ["solo"])
    assert p.items == [PlanItem("solo", 0, 10)]


def test_two_devices_prefixes_and_suffixes():
    p = build_plan(10, [3, 6], ["a", "b"])
    assert segs(p, "a") == {(0, 3), (0, 6), (0, 10)}
    assert segs(p, "b") == {(0, 10), (3, 10), (6, 10)}
    assert p.counts() == {"a": 3, "b": 3}


def test_three_devices_middle_runs_every_pair():
    cands = [2, 5, 8]
    p = build_plan(12, cands, ["glasses", "phone", "cloud"])
    points = [0, 2, 5, 8, 12]
    assert segs(p, "glasses") == {(0, c) for c in [2, 5, 8, 12]}
    assert segs(p, "cloud") == {(c, 12) for c in [0, 2, 5, 8]}
    assert segs(p, "phone") == set(combinations(points, 2))
    assert len(p) == 4 + 10 + 4 == len(set(p.items))  # each (segment, device) once
    assert all((0, 12) in segs(p, d) for d in p.devices)  # whole model everywhere
    order = [(p.devices.index(it.device), it.start, it.end) for it in p.items]
    assert order == sorted(order)


@pytest.mark.parametrize(
    "n_cands, n_devices", [(0, 1), (3, 1), (0, 2), (4, 2), (0, 3), (5, 3), (3, 4), (7, 5)]
)
def test_plan_size_counts_without_building(n_cands, n_devices):
    p = build_plan(20, list(range(1, n_cands + 1)), [f"d{i}" for i in range(n_devices)])
    assert plan.plan_size(n_cands, n_devices) == len(p)


def test_a_plan_nobody_could_measure_is_refused_before_it_is_listed():
    from backend.errors import OmdpError

    n = 10**6
    with pytest.raises(OmdpError, match=r"would measure 1\d{6} segments .* the limit is"):
        build_plan(n, range(1, 1001), ["a", "b", "c", "d"])
    assert len(build_plan(n, range(1, 100), ["a", "b", "c"])) == plan.plan_size(99, 3)


def test_plan_segments_by_device():
    assert plan.plan_segments(["a", "b"], [3], 6) == {"a": [(0, 3), (0, 6)], "b": [(0, 6), (3, 6)]}


def test_four_devices_two_middles():
    p = build_plan(6, [3], ["a", "b", "c", "d"])
    assert segs(p, "b") == segs(p, "c") == {(0, 3), (0, 6), (3, 6)}


def test_candidates_are_cleaned():
    p = build_plan(10, [6, 3, 3, 0, 10], ["a", "b"])
    assert p.candidates == [3, 6]
    with pytest.raises(ValueError, match="out of range"):
        build_plan(10, [11], ["a"])
    with pytest.raises(ValueError, match="unique"):
        build_plan(10, [3], ["a", "a"])
    assert build_plan(10, [], ["a", "b"]).items == [PlanItem("a", 0, 10), PlanItem("b", 0, 10)]


def test_segment_flops_and_estimates():
    flops_of = plan.segment_flops([10**9, None, 3 * 10**9])
    assert flops_of(0, 3) == 4 * 10**9 and flops_of(1, 3) == 3 * 10**9 and flops_of(1, 2) == 0
    items = [PlanItem("a", 0, 3), PlanItem("b", 0, 3)]
    t = TimingSettings(warmup=0, min_runs=10, max_runs=10, max_seconds=100)
    est = plan.estimate(items, flops_of, t, gflops={"a": 4.0}, measured={"b": 40.0})
    assert est.source == {"a": "configured", "b": "measured"}
    # a: 10 runs of 1 s, b: 10 runs of 0.1 s, plus fixed costs
    fixed = plan.AGENT_START_S + plan.SEGMENT_OVERHEAD_S
    assert est.per_device["a"] == pytest.approx(10 + fixed)
    assert est.per_device["b"] == pytest.approx(1 + fixed)
    assert est.seconds == pytest.approx(10 + fixed)
    # the time budget caps slow segments (but min_runs still run)
    t = TimingSettings(warmup=0, min_runs=2, max_runs=100, max_seconds=3)
    assert plan.estimate(items[:1], flops_of, t).per_device["a"] == pytest.approx(3 + fixed)


def test_speeds_from_measurements():
    flops_of = plan.segment_flops([10**9] * 4)
    rows = [
        {"device": "a", "start": 0, "end": 2, "median_ms": 100.0, "status": "ok"},
        {"device": "a", "start": 0, "end": 4, "median_ms": 300.0, "status": "ok"},
        {"device": "a", "start": 2, "end": 4, "median_ms": None, "status": "error"},
    ]
    assert plan.speeds_from_measurements(rows, flops_of) == {"a": pytest.approx(15.0)}


def test_format_duration():
    assert plan.format_duration(12.3) == "12 s"
    assert plan.format_duration(150) == "2.5 min"
    assert plan.format_duration(7200) == "2.0 h"
