"""`omdp solve`: output shapes, the documented instance format, and one-line errors (exit 2)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from backend.cli import main
from backend.solver.costs import LayerInstance, SegmentInstance
from backend.solver.instance_io import instance_to_dict, load_instance
from backend.solver.link_values import BANDWIDTH, parse_values
from backend.solver.ranking import top_k

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "instance-format.md"


def doc_examples() -> list[dict]:
    """The JSON examples of docs/instance-format.md (segment-level first, then layer)."""
    return [json.loads(b) for b in re.findall(r"```json\n(.*?)```", DOC.read_text(), re.S)]


@pytest.fixture
def seg_file(tmp_path):
    path = tmp_path / "seg.json"
    path.write_text(json.dumps(doc_examples()[0]))
    return path


@pytest.fixture
def layer_file(tmp_path):
    path = tmp_path / "layer.json"
    path.write_text(json.dumps(doc_examples()[1]))
    return path


def run(capsys, *argv):
    code = main(["solve", *map(str, argv)])
    out = capsys.readouterr()
    return code, out.out, out.err


# ------------------------------------------------------------------------------------
# The documented examples
# ------------------------------------------------------------------------------------


def test_doc_examples_load_and_mean_what_the_doc_says():
    seg = load_instance_from(doc_examples()[0])
    assert isinstance(seg, SegmentInstance)
    assert seg.link_names == ("glasses-phone", "phone-cloud")
    assert seg.sink == 0 and seg.source == 0 and seg.estimated_ms is not None
    fits = seg.memory.feasible()
    assert not fits[0, 0, 3] and not fits[0, 0, 2] and fits[0, 0, 1]  # 3 MB glasses limit
    cuts = {p.cuts for p in top_k(seg, 100)}
    assert (10, 10) not in cuts and (7, 7) not in cuts and len(cuts) == 7
    layer = load_instance_from(doc_examples()[1])
    assert isinstance(layer, LayerInstance) and layer.n_positions == 3


def load_instance_from(data):
    from backend.solver.instance_io import instance_from_dict

    return instance_from_dict(data, "doc")


def test_round_trip_through_json(tmp_path):
    for data in doc_examples():
        inst = load_instance_from(data)
        path = tmp_path / "again.json"
        path.write_text(json.dumps(instance_to_dict(inst)))
        again = load_instance(path)
        for objective in ("latency", "throughput"):
            a = [p.to_dict() for p in top_k(inst, 20, objective)]
            assert a == [p.to_dict() for p in top_k(again, 20, objective)]


# ------------------------------------------------------------------------------------
# Output
# ------------------------------------------------------------------------------------


def test_human_table_is_aligned(capsys, seg_file):
    code, out, err = run(capsys, seg_file, "-k", 5)
    assert code == 0 and err == ""
    lines = out.splitlines()
    assert lines[0].startswith(f"{seg_file}: segment-level") and "glasses-phone 100 Mbit/s" in out
    header, rows = lines[1], lines[2:]
    assert header.split()[:5] == ["rank", "total", "ms", "glasses", "phone"]
    assert len(rows) == 5 and [r.split()[0] for r in rows] == ["1", "2", "3", "4", "5"]
    for col in ("glasses", "phone", "cloud", "transfers"):  # columns start at the same place
        start = header.index(col)
        assert all(r[start - 1] == " " and r[start] != " " for r in rows)
    assert rows[0].split()[1] == "93.184"
    assert "glasses->phone @0 600 KiB" in rows[0]  # binary units, no needless digits


def test_throughput_table_shows_latency_and_bottleneck(capsys, seg_file):
    code, out, _ = run(capsys, seg_file, "-k", 3, "--objective", "throughput")
    assert code == 0
    assert "latency ms" in out and "bottleneck" in out and "link glasses-phone" in out


def test_json_output_matches_the_solver(capsys, seg_file):
    code, out, _ = run(capsys, seg_file, "-k", 4, "--json", "--bw", "glasses-phone=20")
    assert code == 0
    data = json.loads(out)
    inst = load_instance(seg_file)
    ref = top_k(inst, 4, bandwidth_mbps={"glasses-phone": 20.0})
    assert data == [p.to_dict() for p in ref]
    assert [d["rank"] for d in data] == [1, 2, 3, 4]
    first = data[0]
    assert {"rank", "total_ms", "stages", "transfers"} <= set(first)
    assert [s["device"] for s in first["stages"]] == ["glasses", "phone", "cloud"]
    for t in first["transfers"]:
        assert t["link"] in ("glasses-phone", "phone-cloud") and t["bytes"] > 0 and t["ms"] > 0


def test_bandwidth_override_changes_the_ranking(capsys, seg_file):
    _, fast, _ = run(capsys, seg_file, "-k", 1, "--json", "--bw", "glasses-phone=1000")
    _, slow, _ = run(capsys, seg_file, "-k", 1, "--json", "--bandwidth", "glasses-phone=1")
    assert json.loads(fast)[0]["cuts"] != json.loads(slow)[0]["cuts"]


def test_estimated_cost_model(capsys, seg_file):
    code, out, _ = run(capsys, seg_file, "-k", 2, "--json", "--cost-model", "estimated")
    assert code == 0
    for p in json.loads(out):
        assert p["cost_model"] == "estimated" and p["estimated_total_ms"] == p["total_ms"]


def test_layer_instance(capsys, layer_file):
    code, out, _ = run(capsys, layer_file, "-k", 3)
    assert code == 0 and "layer-level" in out and "d0->d1" in out


def test_console_script_runs(seg_file):
    out = subprocess.run(
        [sys.executable, "-c", "import sys; from backend.cli import main; sys.exit(main())",
         "solve", str(seg_file), "-k", "2", "--json"],
        capture_output=True, text=True, cwd=ROOT,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert len(json.loads(out.stdout)) == 2


# ------------------------------------------------------------------------------------
# Errors: one line, exit 2
# ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-k", "0"], "K must be a whole number from 1 to 100,000, got '0'"),
        (["-k", "-3"], "K must be a whole number from 1"),
        (["-k", "abc"], "K must be a whole number from 1 to 100,000, got 'abc'"),
        (["--bw", "glasses-phone=abc"], "not a number: 'abc'"),
        (["--bw", "glasses-phone=0"], "must be a number > 0"),
        (["--bw", "glasses-phone=-5"], "must be a number > 0"),
        (["--bw", "glasses-phone=inf"], "must be a number > 0"),
        (["--bw", "glasses-cloud=5"], "unknown link 'glasses-cloud'"),
        (["--bw", "glasses-phone"], "is not LINK=MBPS"),
        (["--bw", "glasses-phone=5", "--bw", "glasses-phone=6"], "given twice"),
        (["--objective", "fastest"], "unknown objective 'fastest'"),
        (["--cost-model", "guess"], "unknown cost model 'guess'"),
    ],
)
def test_argument_errors(capsys, seg_file, args, message):
    code, out, err = run(capsys, seg_file, *args)
    assert code == 2 and out == ""
    assert err.startswith("omdp: error: ") and message in err
    assert err.count("\n") == 1


def test_unknown_link_lists_the_valid_ones(capsys, seg_file):
    _, _, err = run(capsys, seg_file, "--bw", "x-y=5")
    assert "valid links: glasses-phone, phone-cloud" in err


def test_missing_and_broken_files(capsys, tmp_path):
    code, _, err = run(capsys, tmp_path / "nope.json")
    assert code == 2 and "no instance file at" in err
    bad = tmp_path / "bad.json"
    bad.write_text('{"kind": "segment",\n "devices": [}')
    code, _, err = run(capsys, bad)
    assert code == 2 and f"{bad}:2" in err and "not valid JSON" in err


def mutate(data, path, value):
    data = json.loads(json.dumps(data))
    node = data
    for key in path[:-1]:
        node = node[key]
    if value is KeyError:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return data


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (("links", "glasses-phone", "bandwidth_mbps"), 0, "'links.glasses-phone.bandwidth_mbps'"),
        (("links", "glasses-phone", "bandwidth_mbps"), "abc", "must be a number > 0, got 'abc'"),
        (("links", "glasses-phone", "bandwidth_mbps"), -5, "must be a number > 0, got -5"),
        (("links", "glasses-phone", "bandwidth_mbps"), KeyError, "is missing"),
        (("links", "glasses-cloud"), {"bandwidth_mbps": 5}, "valid links: glasses-phone"),
        (("links", "phone-cloud"), KeyError, "'links.phone-cloud' is missing"),
        (("candidates",), [0, 7, 3, 10], "'candidates' must increase strictly"),
        (("candidates",), [0, "3", 7, 10], "'candidates[1]'"),
        (("cut_bytes",), [1, 2, 3], "'cut_bytes' must have 4 values"),
        (("cut_bytes",), [1, 2, -3, 4], "'cut_bytes[2]' must be a number >= 0"),
        (("compute_ms", "phone", "3:5"), 1.0, "'compute_ms.phone.3:5'"),
        (("compute_ms", "phone", "x"), 1.0, "is not a segment key"),
        (("compute_ms", "watch"), {}, "'compute_ms.watch' names unknown device"),
        (("compute_ms",), [], "'compute_ms' must be an object"),
        (("devices",), ["a", "a", "b"], "'devices' repeats the name 'a'"),
        (("sink",), "moon", "'sink' names unknown device 'moon'"),
        (("kind",), "graph", "'kind' must be 'segment' or 'layer'"),
        (("memory", "limit_bytes", "glasses"), "big", "'memory.limit_bytes.glasses'"),
        (("memory", "node_weight_bytes"), [1, 2], "'memory.node_weight_bytes' must have 10"),
        (("estimated_node_ms",), [1, 2], "'estimated_node_ms' must be an object"),
        (("estimated_node_ms", "phone"), [1, 2], "'estimated_node_ms.phone' must have 10"),
    ],
)
def test_malformed_instances_name_the_field(capsys, tmp_path, path, value, message):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(mutate(doc_examples()[0], path, value)))
    code, out, err = run(capsys, bad)
    assert code == 2 and out == ""
    assert err.startswith(f"omdp: error: {bad}: field ") and message in err
    assert err.count("\n") == 1


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (("compute_ms",), [[1, 2, 3]], "'transfer_ms' must hold 2 device x device matrices"),
        (("compute_ms", 0), [1, 2], "'compute_ms[0]' must have 3 values"),
        (("transfer_ms", 1), [[0, 1]], "'transfer_ms[1]' must be a 3 x 3 matrix"),
        (("transfer_ms", 1, 0, 1), "x", "'transfer_ms[1][0][1]'"),
    ],
)
def test_malformed_layer_instances(capsys, tmp_path, path, value, message):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(mutate(doc_examples()[1], path, value)))
    code, _, err = run(capsys, bad)
    assert code == 2 and message in err and err.count("\n") == 1


def test_bandwidth_flag_on_a_layer_instance(capsys, layer_file):
    code, _, err = run(capsys, layer_file, "--bw", "d0-d1=5")
    assert code == 2 and "layer-level" in err


# ------------------------------------------------------------------------------------
# LINK=VALUE arguments (shared with the session-level verbs)
# ------------------------------------------------------------------------------------


def test_parse_bandwidth_values():
    links = ["glasses-phone", "phone-cloud"]
    assert parse_values(["glasses-phone=20", " phone-cloud = 2.5 "], links, BANDWIDTH) == {
        "glasses-phone": 20.0,
        "phone-cloud": 2.5,
    }
    assert parse_values([], links, BANDWIDTH) == {}
    from backend.errors import OmdpError

    for bad, msg in [
        ("glasses-phone=abc", "not a number"),
        ("glasses-phone=0", "> 0"),
        ("glasses-phone=-5", "> 0"),
        ("glasses-phone=nan", "> 0"),
        ("laptop-phone=5", "valid links: glasses-phone, phone-cloud"),
        ("=5", "LINK=MBPS"),
    ]:
        with pytest.raises(OmdpError, match=msg):
            parse_values([bad], links, BANDWIDTH)


def test_no_feasible_partition_is_reported_not_crashed(capsys, tmp_path):
    inst = SegmentInstance(["a", "b"], [0, 5], [10.0, 10.0], np.full((2, 2, 2), np.nan), [5], [0])
    path = tmp_path / "none.json"
    path.write_text(json.dumps(instance_to_dict(inst)))
    code, out, _ = run(capsys, path)
    assert code == 0 and "no feasible partition" in out
    code, out, _ = run(capsys, path, "--json")
    assert code == 0 and json.loads(out) == []
