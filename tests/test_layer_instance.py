"""`omdp export-instance`: a session as a segment- or layer-level instance file. The layer
level, built from the attributed per-layer times with each segment's extra cost charged
to its ends, ranks candidate partitions exactly as the session does on a two-device
chain, and within the reported residual of a middle device on longer ones."""

from __future__ import annotations

import itertools
import json

import numpy as np
import onnx
import pytest
from models import skip_model

from backend.chain import Chain, DeviceSpec, LinkSpec
from backend.cli import main
from backend.model.analysis import analyze
from backend.profiling.plan import build_plan
from backend.profiling.session import Session
from backend.solver.costs import LayerInstance, SegmentInstance, layer_costs
from backend.solver.instance_io import load_instance
from backend.solver.ranking import top_k
from backend.usecases.instances import InstanceRequest, export_instance
from backend.usecases.rankings import RankOptions, rank_session

NODE_MS = np.array([3.0, 1.0, 2.0, 4.0, 1.5, 2.5, 1.0, 3.5, 2.0])
RATE = {"glasses": 1.3, "phone": 0.7, "cloud": 0.4}
CANDIDATES = [2, 4, 6]
# fusion and cache effects no rate captures: extra ms per segment, by where it starts/ends
START = {0: 0.0, 2: 0.9, 4: 0.3, 6: 1.4}
END = {2: 0.6, 4: 1.1, 6: 0.2, 9: 0.0}


def true_ms(device: str, a: int, b: int) -> float:
    wobble = 0.25 * ((a * 7 + b * 3) % 5) if device == "phone" else 0.0  # not additive
    return RATE[device] * float(NODE_MS[a:b].sum()) + 0.5 + START[a] + END[b] + wobble


def make_session(tmp_path, devices: list[str]):
    model = tmp_path / "skip.onnx"
    onnx.save(skip_model(), model)
    a = analyze(model)
    links = [LinkSpec(x, y, 50.0, 2.0) for x, y in itertools.pairwise(devices)]
    chain = Chain([DeviceSpec(n) for n in devices], links)
    path = tmp_path / "s.omdp"
    s = Session.create(path, a, chain, CANDIDATES)
    plan = build_plan(a.n, CANDIDATES, chain.names)
    s.save_plan(plan)
    for it in plan.items:
        ms = true_ms(it.device, it.start, it.end)
        stats = {"median": ms, "p10": ms, "p90": ms, "mean": ms, "std": 0.0, "rel_ci": 0.0}
        s.record_result(it.device, (it.start, it.end), load_ms=1.0, samples=[ms] * 5, stats=stats)
    for name in devices:
        s.record_node_times(name, dict(enumerate(NODE_MS.tolist())), runtime="ort", runs=3)
    s.close()
    return path


def candidate_rows(n_devices: int) -> np.ndarray:
    points = [0, *CANDIDATES, 9]
    cuts = [c for c in itertools.combinations_with_replacement(points, n_devices - 1)]
    return np.array([[0, *c, 9] for c in cuts])


def test_two_devices_layer_ranking_agrees_with_the_session(tmp_path):
    path = make_session(tmp_path, ["glasses", "cloud"])
    out = tmp_path / "layer.json"
    assert main(["export-instance", str(path), "--level", "layer", "-o", str(out)]) == 0
    layer = load_instance(out)  # the file as any reader sees it
    assert isinstance(layer, LayerInstance) and layer.n_positions == 9
    with Session.open(path) as s:
        ranked = rank_session(s, RankOptions(k=100))
    seg_costs = {p.cuts: p.total_ms for p in ranked.partitions}
    lat, _ = layer_costs(layer, candidate_rows(2))
    for row, cost in zip(candidate_rows(2), lat, strict=True):
        assert cost == pytest.approx(seg_costs[tuple(row[1:-1])], abs=1e-9)
    # the layer solver's top K, kept to candidate cuts, is the session's ranking's head
    on_candidates = [p for p in top_k(layer, 40) if set(p.cuts) <= {0, *CANDIDATES, 9}]
    assert on_candidates
    head = ranked.partitions[: len(on_candidates)]
    assert [p.cuts for p in on_candidates] == [p.cuts for p in head]
    assert [p.total_ms for p in on_candidates] == pytest.approx([p.total_ms for p in head])
    # the compute is the attribution: a device running everything costs its whole time
    assert layer.compute_ms[:, 0].sum() == pytest.approx(true_ms("glasses", 0, 9))


def test_three_devices_agree_within_the_middle_device_residual(tmp_path, capsys):
    path = make_session(tmp_path, ["glasses", "phone", "cloud"])
    with Session.open(path) as s:
        found = export_instance(s, InstanceRequest(level="layer"), tmp_path / "layer.json")
        ranked = rank_session(s, RankOptions(k=1000))
    assert found.residual_ms["glasses"] == pytest.approx(0, abs=1e-9)
    assert found.residual_ms["cloud"] == pytest.approx(0, abs=1e-9)
    bound = found.residual_ms["phone"]
    assert 0 < bound < 1.0  # the phone's wobble is not a sum of its two ends
    seg_costs = {p.cuts: p.total_ms for p in ranked.partitions}
    layer = load_instance(found.path)
    rows = candidate_rows(3)
    lat, _ = layer_costs(layer, rows)
    gaps = [abs(c - seg_costs[tuple(r[1:-1])]) for r, c in zip(rows, lat, strict=True)]
    assert max(gaps) <= bound + 1e-9
    assert found.clamped == 0


def test_segment_level_round_trips_through_solve(tmp_path, capsys):
    path = make_session(tmp_path, ["glasses", "phone", "cloud"])
    out = tmp_path / "seg.json"
    assert main(["export-instance", str(path), "-o", str(out), "--bw", "glasses-phone=7"]) == 0
    assert "segment-level instance" in capsys.readouterr().out
    inst = load_instance(out)
    assert isinstance(inst, SegmentInstance) and inst.bandwidth_mbps[0] == 7
    assert json.loads(out.read_text())["kind"] == "segment"
    with Session.open(path) as s:
        ranked = rank_session(s, RankOptions(k=5, bandwidth=("glasses-phone=7",)))
    assert [p.cuts for p in top_k(inst, 5)] == [p.cuts for p in ranked.partitions]
