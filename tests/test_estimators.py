"""Estimators of a segment's time, their leave-one-out test, the attribution of a real
session file, and estimates standing in for segments not measured yet."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from models import skip_model
from synthetic import measured_session

from backend.cli import main
from backend.model.analysis import analyze
from backend.profiling.session import Session
from backend.solver.estimators import (
    APPROACHES,
    CHOSEN,
    ESTIMATORS,
    DeviceTimes,
    block_cover,
    choose,
    cover_prefix,
    fit,
    leave_one_out,
)
from backend.solver.pricing import instance_from_session
from backend.solver.ranking import top_k
from backend.usecases.attribution import attribute_session, evaluate_session

NODE_MS = np.array([3.0, 1.0, 2.0, 4.0, 1.5, 2.5, 1.0, 3.5, 2.0])  # per-node times (9 nodes)
# how each device really runs a segment: rate x layer sum + overhead per segment run
LAW = {"glasses": (1.3, 0.8), "phone": (0.7, 1.5), "cloud": (1.1, 0.4)}
CANDIDATES = [2, 4, 6]


def true_ms(device: str, a: int, b: int) -> float:
    rate, overhead = LAW[device]
    return rate * float(NODE_MS[a:b].sum()) + overhead


@pytest.fixture
def session_file(tmp_path):
    model = tmp_path / "skip.onnx"
    onnx.save(skip_model(), model)
    a = analyze(model)
    assert a.n == len(NODE_MS)
    path = tmp_path / "s.omdp"
    s = measured_session(path, a, CANDIDATES, timing=true_ms)
    for name in LAW:
        times = {p: float(t) for p, t in enumerate(NODE_MS)}
        s.record_node_times(name, times, runtime="onnxruntime", runs=3)
    s.close()
    return path


def device(name: str, segments) -> DeviceTimes:
    return DeviceTimes(name, NODE_MS, {(a, b): true_ms(name, a, b) for a, b in segments})


BLOCKS = np.array([0, *CANDIDATES, 9])
PAIRS = [(a, b) for a in BLOCKS for b in BLOCKS if a < b]


def test_layer_sum_misses_by_the_device_law_and_the_fits_recover_it():
    dev = device("phone", PAIRS)
    a, b = np.array([1, 0, 3]), np.array([8, 9, 5])  # positions that are not candidates
    truth = np.array([true_ms("phone", x, y) for x, y in zip(a, b, strict=True)])
    assert not np.allclose(fit("layer-sum", dev, BLOCKS)(a, b), truth, rtol=0.05)
    assert fit("corrected", dev, BLOCKS)(a, b) == pytest.approx(truth, rel=1e-6)


def test_leave_one_out_ranks_the_estimators_on_a_law_with_an_overhead():
    dev = device("glasses", [(0, int(c)) for c in BLOCKS[1:]])  # a first device: prefixes
    errors = {a: leave_one_out(a, dev, BLOCKS) for a in APPROACHES}
    assert all(e.count == 4 for e in errors.values())
    assert errors["layer-sum"].median_abs_pct > 20  # 1.3 x and 0.8 ms missed
    assert errors["layer-sum"].median_pct < 0  # always in the same direction
    assert errors["scaled"].median_abs_pct < errors["layer-sum"].median_abs_pct
    assert errors["corrected"].median_abs_pct < 1e-6  # the law is what it fits
    assert errors["corrected"].p90_abs_pct < 1e-6


def test_corrected_learns_a_block_that_runs_faster_than_its_layer_sum():
    """Fusion in block [4, 6) saves 2 ms wherever it runs whole: the block correction
    learns it from the other segments, a single rate cannot."""

    def fused(a: int, b: int) -> float:
        return true_ms("phone", a, b) - (2.0 if a <= 4 and b >= 6 else 0.0)

    dev = DeviceTimes("phone", NODE_MS, {(a, b): fused(a, b) for a, b in PAIRS})
    corrected = leave_one_out("corrected", dev, BLOCKS)
    scaled = leave_one_out("scaled", dev, BLOCKS)
    assert corrected.median_abs_pct < 0.5 * scaled.median_abs_pct


def test_attribution_shares_add_up_to_the_whole_model_on_every_device(session_file):
    with Session.open(session_file) as s:
        found = attribute_session(s)
    assert [d.device for d in found.devices] == list(LAW)
    assert found.candidates == [0, *CANDIDATES, 9]
    for dev in found.devices:
        assert dev.exact and dev.whole_measured
        assert sum(b.share_ms for b in dev.blocks) == pytest.approx(true_ms(dev.device, 0, 9))
        assert [b.layer_sum_ms for b in dev.blocks] == pytest.approx([4.0, 6.0, 4.0, 6.5])
        # every cut costs the device's per-run overhead (the law's), exactly
        overheads = [b.cut_overhead_ms for b in dev.blocks[:-1]]
        assert overheads == pytest.approx([LAW[dev.device][1]] * 3)
        assert dev.blocks[-1].cut_overhead_ms is None
    phone = found.devices[1]
    assert phone.runs_measured == phone.runs == 10  # a middle device measures every run
    assert not any(b.cut_estimated for b in phone.blocks)
    glasses = found.devices[0]
    assert glasses.runs_measured == 4 and all(b.cut_estimated for b in glasses.blocks[:-1])


def test_evaluate_picks_out_the_chosen_estimator(session_file):
    with Session.open(session_file) as s:
        found = evaluate_session(s, "cloud")
    by = {e.approach: e for e in found}
    assert set(by) == set(ESTIMATORS) and {e.device for e in found} == {"cloud"}
    assert by[CHOSEN].median_abs_pct <= 0.5 * by["layer-sum"].median_abs_pct


def test_cli_attribute_text_and_json(capsys, session_file):
    assert main(["attribute", str(session_file), "--device", "phone"]) == 0
    out = capsys.readouterr().out
    assert "phone: Shapley shares (exact)" in out and "[4, 6)" in out
    assert "glasses" not in out
    assert main(["attribute", str(session_file), "--json", "--evaluate"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [d["device"] for d in doc["devices"]] == list(LAW)
    rows = [e for e in doc["evaluation"] if e["chosen"]]
    assert [e["approach"] for e in rows] == [CHOSEN] * 3


def test_a_new_candidate_ranks_at_once_with_estimates_standing_in(session_file):
    with Session.open(session_file) as s:
        s.set_candidates([*CANDIDATES, 5])
        inst = instance_from_session(s)
    assert inst.has_stand_ins
    k = list(inst.candidates).index(5)
    assert inst.stand_in[0, 0, k] and inst.stand_in[2, k, -1] and inst.stand_in[1, k, -1]
    assert not inst.stand_in[0, 0, k + 1]  # measured stays measured
    # the stand-in is the chosen estimate, here the device's law exactly
    assert inst.compute_ms[0, 0, k] == pytest.approx(true_ms("glasses", 0, 5))
    parts = top_k(inst, 200, "latency")
    new = [p for p in parts if 5 in p.cuts]
    old = [p for p in parts if 5 not in p.cuts and p.cuts != (9, 9)]
    assert new and all(p.has_stand_ins and p.measured_total_ms is None for p in new)
    assert old and not any(p.has_stand_ins for p in old)
    stage = next(s for s in new[0].stages if s.stand_in)
    assert stage.measured_ms is None and stage.compute_ms > 0
    assert new[0].to_dict()["has_stand_ins"] is True


def test_an_error_is_not_papered_over_by_an_estimate(session_file):
    with Session.open(session_file) as s:
        s.set_candidates([*CANDIDATES, 5])
        s.record_error("phone", (5, 9), "runtime failed")
        inst = instance_from_session(s)
    i, j = list(inst.candidates).index(5), inst.n_candidates - 1
    assert not np.isfinite(inst.compute_ms[1, i, j]) and not inst.stand_in[1, i, j]
    assert inst.stand_in[1, 0, i]  # the new candidate's other segments still stand in


def test_cli_paths_ranks_a_named_candidate_with_flagged_estimates(capsys, session_file):
    args = ["paths", str(session_file), "-k", "200", "--candidate", "5"]
    assert main([*args, "--json"]) == 0
    parts = json.loads(capsys.readouterr().out)
    new = [p for p in parts if 5 in p["cuts"]]
    assert new and all(p["has_stand_ins"] for p in new)
    assert all(not p["has_stand_ins"] for p in parts if 5 not in p["cuts"])
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "[0, 5)~" in out and "~ estimate standing in" in out
    with Session.open(session_file) as s:
        assert s.candidates() == CANDIDATES  # ranked, not stored


def test_cover_prefix_prices_any_segment_as_the_block_cover_does():
    rng = np.random.default_rng(0)
    node = rng.uniform(0.1, 1.0, 300)
    node[40:60] = 0.0  # a block whose per-node times add up to 0: shared by node count
    blocks = np.unique(np.concatenate([[0, 300, 40, 60], rng.choice(np.arange(1, 300), 30)]))
    times = DeviceTimes("d", node)
    per_block = rng.normal(size=len(blocks) - 1)
    prefix = cover_prefix(times, blocks, per_block)
    a = rng.integers(0, 300, 400)
    b = np.maximum(a, rng.integers(0, 301, 400))
    assert prefix[b] - prefix[a] == pytest.approx(block_cover(times, blocks, a, b) @ per_block)


@pytest.mark.parametrize(
    "measured",
    [
        {},
        {(0, 9): 5.0},
        {(0, 9): 0.0, (0, 2): 0.0, (0, 4): 0.0},
        {(0, 9): 5.0, (4, 9): 3.0, (6, 9): 1.0, (2, 9): 4.0},
    ],
    ids=["nothing", "whole-only", "all-zero", "suffixes"],
)
def test_estimators_stay_finite_and_non_negative_on_thin_data(measured):
    times = DeviceTimes("d", np.zeros(9), measured)  # per-node times all 0 too
    for approach in ESTIMATORS:
        estimate = fit(approach, times, BLOCKS)(np.array([0, 2, 3]), np.array([9, 4, 8]))
        assert np.all(np.isfinite(estimate)) and np.all(estimate >= 0), approach
        assert np.all(np.isfinite(leave_one_out(approach, times, BLOCKS).errors_pct))


def cut_law(a: int, b: int) -> float:
    """A device that pays 0.6 ms per segment run, 2.5 ms more at each end at position 4
    (a large tensor materialised there), runs the block [4, 6) 1.5 ms faster than its
    layers' times (fused), and every node at 0.9 x its profiled time."""
    ms = 0.9 * float(NODE_MS[a:b].sum()) + 0.6
    ms += 2.5 * ((a == 4) + (b == 4))
    ms -= 1.5 if a <= 4 and b >= 6 else 0.0
    return ms


