"""Ranking, trace replay and export from a real session file (SQLite), through the CLI."""

import json

import numpy as np
import onnx
import pytest
from models import skip_model
from synthetic import measured_session

from backend.chain import Chain, DeviceSpec
from backend.cli import main
from backend.export import read_export
from backend.model.analysis import analyze
from backend.profiling.session import Session
from backend.solver.pricing import instance_from_session


@pytest.fixture
def session_file(tmp_path):
    model = tmp_path / "skip.onnx"
    onnx.save(skip_model(), model)
    a = analyze(model)
    path = tmp_path / "s.omdp"
    s = measured_session(path, a)
    s.record_node_times("phone", {p: 2.2 for p in range(a.n)}, runtime="onnxruntime", runs=3)
    s.close()
    return path


def cli(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def test_instance_has_measured_and_estimated_tables(session_file):
    with Session.open(session_file) as s:
        inst = instance_from_session(s)
    assert list(inst.candidates) == [0, 2, 6, 9]
    assert inst.compute_ms[2, 1, 3] == pytest.approx(0.5 * 7)  # cloud runs [2, 9)
    assert not np.isfinite(inst.compute_ms[0, 1, 2])  # glasses only measured prefixes
    assert inst.layer_sum_ms[1, 0, 3] == pytest.approx(2.2 * 9)
    # the fitted estimator recovers the phone's 2 ms per position from its measurements
    upper = np.triu_indices(4, 1)
    assert inst.estimated_ms[1][upper] == pytest.approx(inst.compute_ms[1][upper])
    assert not np.isfinite(inst.estimated_ms[0][upper]).any()  # no node times
    assert not inst.has_stand_ins  # everything planned is measured


def test_paths_rerank_when_bandwidth_changes(capsys, session_file):
    code, out, _ = cli(capsys, "paths", session_file, "-k", "3", "--json")
    assert code == 0
    fast = json.loads(out)
    assert [p["rank"] for p in fast] == [1, 2, 3]
    assert {"total_ms", "stages", "transfers"} <= set(fast[0])
    code, out, _ = cli(
        capsys, "paths", session_file, "-k", "3", "--json", "--bw", "glasses-phone=0.05"
    )
    slow = json.loads(out)
    assert slow[0]["total_ms"] > fast[0]["total_ms"]
    assert [s["end"] for s in slow[0]["stages"]] != [s["end"] for s in fast[0]["stages"]]
    assert slow[0]["stages"][0]["end"] == 9  # a crawling first link: stay on the glasses


def test_paths_save_persists_link_values(capsys, session_file):
    cli(
        capsys,
        "paths",
        session_file,
        "--bw",
        "phone-cloud=7",
        "--latency",
        "phone-cloud=0",
        "--save",
    )
    with Session.open(session_file) as s:
        assert s.bandwidths()[1] == (7.0, 0.0)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--bw", "glasses-phone=0"], "must be a number > 0"),
        (["--bw", "glasses-phone=abc"], "is not a number"),
        (["--bw", "glasses-cloud=5"], "unknown link"),
        (["--latency", "phone-cloud=-1"], "must be a number ≥ 0 ms"),
        (["-k", "0"], "K must be"),
        (["--model", "estimated", "--sink", "tv"], "unknown sink device 'tv'"),
    ],
)
def test_paths_bad_input(capsys, session_file, args, message):
    code, _, err = cli(capsys, "paths", session_file, *args)
    assert code == 2 and message in err and err.count("\n") == 1


def test_trace_replay_and_robust_choice(capsys, session_file, tmp_path):
    trace = tmp_path / "t.tsv"
    trace.write_text(
        "".join(f"{t}\t{bw}\n" for t, bw in enumerate([50, 40, 0.02, 0.02, 30, 60, 0, 45]))
    )
    code, out, _ = cli(capsys, "trace", session_file, "--trace", f"glasses-phone={trace}", "--json")
    assert code == 0
    data = json.loads(out)
    assert data["steps"] == 8
    assert len({tuple(c) for c in data["optimal_cuts"] if c}) >= 2  # the best one changes
    assert data["best_mean"]["mean_regret_ms"] >= 0
    code, out, _ = cli(capsys, "trace", session_file, "--trace", f"glasses-phone={trace}")
    assert "robust choices" in out
    (tmp_path / "bad.tsv").write_text("1 5\n0 6\n")
    bad = f"glasses-phone={tmp_path}/bad.tsv"
    code, _, err = cli(capsys, "trace", session_file, "--trace", bad)
    assert code == 2 and "bad.tsv:2" in err


def test_export_from_session(capsys, session_file, tmp_path):
    out_file = tmp_path / "partition.json"
    code, _, err = cli(
        capsys,
        "export",
        session_file,
        "--rank",
        "1,2",
        "-o",
        out_file,
        "--with-models",
        tmp_path / "segs",
        "--bw",
        "glasses-phone=40",
    )
    assert code == 0, err
    doc = read_export(out_file)
    assert [p["rank"] for p in doc["partitions"]] == [1, 2]
    assert doc["links"][0]["bandwidth_mbps"] == 40.0
    files = [s["file"] for s in doc["partitions"][0]["segments"] if "file" in s]
    assert files and all(onnx.load(f).graph.node for f in files)
    with Session.open(session_file) as s:
        assert [p["name"] for p in s.partitions()] == ["rank 1", "rank 2"]
    code, _, err = cli(capsys, "export", session_file, "--rank", "99", "-o", out_file)
    assert code == 2 and "no rank 99" in err


def test_a_session_without_node_times_prices_measured_only(tmp_path):
    model = tmp_path / "skip.onnx"
    onnx.save(skip_model(), model)
    a = analyze(model)
    s = Session.create(tmp_path / "n.omdp", a, Chain.of([DeviceSpec("only")]), [])
    s.record_result(
        "only", (0, a.n), load_ms=1.0, samples=[2.0], stats={"median": 2.0, "p10": 2.0, "p90": 2.0}
    )
    assert s.node_times_frame().empty
    inst = instance_from_session(s)
    assert inst.estimated_ms is None and inst.compute_ms[0, 0, 1] == 2.0


def test_memory_limit_keeps_big_segments_off_a_device(capsys, session_file):
    code, out, _ = cli(capsys, "paths", session_file, "-k", "5", "--json")
    assert any(p["stages"][0]["end"] > 0 for p in json.loads(out))  # glasses may compute
    code, out, _ = cli(
        capsys, "paths", session_file, "-k", "5", "--json", "--memory", "glasses=0.0005"
    )  # 524 B: less than the 768 B input
    assert code == 0
    for part in json.loads(out):
        assert part["stages"][0]["start"] == part["stages"][0]["end"] == 0
    code, _, err = cli(capsys, "paths", session_file, "--memory", "tv=5")
    assert code == 2 and "unknown device 'tv' in --memory 'tv=5'" in err
