"""Bad sessions and bad `profile` arguments: one line, exit 2, no traceback, nothing changed.

- damaged session files (every way a file can be cut, overwritten or edited by hand) ×
  the reading verbs `results`, `paths`, `export`; `omdp sessions` lists the others and
  marks the damaged one instead of failing the folder;
- read-only sessions (a write-protected file, a read-only filesystem) × the writing verbs;
- `profile` arguments no measurement could use (not finite, out of range, files that are
  not what they claim to be), each refused before any file is created.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import sqlite3
import subprocess
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import pytest
from models import skip_model

from backend.chain import Chain, DeviceSpec, LinkSpec
from backend.cli import main
from backend.model.analysis import analyze
from backend.profiling.plan import build_plan
from backend.profiling.session import Session

from .harness import expect_rejected, tree_state

STATS = {"median": 2.0, "p10": 1.5, "p90": 3.0, "mean": 2.1, "std": 0.3, "rel_ci": 0.01}


def make_session(folder: Path) -> Path:
    """A complete, valid session of a small model on three devices: every table has rows."""
    model = folder / "skip.onnx"
    onnx.save(skip_model(), model)
    a = analyze(model)
    chain = Chain(
        [DeviceSpec("glasses"), DeviceSpec("phone"), DeviceSpec("cloud")],
        [LinkSpec("glasses", "phone", 20.0, 5.0), LinkSpec("phone", "cloud", 100.0)],
    )
    path = folder / "s.omdp"
    s = Session.create(path, a, chain, [2, 6])
    plan = build_plan(a.n, [2, 6], chain.names)
    s.save_plan(plan)
    run = s.start_run("glasses")
    s.record_hello(run, {"pid": 1, "host": {"hostname": "here"}})
    for it in plan.items:
        ms = 1.0 + it.end - it.start
        s.record_result(
            it.device,
            it.segment,
            load_ms=1.0,
            samples=[ms] * 3,
            stats={**STATS, "median": ms},
            run=run,
        )
    s.finish_run(run, "done")
    s.record_node_times("phone", {p: 1.5 for p in range(a.n)}, runtime="onnxruntime", runs=2)
    s.set_bandwidths({0: (25.0, 4.0)})
    s.save_partitions([{"name": "best", "positions": [0, 2, 6, a.n], "cost_ms": 3.0}])
    s.set_ui_state("screen", "results")
    s.close()
    return path


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    return make_session(tmp_path_factory.mktemp("template"))


@pytest.fixture
def valid(template, tmp_path) -> Path:
    """A fresh copy of the valid session (and its model) in this test's folder."""
    for f in template.parent.iterdir():
        shutil.copy(f, tmp_path / f.name)
    return tmp_path / template.name


# -- damage --------------------------------------------------------------------------------


def sql(*statements: str, checks: bool = True) -> Callable[[Path], None]:
    def damage(path: Path) -> None:
        conn = sqlite3.connect(path)
        if not checks:
            conn.execute("PRAGMA ignore_check_constraints = ON")
        conn.execute("PRAGMA foreign_keys = OFF")
        for s in statements:
            conn.execute(s)
        conn.commit()
        conn.close()

    return damage


def raw(edit: Callable[[bytes], bytes]) -> Callable[[Path], None]:
    def damage(path: Path) -> None:
        path.write_bytes(edit(path.read_bytes()))

    return damage


def other_sqlite(path: Path) -> None:
    path.unlink()
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, text TEXT)")
    conn.execute("INSERT INTO notes (text) VALUES ('hello')")
    conn.commit()
    conn.close()