def test_kriging_recovers_cut_overheads_and_fusion_from_the_measured_segments():
    dev = DeviceTimes("phone", NODE_MS, {(a, b): cut_law(a, b) for a, b in PAIRS})
    kriging = leave_one_out("kriging", dev, BLOCKS)
    # from the others alone: exact wherever another segment shares each end; [0, 2) and
    # [6, 9) are the only ones ending at 2 and starting at 6, whose overheads are guesses
    exact = [k for k in sorted(dev.measured) if k not in ((0, 2), (6, 9))]
    errors = dict(zip(sorted(dev.measured), kriging.errors_pct, strict=True))
    assert max(abs(errors[k]) for k in exact) < 0.01
    assert leave_one_out("layer-sum", dev, BLOCKS).median_abs_pct > 10
    assert leave_one_out("scaled", dev, BLOCKS).median_abs_pct > 5
    assert leave_one_out("corrected", dev, BLOCKS).median_abs_pct > 1
    assert choose(dev, BLOCKS) == "kriging"
    # the cut overhead at 4 (two segments cut there against one run whole), recovered
    # from the other triples when [0, 4) and [4, 9) themselves are not measured
    estimate = fit("kriging", dev.without((0, 4)).without((4, 9)), BLOCKS)
    overhead = estimate([0], [4]) + estimate([4], [9]) - estimate([0], [9])
    assert overhead == pytest.approx(cut_law(0, 4) + cut_law(4, 9) - cut_law(0, 9), rel=0.02)
    # positions that are not candidates: no overhead known there, the block's fusion kept
    a, b = np.array([1, 3, 0, 5]), np.array([8, 9, 7, 9])
    truth = [cut_law(x, y) for x, y in zip(a, b, strict=True)]
    assert fit("kriging", dev, BLOCKS)(a, b) == pytest.approx(truth, rel=0.1)


