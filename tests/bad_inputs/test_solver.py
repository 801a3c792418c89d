"""Bad inputs to the solver: instance files (`omdp solve`), trace files (`omdp trace`), and
the arguments of `solve`, `paths` and `trace`. Each is refused on one line, exit 2, with
no traceback and no file changed (the instance, the session, the traces, their folder).

Several are inputs that cost more than they say: 40,000 candidates, a 100,000-deep JSON,
a 2^70 position, a throughput ranking whose explicit graph would not fit in memory.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from models import skip_model
from synthetic import measured_session

from backend.model.analysis import analyze

from .harness import expect_rejected

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "instance-format.md"
SEGMENT, LAYER = (json.loads(b) for b in re.findall(r"```json\n(.*?)```", DOC.read_text(), re.S))


def mutate(data: dict, path: tuple, value: Any) -> dict:
    """A copy of `data` with the field at `path` set to `value` (KeyError: removed)."""
    data = json.loads(json.dumps(data))
    node = data
    for key in path[:-1]:
        node = node[key]
    if value is KeyError:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return data


def solve(capsys, folder: Path, text: str | bytes, *args: object, contains: str) -> str:
    path = folder / "inst.json"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return expect_rejected(capsys, ["solve", path, *args], watch=[folder], contains=contains)


# -- instance files -------------------------------------------------------------------------

FIELD_CASES = [
    # (id, base, path, value, contains)
    ("kind-unknown", SEGMENT, ("kind",), "graph", "'kind' must be 'segment' or 'layer'"),
    ("kind-number", SEGMENT, ("kind",), 5, "'kind' must be 'segment' or 'layer'"),
    ("devices-missing", SEGMENT, ("devices",), KeyError, "'devices' is missing"),
    ("devices-empty", SEGMENT, ("devices",), [], "non-empty list of device names"),
    ("devices-string", SEGMENT, ("devices",), "glasses", "non-empty list of device names"),
    ("devices-numbers", SEGMENT, ("devices",), [1, 2, 3], "non-empty list of device names"),
    ("devices-repeat", SEGMENT, ("devices",), ["a", "a", "b"], "repeats the name 'a'"),
    (
        "devices-ambiguous-links",
        SEGMENT,
        ("devices",),
        ["a", "b-c", "a-b", "c"],
        "two links the name 'a-b-c'",
    ),
    (
        "device-name-newline",
        SEGMENT,
        ("devices",),
        ["a\nb", "phone", "cloud"],
        "contains control characters",
    ),
    (
        "device-name-escape",
        SEGMENT,
        ("devices",),
        ["\x1b[2Jx", "phone", "cloud"],
        "contains control characters",
    ),
    ("device-name-equals", SEGMENT, ("devices",), ["a=b", "phone", "cloud"], "contains '='"),
    ("device-name-empty", SEGMENT, ("devices",), ["", "phone", "cloud"], "is empty"),
    ("device-name-long", SEGMENT, ("devices",), ["x" * 10_000, "phone", "cloud"], "longer"),
    ("devices-too-many", LAYER, ("devices",), [f"d{i}" for i in range(300)], "the limit is 256"),
    ("candidates-missing", SEGMENT, ("candidates",), KeyError, "'candidates' is missing"),
    ("candidates-one", SEGMENT, ("candidates",), [0], "at least two positions"),
    ("candidates-unsorted", SEGMENT, ("candidates",), [0, 7, 3, 10], "must increase strictly"),
    ("candidates-not-from-0", SEGMENT, ("candidates",), [1, 3, 7, 10], "start at 0"),
    ("candidates-2^70", SEGMENT, ("candidates",), [0, 3, 7, 2**70], "'candidates[3]' must be"),
    ("candidates-float", SEGMENT, ("candidates",), [0, 3.0, 7, 10], "'candidates[1]' must be"),
    ("candidates-negative", SEGMENT, ("candidates",), [0, -3, 7, 10], "'candidates[1]'"),
    ("candidates-bool", SEGMENT, ("candidates",), [0, True, 7, 10], "'candidates[1]'"),
    ("cut-bytes-short", SEGMENT, ("cut_bytes",), [1, 2, 3], "must have 4 values"),
    ("cut-bytes-negative", SEGMENT, ("cut_bytes",), [1, 2, -3, 4], "'cut_bytes[2]'"),
    ("cut-bytes-string", SEGMENT, ("cut_bytes",), [1, 2, "3", 4], "'cut_bytes[2]'"),
    ("cut-bytes-10^400", SEGMENT, ("cut_bytes",), [1, 2, 10**400, 4], "'cut_bytes[2]'"),
    ("cut-bytes-null", SEGMENT, ("cut_bytes",), [1, 2, None, 4], "'cut_bytes[2]'"),
    ("cut-bytes-object", SEGMENT, ("cut_bytes",), {"0": 1}, "must be a list of numbers"),
    ("links-missing", SEGMENT, ("links",), KeyError, "'links' is missing"),
    ("links-list", SEGMENT, ("links",), [1, 2], "'links' must be an object"),
    (
        "link-unknown",
        SEGMENT,
        ("links", "glasses-cloud"),
        {"bandwidth_mbps": 5},
        "valid links: glasses-phone, phone-cloud",
    ),
    ("link-missing", SEGMENT, ("links", "phone-cloud"), KeyError, "'links.phone-cloud' is"),
    ("link-not-object", SEGMENT, ("links", "phone-cloud"), 100, "must be an object"),
    (
        "link-unknown-field",
        SEGMENT,
        ("links", "phone-cloud", "jitter_ms"),
        3,
        "'links.phone-cloud.jitter_ms' is not a field",
    ),
    ("bandwidth-zero", SEGMENT, ("links", "glasses-phone", "bandwidth_mbps"), 0, "> 0"),
    ("bandwidth-negative", SEGMENT, ("links", "glasses-phone", "bandwidth_mbps"), -5, "> 0"),
    ("bandwidth-null", SEGMENT, ("links", "glasses-phone", "bandwidth_mbps"), None, "> 0"),
    ("bandwidth-10^400", SEGMENT, ("links", "glasses-phone", "bandwidth_mbps"), 10**400, "> 0"),
    ("latency-negative", SEGMENT, ("links", "glasses-phone", "latency_ms"), -1, ">= 0"),
    ("latency-string", SEGMENT, ("links", "glasses-phone", "latency_ms"), "5", ">= 0"),
    ("source-unknown", SEGMENT, ("source",), "moon", "'source' names unknown device 'moon'"),
    ("sink-unknown", SEGMENT, ("sink",), "moon", "'sink' names unknown device 'moon'"),
    ("sink-number", SEGMENT, ("sink",), 0, "'sink' names unknown device 0"),
    ("sink-list", SEGMENT, ("sink",), ["glasses"], "'sink' names unknown device"),
    ("compute-missing", SEGMENT, ("compute_ms",), KeyError, "'compute_ms' is missing"),
    ("compute-list", SEGMENT, ("compute_ms",), [], "'compute_ms' must be an object"),
    ("compute-unknown-device", SEGMENT, ("compute_ms", "watch"), {}, "names unknown device"),
    ("compute-bad-key", SEGMENT, ("compute_ms", "phone", "x"), 1.0, "is not a segment key"),
    (
        "compute-key-empty-segment",
        SEGMENT,
        ("compute_ms", "phone", "3:3"),
        1.0,
        "is not a segment [a, b)",
    ),
    (
        "compute-key-not-candidate",
        SEGMENT,
        ("compute_ms", "phone", "0:99"),
        1.0,
        "is not a segment [a, b)",
    ),
    (
        "compute-key-huge",
        SEGMENT,
        ("compute_ms", "phone", "0:" + "9" * 5000),
        1.0,
        "is not a segment key",
    ),
    (
        "compute-key-newline",
        SEGMENT,
        ("compute_ms", "phone", "0:\n:3"),
        1.0,
        "'compute_ms.phone.'0:\\n:3''",
    ),
    ("compute-negative", SEGMENT, ("compute_ms", "phone", "0:3"), -9.0, "'compute_ms.phone.0:3'"),
    ("compute-string", SEGMENT, ("compute_ms", "phone", "0:3"), "fast", "must be a number"),
    (
        "compute-matrix-size",
        SEGMENT,
        ("compute_ms", "phone"),
        [[0, 1], [0, 0]],
        "must be a 4 x 4 matrix",
    ),
    ("compute-number", SEGMENT, ("compute_ms", "phone"), 3, "must be a matrix or an object"),
    (
        "estimated-both",
        mutate(SEGMENT, ("estimated_ms",), {"phone": {"0:3": 1.0}}),
        ("estimated_node_ms", "phone"),
        [1] * 10,
        "are both given",
    ),
    ("estimated-node-length", SEGMENT, ("estimated_node_ms", "phone"), [1, 2], "must have 10"),
    ("estimated-node-list", SEGMENT, ("estimated_node_ms",), [1, 2], "must be an object"),
    (
        "estimated-ms-list",
        mutate(SEGMENT, ("estimated_node_ms",), KeyError),
        ("estimated_ms",),
        [1],
        "must be an object",
    ),
    (
        "estimated-typo",
        SEGMENT,
        ("estimated_node",),
        {"phone": [1] * 10},
        "did you mean 'estimated_node_ms'?",
    ),
    ("top-level-typo", SEGMENT, ("cut_byte",), [1, 2, 3, 4], "is not a field of an instance"),
    ("memory-list", SEGMENT, ("memory",), [1], "'memory' must be an object"),
    ("memory-no-limits", SEGMENT, ("memory", "limit_bytes"), KeyError, "limit_bytes' is missing"),
    (
        "memory-limit-negative",
        SEGMENT,
        ("memory", "limit_bytes", "glasses"),
        -1,
        "'memory.limit_bytes.glasses'",
    ),
    (
        "memory-limit-string",
        SEGMENT,
        ("memory", "limit_bytes", "glasses"),
        "big",
        "'memory.limit_bytes.glasses'",
    ),
    ("memory-weights-length", SEGMENT, ("memory", "node_weight_bytes"), [1, 2], "must have 10"),
    (
        "memory-both-forms",
        SEGMENT,
        ("memory", "weight_bytes"),
        {"0:3": 1},
        "both per node and per segment",
    ),
    ("memory-unknown-field", SEGMENT, ("memory", "swap_bytes"), 5, "is not a field"),
    ("layer-compute-empty", LAYER, ("compute_ms",), [], "one row of device times per layer"),
    ("layer-compute-row", LAYER, ("compute_ms", 0), [1, 2], "'compute_ms[0]' must have 3"),
    ("layer-compute-negative", LAYER, ("compute_ms", 0, 0), -4.0, "'compute_ms[0][0]'"),
    ("layer-transfer-count", LAYER, ("transfer_ms",), [[[0, 1, 1]] * 3], "must hold 4"),
    ("layer-transfer-matrix", LAYER, ("transfer_ms", 1), [[0, 1]], "must be a 3 x 3 matrix"),
    ("layer-transfer-string", LAYER, ("transfer_ms", 1, 0, 1), "x", "'transfer_ms[1][0][1]'"),
    ("layer-unknown-field", LAYER, ("candidates_ms",), [], "is not a field"),
    ("layer-sink-unknown", LAYER, ("sink",), "moon", "'sink' names unknown device"),
]


@pytest.mark.parametrize(
    ("base", "path", "value", "contains"),
    [c[1:] for c in FIELD_CASES],
    ids=[c[0] for c in FIELD_CASES],
)
def test_bad_instance_field(capsys, tmp_path, base, path, value, contains):
    line = solve(capsys, tmp_path, json.dumps(mutate(base, path, value)), contains=contains)
    assert f"{tmp_path / 'inst.json'}: field " in line


FILE_CASES = [
    ("empty", "", "not valid JSON"),
    ("text", "devices: a, b", "not valid JSON"),
    ("truncated", json.dumps(SEGMENT)[:-20], "not valid JSON"),
    ("array", "[1, 2]", "must hold a JSON object"),
    ("string", '"segment"', "must hold a JSON object"),
    ("deep-array", "[" * 100_000 + "]" * 100_000, "nests deeper"),
    ("deep-object", '{"a":' * 100_000 + "1" + "}" * 100_000, "nests deeper"),
    ("number-5000-digits", '{"kind": ' + "9" * 5000 + "}", "not valid JSON"),
    ("repeated-key", '{"kind": "segment", "kind": "layer"}', "the key 'kind' appears twice"),
    ("nan-literal", json.dumps(mutate(SEGMENT, ("cut_bytes", 1), float("nan"))), "got nan"),
    ("infinity-literal", json.dumps(mutate(SEGMENT, ("cut_bytes", 1), float("inf"))), "got inf"),
    ("1e400", json.dumps(SEGMENT).replace('"latency_ms": 5', '"latency_ms": 1e400'), "got inf"),
    ("binary", b"\x89PNG\r\n\x1a\n" + bytes(range(256)), "not a text file"),
    ("utf-16", json.dumps(SEGMENT).encode("utf-16"), "not a text file"),
    ("nul-bytes", b'{"kind": "segment"\x00}', "not valid JSON"),
]


@pytest.mark.parametrize(
    ("text", "contains"), [c[1:] for c in FILE_CASES], ids=[c[0] for c in FILE_CASES]
)
def test_bad_instance_file(capsys, tmp_path, text, contains):
    solve(capsys, tmp_path, text, contains=contains)


def test_40000_candidates_are_refused_before_allocating(capsys, tmp_path):
    m = 40_000
    data = mutate(SEGMENT, ("candidates",), list(range(m)))
    data["cut_bytes"] = [1] * m
    data.pop("estimated_node_ms")
    data.pop("memory")
    data["compute_ms"] = {"phone": {f"0:{m - 1}": 1.0}}
    line = solve(capsys, tmp_path, json.dumps(data), contains="40,000 candidates x 3 devices")
    assert "35.8 GiB" in line and "the limit is 4,194,304 table cells" in line


def test_too_many_layers_are_refused_before_allocating(capsys, tmp_path):
    data = mutate(LAYER, ("compute_ms",), [[1, 1, 1]] * 500_000)
    solve(capsys, tmp_path, json.dumps(data), contains="500,000 layers x 3 devices")


def test_a_throughput_graph_too_big_for_memory_is_refused(capsys, tmp_path):
    n = 3_000  # 13.5 million edges in the explicit run-start graph
    data = {
        "kind": "layer",
        "devices": ["a", "b", "c"],
        "compute_ms": [[1, 1, 1]] * n,
        "transfer_ms": [[[0, 1, 2], [1, 0, 1], [2, 1, 0]]] * (n + 1),
    }
    solve(
        capsys,
        tmp_path,
        json.dumps(data),
        "--objective",
        "throughput",
        contains="the limit is 10,000,000",
    )


def test_an_instance_file_over_the_size_limit(capsys, tmp_path):
    text = json.dumps(SEGMENT) + " " * (32 << 20)
    solve(capsys, tmp_path, text, contains="larger than 32 MiB")


def test_paths_that_are_not_instance_files(capsys, tmp_path):
    (tmp_path / "folder").mkdir()
    fifo = tmp_path / "fifo.json"
    os.mkfifo(fifo)  # opening it would wait for a writer forever
    for target, contains in [
        (tmp_path / "nope.json", "no instance file at"),
        (tmp_path / "folder", "is a directory"),
        (fifo, "is not a regular file"),
        ("/dev/zero", "is not a regular file"),
    ]:
        expect_rejected(capsys, ["solve", target], watch=[tmp_path], contains=contains)


# -- `omdp solve` arguments -----------------------------------------------------------------

SOLVE_ARGS = [
    (["-k", "0"], "K must be a whole number from 1"),
    (["-k", "-1"], "K must be a whole number from 1"),
    (["-k", "abc"], "K must be a whole number from 1"),
    (["-k", "1e3"], "K must be a whole number from 1"),
    (["-k", "2.5"], "K must be a whole number from 1"),
    (["-k", "100001"], "to 100,000"),
    (["-k", "9" * 30], "to 100,000"),
    (["-k", "9" * 5000], "K must be a whole number"),
    (["--objective", "fastest"], "unknown objective 'fastest'"),
    (["--objective", ""], "unknown objective ''"),
    (["--cost-model", "guess"], "unknown cost model 'guess'"),
    (["--bw", "glasses-phone"], "is not LINK=MBPS"),
    (["--bw", "=5"], "is not LINK=MBPS"),
    (["--bw", "glasses-cloud=5"], "unknown link 'glasses-cloud'"),
    (["--bw", "glasses-phone=abc"], "is not a number"),
    (["--bw", "glasses-phone="], "is not a number"),
    (["--bw", "glasses-phone=0"], "must be a number > 0"),
    (["--bw", "glasses-phone=-5"], "must be a number > 0"),
    (["--bw", "glasses-phone=nan"], "must be a number > 0"),
    (["--bw", "glasses-phone=inf"], "must be a number > 0"),
    (["--bw", "glasses-phone=1e400"], "must be a number > 0"),
    (["--bw", "glasses-phone=5", "--bw", "glasses-phone=6"], "given twice"),
    (["--bw", "glasses-phone=5", "--bw", " glasses-phone = 6"], "given twice"),
    (["--bw", "glasses\nphone=5"], "unknown link 'glasses\\nphone'"),
]


def ids(cases: list[tuple[list[str], str]]) -> list[str]:
    return [" ".join(a)[:40] for a, _ in cases]


@pytest.mark.parametrize(("args", "contains"), SOLVE_ARGS, ids=ids(SOLVE_ARGS))
def test_bad_solve_arguments(capsys, tmp_path, args, contains):
    solve(capsys, tmp_path, json.dumps(SEGMENT), *args, contains=contains)


def test_estimated_model_without_estimates(capsys, tmp_path):
    data = mutate(SEGMENT, ("estimated_node_ms",), KeyError)
    solve(
        capsys,
        tmp_path,
        json.dumps(data),
        "--cost-model",
        "estimated",
        contains="no estimated times",
    )


@pytest.mark.parametrize(
    ("args", "contains"),
    [
        (["--bw", "d0-d1=5"], "does not apply to a layer-level instance"),
        (["--cost-model", "estimated"], "layer-level instances have one cost model"),
    ],
)
def test_layer_instance_arguments(capsys, tmp_path, args, contains):
    solve(capsys, tmp_path, json.dumps(LAYER), *args, contains=contains)


# -- sessions: `omdp paths` and `omdp trace` ------------------------------------------------


@pytest.fixture(scope="module")
def measured(tmp_path_factory) -> Path:
    """A profiled session (3 devices, candidates 2 and 6) with per-node times."""
    folder = tmp_path_factory.mktemp("session")
    model = folder / "skip.onnx"
    onnx.save(skip_model(), model)
    a = analyze(model)
    path = folder / "s.omdp"
    s = measured_session(path, a)
    s.record_node_times("phone", {p: 2.2 for p in range(a.n)}, runtime="onnxruntime", runs=3)
    s.close()
    return path


@pytest.fixture
def lab(tmp_path, measured) -> Path:
    """A folder with a copy of the session, its model, and a good trace."""
    for f in measured.parent.iterdir():
        shutil.copy(f, tmp_path / f.name)
    (tmp_path / "good.tsv").write_text("".join(f"{t}\t{50 - 5 * t}\n" for t in range(8)))
    return tmp_path


PATHS_ARGS = [
    (["--bw", "glasses-cloud=5"], "unknown link 'glasses-cloud'"),
    (["--bw", "glasses-phone=0", "--save"], "must be a number > 0"),
    (["--bw", "glasses-phone=nan", "--save"], "must be a number > 0"),
    (["--bw", "phone-cloud=1", "--bw", "phone-cloud=2", "--save"], "given twice"),
    (["--latency", "phone-cloud=-1", "--save"], "must be a number ≥ 0 ms"),
    (["--latency", "phone-cloud=inf"], "must be a number ≥ 0 ms"),
    (["--latency", "phone-cloud=1", "--latency", "phone-cloud=2", "--save"], "given twice"),
    (["--latency", "phone-cloud"], "is not LINK=MS"),
    (["--memory", "tv=5"], "unknown device 'tv'"),
    (["--memory", "glasses=0"], "must be a number > 0 MiB"),
    (["--memory", "glasses=-1"], "must be a number > 0 MiB"),
    (["--memory", "glasses=inf"], "must be a number > 0 MiB"),
    (["--memory", "glasses=lots"], "is not a number"),
    (["--memory", "glasses=5", "--memory", "glasses=6"], "device glasses is given twice"),
    (["--sink", "tv"], "unknown sink device 'tv'"),
    (["--sink", "tv\x1b[2J"], "unknown sink device 'tv\\x1b[2J'"),
    (["-k", "0"], "K must be a whole number from 1"),
    (["-k", "1000000"], "to 100,000"),
    (["--model", "guess"], "invalid choice: 'guess'"),
    (["--objective", "fastest"], "invalid choice: 'fastest'"),
    (["--candidate", "0"], "candidate 0 is not inside the model"),
    (["--candidate", "9"], "candidate 9 is not inside the model"),
    (["--candidate", "4,no_such_node"], "no_such_node"),
    (["--candidate", "-3"], "position -3 is out of range"),
]


@pytest.mark.parametrize(("args", "contains"), PATHS_ARGS, ids=ids(PATHS_ARGS))
def test_bad_paths_arguments(capsys, lab, args, contains):
    expect_rejected(capsys, ["paths", lab / "s.omdp", *args], watch=[lab], contains=contains)


ATTRIBUTE_ARGS = [
    (["--device", "tv"], "unknown device 'tv'"),
    (["--device", "tv\x1b[2J", "--evaluate"], "unknown device 'tv\\x1b[2J'"),
    (["--device"], "expected one argument"),
    (["--evaluate=yes"], "ignored explicit argument"),
]


@pytest.mark.parametrize(("args", "contains"), ATTRIBUTE_ARGS, ids=ids(ATTRIBUTE_ARGS))
def test_bad_attribute_arguments(capsys, lab, args, contains):
    expect_rejected(capsys, ["attribute", lab / "s.omdp", *args], watch=[lab], contains=contains)


def test_attribute_of_a_missing_session(capsys, lab):
    expect_rejected(capsys, ["attribute", lab / "nope.omdp"], watch=[lab], contains="nope.omdp")


EXPORT_INSTANCE_ARGS = [
    (["-o", "{lab}/i.json", "--level", "node"], "invalid choice: 'node'"),
    (["-o", "{lab}/i.json", "--level", "layer"], "device glasses has no attribution"),
    (["-o", "{lab}/i.json", "--model", "guess"], "invalid choice: 'guess'"),
    (["-o", "{lab}/i.json", "--bw", "glasses-cloud=5"], "unknown link 'glasses-cloud'"),
    (["-o", "{lab}/i.json", "--sink", "tv"], "unknown sink device 'tv'"),
    (["-o", "{lab}"], "is a directory"),
    (["-o", "{lab}/missing/i.json"], "does not exist"),
    (["-o", "{lab}/s.omdp"], "it is the session file"),
    ([], "the following arguments are required: -o/--output"),
]


@pytest.mark.parametrize(("args", "contains"), EXPORT_INSTANCE_ARGS, ids=ids(EXPORT_INSTANCE_ARGS))
def test_bad_export_instance_arguments(capsys, lab, args, contains):
    args = [a.format(lab=lab) for a in args]
    expect_rejected(
        capsys, ["export-instance", lab / "s.omdp", *args], watch=[lab], contains=contains
    )


def trace_file(folder: Path, text: str | bytes, name: str = "bad.tsv") -> Path:
    path = folder / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


TRACE_FILES = [
    ("empty", "", "has no samples"),
    ("comments-only", "# seconds Mbit/s\n", "has no samples"),
    ("one-column", "0 10\n1\n", "bad.tsv:2: expected '<seconds> <Mbit/s>'"),
    ("three-columns", "0 10 5\n", "bad.tsv:1: expected"),
    ("word", "0 ten\n", "bad.tsv:1: expected"),
    ("nan", "0 nan\n", "is not finite"),
    ("inf", "0 10\n1 inf\n", "bad.tsv:2"),
    ("negative-bandwidth", "0 -10\n", "negative value"),
    ("negative-time", "-1 10\n", "negative value"),
    ("time-goes-back", "0 10\n2 10\n1 10\n", "bad.tsv:3: time 1 s goes back"),
    ("time-too-far", "0 10\n1e13 10\n", "bad.tsv:2: time 1e+13 s is beyond"),
    ("long-line", "0 " + "9" * 100_000 + "x\n", "bad.tsv:1: expected"),
    ("nul-byte", "0 10\x00\n", "bad.tsv:1: expected"),
    ("escape-codes", "0 \x1b[2J10\n", "'0 \\x1b[2J10'"),
    ("binary", b"\x89PNG\r\n\x1a\n" + bytes(range(256)), "not a text file"),
    ("latin-1", "0 10 # débit\n".encode("latin-1"), "not a text file"),
]


@pytest.mark.parametrize(
    ("text", "contains"), [c[1:] for c in TRACE_FILES], ids=[c[0] for c in TRACE_FILES]
)
def test_bad_trace_file(capsys, lab, text, contains):
    path = trace_file(lab, text)
    expect_rejected(
        capsys,
        ["trace", lab / "s.omdp", "--trace", f"glasses-phone={path}"],
        watch=[lab],
        contains=contains,
    )


def test_trace_files_that_are_not_files(capsys, lab):
    (lab / "folder").mkdir()
    fifo = lab / "fifo.tsv"
    os.mkfifo(fifo)
    big = trace_file(lab, "0 10\n" * (4 << 20), "big.tsv")  # 20 MiB
    for target, contains in [
        (lab / "nope.tsv", "no trace file at"),
        (lab / "folder", "is a directory"),
        (fifo, "is not a regular file"),
        ("/dev/zero", "is not a regular file"),
        (big, "larger than 16 MiB"),
    ]:
        expect_rejected(
            capsys,
            ["trace", lab / "s.omdp", "--trace", f"glasses-phone={target}"],
            watch=[lab],
            contains=contains,
        )


TRACE_ARGS = [
    (["--trace", "glasses-phone={good}", "--trace", "glasses-phone={good}"], "given twice"),
    (["--trace", "glasses-phone={good}", "--trace", " glasses-phone ={good}"], "given twice"),
    (["--trace", "glasses-cloud={good}"], "unknown link 'glasses-cloud'"),
    (["--trace", "{good}"], "is not LINK=FILE"),
    (["--trace", "glasses-phone="], "is a directory"),
    (["--trace", "glasses-phone={good}", "--bw", "phone-cloud=5"], "--bw and --trace"),
    (["--trace", "glasses-phone={good}", "--latency", "phone-cloud=-2"], "must be a number ≥"),
    (["--trace", "glasses-phone={good}", "--latency", "x=2"], "unknown link 'x'"),
    (["--trace", "glasses-phone={good}", "--trace", "phone-cloud={late}"], "do not overlap"),
    (["--trace", "glasses-phone={good}", "--sink", "moon"], "unknown sink device 'moon'"),
    (["--trace", "glasses-phone={good}", "--model", "guess"], "invalid choice"),
]


@pytest.mark.parametrize(("args", "contains"), TRACE_ARGS, ids=ids(TRACE_ARGS))
def test_bad_trace_arguments(capsys, lab, args, contains):
    late = trace_file(lab, "100 5\n101 6\n", "late.tsv")
    args = [a.format(good=lab / "good.tsv", late=late) for a in args]
    expect_rejected(capsys, ["trace", lab / "s.omdp", *args], watch=[lab], contains=contains)


def test_the_good_inputs_of_this_file_are_accepted(capsys, lab, tmp_path_factory):
    """The bases every case above mutates are themselves fine (so each case tests one fault)."""
    from backend.cli import main

    folder = tmp_path_factory.mktemp("good")
    for name, data in (("seg.json", SEGMENT), ("layer.json", LAYER)):
        (folder / name).write_text(json.dumps(data))
        assert main(["solve", str(folder / name), "--json"]) == 0
    assert main(["paths", str(lab / "s.omdp"), "--json"]) == 0
    assert (
        main(
            ["trace", str(lab / "s.omdp"), "--trace", f"glasses-phone={lab / 'good.tsv'}", "--json"]
        )
        == 0
    )
    capsys.readouterr()
    assert np.isfinite(SEGMENT["cut_bytes"]).all()