def garbage_page(data: bytes) -> bytes:
    page = int.from_bytes(data[16:18], "big")
    mid = (len(data) // page // 2) * page
    return data[:mid] + random.Random(1).randbytes(page) + data[mid + page :]


def spec_with(**change) -> str:
    return json.dumps({"name": "glasses", "kind": "local", "runtime": "onnxruntime", **change})


# (id, damage, words the one line must contain)
DAMAGES = [
    ("zero-bytes", raw(lambda d: b""), "empty (0 bytes)"),
    ("random-bytes", raw(lambda d: random.Random(0).randbytes(8192)), "not an SQLite file"),
    ("a-text-file", raw(lambda d: b"model,device,ms\n1,2,3\n" * 20), "not an SQLite file"),
    ("header-only", raw(lambda d: d[:100]), "truncated"),
    ("cut-mid-page", raw(lambda d: d[: len(d) // 2 + 100]), "truncated"),
    ("cut-whole-pages", raw(lambda d: d[: 4096 * 3]), "truncated"),
    ("garbage-page", raw(garbage_page), "damaged"),
    ("bad-page-size", raw(lambda d: d[:16] + b"\x00\x03" + d[18:]), "page size"),
    ("another-sqlite-db", other_sqlite, "not an OMDP session"),
    ("no-measurements", sql("DROP TABLE measurements"), "table measurements is missing"),
    ("no-meta", sql("DROP TABLE meta"), "table meta is missing"),
    ("no-schema-version", sql("DROP TABLE schema_version"), "schema_version is missing"),
    (
        "no-median-column",
        sql("ALTER TABLE measurements DROP COLUMN median_ms"),
        "no column median_ms",
    ),
    ("no-spec-column", sql("ALTER TABLE devices DROP COLUMN spec"), "no column spec"),
    ("version-missing", sql("DELETE FROM schema_version"), "0 rows"),
    ("version-twice", sql("INSERT INTO schema_version VALUES (1)"), "2 rows"),
    ("version-text", sql("UPDATE schema_version SET version = 'one'"), "schema_version"),
    ("version-zero", sql("UPDATE schema_version SET version = 0"), "version ≥ 1"),
    ("version-newer", sql("UPDATE schema_version SET version = 99"), "newer OMDP"),
    (
        "not-our-app",
        sql("UPDATE meta SET value = 'notes-app' WHERE key = 'app'"),
        "not an OMDP session",
    ),
    ("no-model-row", sql("DELETE FROM model"), "model has 0 rows"),
    ("nodes-text", sql("UPDATE model SET nodes = 'many'"), "model.nodes"),
    ("node-names-not-json", sql("UPDATE model SET node_names = '[oops'"), "node_names"),
    ("node-names-short", sql("UPDATE model SET node_names = '[\"a\"]'"), "node_names"),
    (
        "node-flops-strings",
        sql(
            "UPDATE model SET node_flops = (SELECT json_group_array('x') FROM json_each("
            "node_names))"
        ),
        "node_flops",
    ),
    ("input-shapes-list", sql("UPDATE model SET input_shapes = '[1, 2]'"), "input_shapes"),
    (
        "input-shapes-dims-text",
        sql('UPDATE model SET input_shapes = \'{"x": ["N", 3]}\''),
        "input_shapes",
    ),
    ("sha-short", sql("UPDATE model SET sha256 = 'abc'"), "model.sha256"),
    ("no-devices", sql("DELETE FROM devices"), "devices is empty"),
    ("device-gap", sql("UPDATE devices SET idx = 7 WHERE idx = 2"), "devices.idx"),
    ("device-spec-garbage", sql("UPDATE devices SET spec = '{{{' WHERE idx = 0"), "devices.spec"),
    (
        "device-spec-kind",
        sql(f"UPDATE devices SET spec = '{spec_with(kind='teleport')}' WHERE idx = 0"),
        "kind 'teleport'",
    ),
    (
        "device-spec-cpus-text",
        sql(f"UPDATE devices SET spec = '{spec_with(cpus='0-3')}' WHERE idx = 0"),
        "cpus",
    ),
    (
        "device-spec-renamed",
        sql(f"UPDATE devices SET spec = '{spec_with(name='goggles')}' WHERE idx = 0"),
        "goggles",
    ),
    ("device-renamed", sql("UPDATE devices SET name = 42 WHERE idx = 1"), "spec names 'phone'"),
    ("device-name-blob", sql("UPDATE devices SET name = x'6869' WHERE idx = 1"), "devices.name"),
    ("no-links", sql("DELETE FROM links"), "links does not join"),
    ("link-wrong-end", sql("UPDATE links SET dst = 'moon' WHERE idx = 0"), "links does not join"),
    (
        "link-negative-bw",
        sql("UPDATE links SET bandwidth_mbps = -5 WHERE idx = 0"),
        "links.bandwidth_mbps",
    ),
    (
        "link-infinite-latency",
        sql("UPDATE links SET latency_ms = 9e999 WHERE idx = 1"),
        "links.latency_ms",
    ),
    (
        "bandwidth-unknown-link",
        sql("INSERT INTO bandwidths VALUES (9, 1.0, 1.0, 'now')"),
        "bandwidths.link",
    ),
    (
        "median-text",
        sql("UPDATE measurements SET median_ms = 'fast' WHERE id = 1"),
        "measurements.median_ms",
    ),
    (
        "median-negative",
        sql("UPDATE measurements SET median_ms = -1 WHERE id = 2"),
        "measurements.median_ms",
    ),
    (
        "median-infinite",
        sql("UPDATE measurements SET median_ms = 9e999 WHERE id = 3"),
        "measurements.median_ms",
    ),
    (
        "conditions-not-json",
        sql("UPDATE measurements SET conditions = 'hot' WHERE id = 1"),
        "measurements.conditions",
    ),
    (
        "history-conditions-not-json",
        sql(
            "INSERT INTO measurement_history (measurement, device, seg_start, seg_end, config, "
            "status, samples, created_at, retired_at, conditions) SELECT id, device, seg_start, "
            "seg_end, config, status, samples, created_at, 'now', 'hot' FROM measurements "
            "WHERE id = 1"
        ),
        "measurement_history.conditions",
    ),
    (
        "throttled-bytes",
        sql("UPDATE measurements SET throttled = x'ff00' WHERE id = 1"),
        "measurements.throttled",
    ),
    (
        "measurement-unknown-device",
        sql("UPDATE measurements SET device = 'moon' WHERE id = 1"),
        "measurements.device",
    ),
    (
        "segment-reversed",
        sql("UPDATE measurements SET seg_start = 9, seg_end = 2 WHERE id = 1"),
        "measurements.seg_end",
    ),
    (
        "segment-past-the-model",
        sql("UPDATE measurements SET seg_end = 999999 WHERE id = 1"),
        "measurements.seg_end",
    ),
    (
        "segment-text",
        sql("UPDATE measurements SET seg_start = 'zero' WHERE id = 1"),
        "measurements.seg_start",
    ),
    (
        "status-unknown",
        sql("UPDATE measurements SET status = 'great' WHERE id = 1", checks=False),
        "measurements",
    ),
    (
        "stats-not-json",
        sql("UPDATE measurements SET stats = 'median=2' WHERE id = 1"),
        "measurements.stats",
    ),
    ("plan-unknown-device", sql("INSERT INTO plan VALUES ('moon', 0, 2)"), "plan.device"),
    ("plan-empty-segment", sql("INSERT INTO plan VALUES ('phone', 4, 4)"), "plan.seg_end"),
    (
        "candidate-at-zero",
        sql("INSERT INTO candidates VALUES (0, NULL, NULL)"),
        "candidates.position",
    ),
    ("run-status-unknown", sql("UPDATE runs SET status = 'exploded'"), "runs.status"),
    ("run-hello-not-json", sql("UPDATE runs SET hello = '{pid: 1'"), "runs.hello"),
    (
        "node-time-past-the-model",
        sql("UPDATE node_times SET position = 500 WHERE position = 0"),
        "node_times.position",
    ),
    (
        "partition-not-json",
        sql("UPDATE partitions SET positions = '0,2,6'"),
        "partitions.positions",
    ),
    ("ui-state-not-json", sql("UPDATE ui_state SET value = 'results'"), "ui_state.value"),
]
DAMAGE_IDS = [d[0] for d in DAMAGES]


@pytest.fixture(params=DAMAGES, ids=DAMAGE_IDS)
def damaged(request, valid) -> tuple[Path, str]:
    _, damage, words = request.param
    damage(valid)
    return valid, words


def test_the_template_is_a_valid_session(valid, capsys):
    """The damage below is what makes each case fail, not the template."""
    assert main(["results", str(valid), "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)) == 12
    assert main(["paths", str(valid), "--json"]) == 0
    out = valid.parent / "out.json"
    assert main(["export", str(valid), "-o", str(out)]) == 0 and out.exists()


@pytest.mark.parametrize("verb", ["results", "paths", "export"])
def test_a_damaged_session_is_named_in_one_line(damaged, verb, capsys):
    path, words = damaged
    extra = ["-o", str(path.parent / "out.json")] if verb == "export" else []
    line = expect_rejected(capsys, [verb, path, *extra], watch=[path.parent], contains=words)
    assert str(path) in line


def test_sessions_lists_the_others_and_marks_the_damaged_one(damaged, template, capsys):
    path, words = damaged
    shutil.copy(template, path.parent / "good.omdp")
    before = tree_state([path.parent])
    assert main(["sessions", str(path.parent), "--json"]) == 0
    listed = {Path(i["path"]).name: i for i in json.loads(capsys.readouterr().out)}
    assert listed["good.omdp"]["problem"] is None and listed["good.omdp"]["done"] == 12
    assert words.lower() in listed["s.omdp"]["problem"].lower()
    assert main(["sessions", str(path.parent)]) == 0
    text = capsys.readouterr().out
    assert "12/12" in text and "s.omdp" in text
    assert tree_state([path.parent]) == before


# -- read-only sessions × writing verbs ----------------------------------------------------


@pytest.fixture
def write_protected(valid) -> Path:
    valid.chmod(0o444)
    yield valid
    valid.chmod(0o644)


@pytest.fixture
def on_readonly_fs(template, tmp_path) -> Path:
    """A valid session (and its model) on a small filesystem mounted read-only."""
    mnt = tmp_path / "ro"
    mnt.mkdir()
    if subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mnt)], capture_output=True
    ).returncode:
        pytest.skip("needs permission to mount a tmpfs")
    try:
        for f in template.parent.iterdir():
            shutil.copy(f, mnt / f.name)
        subprocess.run(["mount", "-o", "remount,ro", str(mnt)], check=True)
        yield mnt / template.name
    finally:
        subprocess.run(["umount", str(mnt)], check=True)


READONLY_WRITES = [
    (["paths", "{s}", "--save", "--bw", "glasses-phone=30"], "read-only"),
    (["paths", "{s}", "--save", "--latency", "phone-cloud=3", "--json"], "read-only"),
    (["profile", "{m}", "--devices", "{d}", "--session", "{s}"], "read-only"),
    (["profile", "{m}", "--devices", "{d}", "--session", "{s}", "--json"], "read-only"),
    (["profile", "{m}", "--devices", "{d}", "--session", "{s}", "--retry-errors"], "read-only"),
]


def _devices(folder: Path) -> Path:
    p = folder / "devices.toml"
    p.write_text("".join(f'[[device]]\nname = "{n}"\n' for n in ("glasses", "phone", "cloud")))
    return p


def _fill(args: list[str], s: Path, d: Path) -> list[str]:
    return [a.format(s=s, m=s.parent / "skip.onnx", d=d) for a in args]


@pytest.mark.parametrize("args, words", READONLY_WRITES)
def test_a_write_protected_session_says_so(write_protected, tmp_path, args, words, capsys):
    d = _devices(tmp_path)
    line = expect_rejected(
        capsys, _fill(args, write_protected, d), watch=[tmp_path], contains=words
    )
    assert "write-protected" in line and str(write_protected) in line


@pytest.mark.parametrize("args, words", READONLY_WRITES)
def test_a_session_on_a_read_only_filesystem_says_so(on_readonly_fs, tmp_path, args, words, capsys):
    d = _devices(tmp_path)
    line = expect_rejected(
        capsys, _fill(args, on_readonly_fs, d), watch=[on_readonly_fs.parent], contains=words
    )
    assert "filesystem is read-only" in line


@pytest.mark.parametrize("verb", ["results", "paths", "sessions"])
def test_reading_verbs_work_on_read_only_sessions(write_protected, on_readonly_fs, verb, capsys):
    for s in (write_protected, on_readonly_fs):
        target = s.parent if verb == "sessions" else s
        before = tree_state([s.parent])
        assert main([verb, str(target), "--json"]) == 0, capsys.readouterr().err
        rows = json.loads(capsys.readouterr().out)
        assert rows and "not an OMDP session" not in json.dumps(rows)
        assert tree_state([s.parent]) == before


# -- bad `profile` arguments -----------------------------------------------------------------


def _npy(folder: Path, name: str, array) -> Path:
    p = folder / name
    np.save(p, array, allow_pickle=True)
    return p


BAD_NUMBERS = [
    (["--max-seconds", "nan"], "--max-seconds nan"),
    (["--max-seconds", "inf"], "--max-seconds inf"),
    (["--max-seconds=-inf"], "--max-seconds -inf"),
    (["--max-seconds", "0"], "--max-seconds 0"),
    (["--max-seconds", "-3"], "--max-seconds -3"),
    (["--max-seconds", "1e300"], "≤ 86400"),
    (["--max-seconds", "ten"], "invalid float value"),
    (["--target-ci", "inf"], "--target-ci inf"),
    (["--target-ci", "nan"], "--target-ci nan"),
    (["--target-ci", "0"], "--target-ci 0"),
    (["--target-ci", "-2"], "--target-ci -2"),
    (["--target-ci", "250"], "percentage"),
    (["--warmup", "-1"], "--warmup -1"),
    (["--warmup", "99999999"], "--warmup 99999999"),
    (["--min-runs", "0"], "--min-runs 0"),
    (["--min-runs", "-4"], "--min-runs -4"),
    (["--min-runs", "20", "--max-runs", "10"], "at least --min-runs (20)"),
    (["--max-runs", str(2**63)], "at most 1000000"),
    (["--min-runs", "2.5"], "invalid int value"),
    (["--seed", "-5"], "--seed -5"),
    (["--seed", str(2**70)], "2^63"),
    (["--node-times", "-1"], "--node-times -1"),
    (["--node-times", "100000000"], "--node-times 100000000"),
    (["--auto", "0"], "--auto 0"),
    (["--auto", "-3"], "--auto -3"),
    (["--auto", "1000000"], "--auto 1000000"),
    (["--candidates", ",,,"], "--candidates is empty"),
    (["--candidates", "4,no_such_node"], "no_such_node"),
    (["--candidates", "999"], "out of range"),
    (["--candidates", "2", "--auto", "2"], "not allowed with"),
    (["--remeasure", "tablet"], "--remeasure tablet is not noisy, throttled, a device or a"),
    (["--remeasure", "tablet@0:4"], "no device 'tablet'"),
    (["--remeasure", "4:2"], "is not inside the model"),
    (["--remeasure", "0:9999"], "is not inside the model"),
    (["--remeasure", "a:b"], "is not a segment a:b"),
    (["--remeasure", ""], "--remeasure is empty — give noisy, throttled, a device"),
]


@pytest.mark.parametrize("extra, words", BAD_NUMBERS, ids=[" ".join(a) for a, _ in BAD_NUMBERS])
def test_profile_refuses_numbers_no_measurement_could_use(
    tmp_path, tiny_model_path, devices_file, monkeypatch, extra, words, capsys
):
    monkeypatch.chdir(tmp_path)  # the default session folder would appear here
    expect_rejected(
        capsys,
        ["profile", tiny_model_path, "--devices", devices_file, *extra],
        watch=[tmp_path],
        contains=words,
    )


def _bad_npy(tmp: Path) -> dict[str, tuple[str, str]]:
    """--input-npy value -> words, for files that are not one array of the input's shape."""
    (tmp / "text.npy").write_text("1 2 3\n")
    (tmp / "empty.npy").write_bytes(b"")
    np.savez(tmp / "two.npz", a=np.ones(3), b=np.ones(3))
    (tmp / "folder.npy").mkdir()
    return {
        "text": (str(tmp / "text.npy"), "not a readable .npy"),
        "empty": (str(tmp / "empty.npy"), "not a readable .npy"),
        "npz": (str(tmp / "two.npz"), ".npz archive"),
        "objects": (
            str(_npy(tmp, "obj.npy", np.array([{"a": 1}], dtype=object))),
            "not a readable .npy",
        ),
        "strings": (str(_npy(tmp, "str.npy", np.array(["a", "b"]))), "not numbers"),
        "wrong-shape": (
            str(_npy(tmp, "small.npy", np.ones((1, 3, 8, 8), np.float32))),
            "needs (1, 3, 16, 16)",
        ),
        "wrong-rank": (str(_npy(tmp, "flat.npy", np.ones(768, np.float32))), "has shape (768,)"),
        "missing": (str(tmp / "nope.npy"), "no file"),
        "a-folder": (str(tmp / "folder.npy"), "no file"),
        "unknown-input": ("pixels=" + str(tmp / "text.npy"), "'pixels', which is not a model"),
        "twice": ("", "twice"),
    }


NPY_CASES = [
    "text",
    "empty",
    "npz",
    "objects",
    "strings",
    "wrong-shape",
    "wrong-rank",
    "missing",
    "a-folder",
    "unknown-input",
    "twice",
]


@pytest.mark.parametrize("case", NPY_CASES)
def test_a_bad_input_npy_leaves_no_session_behind(
    tmp_path, tiny_model_path, devices_file, case, capsys
):
    value, words = _bad_npy(tmp_path)[case]
    good = str(_npy(tmp_path, "good.npy", np.ones((1, 3, 16, 16), np.float32)))
    npy = (
        ["--input-npy", good, "--input-npy", f"input={good}"]
        if case == "twice"
        else ["--input-npy", value]
    )
    expect_rejected(
        capsys,
        [
            "profile",
            tiny_model_path,
            "--devices",
            devices_file,
            "--session",
            tmp_path / "new" / "n.omdp",
            *npy,
        ],
        watch=[tmp_path],
        contains=words,
    )


def test_a_bad_input_npy_changes_nothing_on_resume(valid, tmp_path, capsys):
    d = _devices(tmp_path)
    bad = _npy(tmp_path, "small.npy", np.ones((2, 2), np.float32))
    expect_rejected(
        capsys,
        [
            "profile",
            valid.parent / "skip.onnx",
            "--devices",
            d,
            "--session",
            valid,
            "--input-npy",
            bad,
        ],
        watch=[tmp_path],
        contains="needs",
    )


def _session_paths(tmp: Path, valid_session: Path) -> dict[str, tuple[Path, str]]:
    (tmp / "a-folder.omdp").mkdir()
    (tmp / "dangling.omdp").symlink_to(tmp / "gone.omdp")
    (tmp / "plain-file").write_text("not a folder")
    (tmp / "not-sqlite.omdp").write_text("hello")
    os.mkfifo(tmp / "pipe.omdp")
    return {
        "a-folder": (tmp / "a-folder.omdp", "is a directory"),
        "dangling-link": (tmp / "dangling.omdp", "does not exist"),
        "under-a-file": (tmp / "plain-file" / "s.omdp", "not a folder"),
        "not-sqlite": (tmp / "not-sqlite.omdp", "not an SQLite file"),
        "a-fifo": (tmp / "pipe.omdp", "not a regular file"),
        "name-too-long": (tmp / ("x" * 300 + ".omdp"), "too long"),
        "other-model": (valid_session, "belongs to another model"),
    }


@pytest.mark.parametrize(
    "case",
    [
        "a-folder",
        "dangling-link",
        "under-a-file",
        "not-sqlite",
        "a-fifo",
        "name-too-long",
        "other-model",
    ],
)
def test_profile_refuses_a_session_path_that_is_not_a_session(
    tmp_path, tiny_model_path, devices_file, valid, case, capsys
):
    session, words = _session_paths(tmp_path, valid)[case]
    expect_rejected(
        capsys,
        ["profile", tiny_model_path, "--devices", devices_file, "--session", session],
        watch=[tmp_path],
        contains=words,
    )


def test_profile_refuses_a_cache_that_is_a_file(tmp_path, tiny_model_path, devices_file, capsys):
    (tmp_path / "cache").write_text("x")
    expect_rejected(
        capsys,
        [
            "profile",
            tiny_model_path,
            "--devices",
            devices_file,
            "--session",
            tmp_path / "n.omdp",
            "--cache",
            tmp_path / "cache",
        ],
        watch=[tmp_path],
        contains="not a folder",
    )


def test_profile_refuses_another_chain_without_touching_the_session(valid, tmp_path, capsys):
    d = tmp_path / "two.toml"
    d.write_text('[[device]]\nname = "glasses"\n\n[[device]]\nname = "cloud"\n')
    expect_rejected(
        capsys,
        ["profile", valid.parent / "skip.onnx", "--devices", d, "--session", valid],
        watch=[tmp_path],
        contains="glasses → phone → cloud",
    )


def test_measured_links_without_measurements_say_how_to_measure(tmp_path, capsys):
    session = make_session(tmp_path)
    line = expect_rejected(
        capsys,
        ["paths", session, "--measured-links"],
        watch=[tmp_path],
        contains="has no measured links",
    )
    assert "omdp links measure" in line