def test_kriging_interpolates_prefixes_of_a_first_device():
    """A first device only runs prefixes: a slow region between candidates shows as a
    step in the measured prefixes, and a new prefix ending inside it is interpolated."""
    node = np.ones(40)
    slow = np.where((np.arange(40) >= 10) & (np.arange(40) < 20), 2.0, 1.0)  # nodes 10..19

    def law(b: int) -> float:
        return 0.5 + float(slow[:b].sum())

    ends = [4, 8, 10, 12, 16, 20, 24, 30, 36, 40]
    dev = DeviceTimes("glasses", node, {(0, b): law(b) for b in ends})
    blocks = np.array([0, *ends])
    assert leave_one_out("kriging", dev, blocks).median_abs_pct < 0.5 * (
        leave_one_out("scaled", dev, blocks).median_abs_pct
    )
    assert fit("kriging", dev, blocks)([0, 0], [14, 18]) == pytest.approx(
        [law(14), law(18)], rel=0.01
    )


@pytest.mark.parametrize("approach", ESTIMATORS)
def test_leave_one_out_never_sees_the_held_out_time(approach):
    """Change one segment's time: its own leave-one-out estimate must not move (only its
    error does, through the changed truth). Would fail if the fit, or `auto`'s choice,
    saw the held-out segment."""
    rng = np.random.default_rng(1)
    base = {(a, b): cut_law(a, b) * rng.uniform(0.97, 1.03) for a, b in PAIRS}
    held = (2, 6)

    def estimate_of_held(ms: float) -> float:
        dev = DeviceTimes("phone", NODE_MS, {**base, held: ms})
        found = leave_one_out(approach, dev, BLOCKS)
        k = sorted(dev.measured).index(held)
        return ms * (1 + found.errors_pct[k] / 100)

    assert estimate_of_held(base[held]) == pytest.approx(estimate_of_held(50 * base[held]))


def test_auto_picks_per_device_and_says_which():
    plain = DeviceTimes("cloud", NODE_MS, {(a, b): 1.3 * NODE_MS[a:b].sum() for a, b in PAIRS})
    cuts = DeviceTimes("phone", NODE_MS, {(a, b): cut_law(a, b) for a, b in PAIRS})
    assert choose(plain, BLOCKS) == "scaled"  # exact there; first among equals
    assert choose(cuts, BLOCKS) == "kriging"
    auto = leave_one_out(CHOSEN, cuts, BLOCKS)
    assert auto.picked == "kriging" and sum(auto.picks.values()) == auto.count
    assert choose(DeviceTimes("d", NODE_MS, {(0, 9): 5.0}), BLOCKS) == "scaled"  # too few


def test_corrected_shrugs_off_one_bad_timing():
    """One segment timed 10x too slow (a busy moment): the others stay well estimated."""
    good = {(a, b): true_ms("phone", a, b) for a, b in PAIRS}
    dev = DeviceTimes("phone", NODE_MS, {**good, (2, 9): 10 * good[(2, 9)]})
    found = leave_one_out("corrected", dev, BLOCKS)
    keys = sorted(dev.measured)
    others = np.abs([e for k, e in zip(keys, found.errors_pct, strict=True) if k != (2, 9)])
    assert np.percentile(others, 90) < 5


def test_attribution_says_when_per_node_times_miss_most_of_the_time(capsys, session_file):
    """A runtime whose kernels did not map to nodes leaves per-node times that add up to
    a sliver of the measured time: its layer sums are flagged, not shown as meaningful."""
    from backend.usecases.attribution import attribute_device

    full = device("phone", PAIRS)
    sliver = DeviceTimes("phone", NODE_MS * 0.01, full.measured)
    assert attribute_device(full, BLOCKS).layer_sums_meaningful
    flagged = attribute_device(sliver, BLOCKS)
    assert not flagged.layer_sums_meaningful and flagged.node_cover < 0.02
    with Session.open(session_file) as s:
        s.record_node_times(
            "phone", {p: 0.01 * t for p, t in enumerate(NODE_MS)}, runtime="openvino", runs=3
        )
    assert main(["attribute", str(session_file), "--device", "phone"]) == 0
    assert "layer sums are not meaningful on this device" in capsys.readouterr().out
    assert main(["attribute", str(session_file), "--device", "phone", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)["devices"][0]
    assert doc["layer_sums_meaningful"] is False and doc["node_cover"] < 0.02
    assert main(["attribute", str(session_file), "--device", "cloud"]) == 0
    assert "not meaningful" not in capsys.readouterr().out


def test_a_device_with_hundreds_of_segments_is_judged_on_a_bounded_spread_of_them():
    rng = np.random.default_rng(2)
    node = rng.uniform(0.1, 1.0, 300)
    blocks = np.unique(np.concatenate([[0, 300], rng.choice(np.arange(1, 300), 25, False)]))
    pairs = [(int(a), int(b)) for i, a in enumerate(blocks) for b in blocks[i + 1 :]]
    dev = DeviceTimes("d", node, {(a, b): 1.2 * node[a:b].sum() + 0.5 for a, b in pairs})
    assert len(pairs) > 300
    found = leave_one_out("kriging", dev, blocks, limit=12)
    assert found.count == 12 and found.median_abs_pct < 0.1
    assert choose(dev, blocks) in APPROACHES
    assert np.all(np.isfinite(fit(CHOSEN, dev, blocks)(blocks[:-1], blocks[1:])))


def test_auto_chooses_each_held_out_estimate_without_that_segment(monkeypatch):
    """The nested choice: for each held-out segment, `auto` picks its approach on the
    other segments only (a choice made on all of them would leak the held-out time)."""
    from backend.solver import estimators

    seen: list[set] = []
    real = estimators.choose

    def spy(times, blocks):
        seen.append(set(times.measured))
        return real(times, blocks)

    monkeypatch.setattr(estimators, "choose", spy)
    dev = DeviceTimes("phone", NODE_MS, {(a, b): cut_law(a, b) for a, b in PAIRS})
    found = leave_one_out(CHOSEN, dev, BLOCKS)
    held = sorted(dev.measured)
    assert [set(dev.measured) - s for s in seen[: len(held)]] == [{k} for k in held]
    assert seen[len(held) :] == [set(dev.measured)]  # `picked`: what pricing will use
    assert found.count == len(held)


def test_an_estimate_is_held_to_twice_the_shortest_measured_segment_around_it():
    """A fit that runs away far from its data (seen: an estimate 100× the whole model) is
    held to what the device did; where nothing measured contains the segment, it is not."""
    from backend.solver.estimators import _held_to_measured

    dev = DeviceTimes("phone", NODE_MS, {(0, 10): 40.0, (2, 6): 12.0, (6, 10): 9.0})
    runaway = _held_to_measured(dev, lambda s, e: np.full(len(s), 1e6))
    held = runaway(np.array([2, 3, 0, 6]), np.array([6, 5, 10, 10]))
    assert list(held) == [24.0, 24.0, 80.0, 18.0]
    negative = _held_to_measured(dev, lambda s, e: np.full(len(s), -3.0))
    assert list(negative(np.array([2]), np.array([6]))) == [0.0]
    alone = _held_to_measured(
        DeviceTimes("phone", NODE_MS, {(2, 6): 12.0}), lambda s, e: np.full(len(s), 1e6)
    )
    assert list(alone(np.array([0]), np.array([10]))) == [1e6]  # nothing measured around it
