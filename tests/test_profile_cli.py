"""`omdp profile / results / sessions` as a user runs them: real processes, real agents."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from backend.cli import main

ROOT = Path(__file__).resolve().parents[1]
FAST = ["--warmup", "1", "--min-runs", "3", "--max-runs", "5", "--max-seconds", "0.5"]


def run(cmd: list[str], env_cache: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMDP_CACHE_DIR": str(env_cache)}
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def ok_rows(db: Path) -> dict[int, list[float]]:
    """measurement id -> its samples, for committed ok measurements (a second reader)."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        ids = [r[0] for r in conn.execute("SELECT id FROM measurements WHERE status = 'ok'")]
        return {
            i: [
                r[0]
                for r in conn.execute(
                    "SELECT ms FROM samples WHERE measurement = ? ORDER BY seq", (i,)
                )
            ]
            for i in ids
        }
    except sqlite3.OperationalError:
        return {}
    finally:
        conn.close()


def test_profile_results_sessions_end_to_end(tmp_path, tiny_model_path, devices_file, omdp):
    db = tmp_path / "sessions" / "tiny.omdp"
    cmd = omdp(
        "profile",
        str(tiny_model_path),
        "--devices",
        str(devices_file),
        "--candidates",
        "4,block1_add,14",
        "--session",
        str(db),
        "--json",
        "--node-times",
        "2",
        *FAST,
    )
    out = run(cmd, tmp_path / "cache")
    assert out.returncode == 0, out.stderr
    events = [json.loads(line) for line in out.stdout.splitlines()]
    plan = events[0]
    assert plan["event"] == "plan" and plan["candidates"] == [4, 11, 14]
    assert plan["per_device"] == {"glasses": 4, "phone": 10, "cloud": 4}
    assert plan["todo"] == 18 and plan["estimate_s"] > 0 and not plan["resumed"]
    summary = events[-1]
    assert summary["event"] == "summary"
    assert (summary["measured"], summary["errors"], summary["done"], summary["total"]) == (
        18,
        0,
        18,
        18,
    )
    kinds = {e["event"] for e in events}
    assert {"device_started", "progress", "measured", "device_finished"} <= kinds

    res = run(omdp("results", str(db), "--csv"), tmp_path)
    lines = res.stdout.strip().splitlines()
    assert lines[0] == (
        "device,start,end,median_ms,p10_ms,p90_ms,samples,status,used,throttled,noisy"
    )
    assert len(lines) == 19
    for line in lines[1:]:  # what ran each segment; none throttled (this machine shows none)
        used = "CPU" if line.startswith("phone") else "CPUExecutionProvider"
        assert line.endswith((f",ok,{used},,True", f",ok,{used},,False")), line
    assert lines[1].startswith("glasses,0,4,")
    rows = json.loads(run(omdp("results", str(db), "--json"), tmp_path).stdout)
    assert len(rows) == 18 and rows[-1]["device"] == "cloud" and rows[-1]["end"] == 20
    table = run(omdp("results", str(db)), tmp_path).stdout
    assert "median ms" in table and "phone" in table
    noisy = [r for r in rows if r["noisy"]]  # at most 5 runs: the CI target is often missed
    by_ci = [r for r in noisy if r["contradicts"] is None]  # the others: named in the table
    assert all(r["stop"] in ("max_runs", "max_seconds") or r["rel_ci"] > 0.02 for r in by_ci)
    assert len(by_ci) == table.count("! noisy: CI ")
    assert len(noisy) - len(by_ci) == table.count("! slower than") + table.count("! faster than")

    listed = json.loads(run(omdp("sessions", str(db.parent), "--json"), tmp_path).stdout)
    assert [(s["model"], s["devices"], s["done"], s["total"]) for s in listed] == [
        ("tiny.onnx", ["glasses", "phone", "cloud"], 18, 18)
    ]
    text = run(omdp("sessions", str(db.parent)), tmp_path).stdout
    assert "glasses → phone → cloud" in text and "18/18" in text

    again = run(cmd, tmp_path / "cache")
    assert again.returncode == 0, again.stderr
    events = [json.loads(line) for line in again.stdout.splitlines()]
    assert events[0]["resumed"] and events[0]["todo"] == 0
    assert events[-1]["measured"] == 0 and events[-1]["done"] == 18

    # the session alone is enough to go on: its own model, chain and timing settings
    alone = omdp("profile", "--session", str(db), "--remeasure", "phone@4:11", "--json")
    out = run(alone, tmp_path / "cache")
    assert out.returncode == 0, out.stderr
    events = [json.loads(line) for line in out.stdout.splitlines()]
    assert events[0] == {"event": "remeasure", "target": "phone@4:11", "cells": ["phone [4, 11)"]}
    assert events[1]["resumed"] and events[1]["todo"] == 1
    assert events[-1]["measured"] == 1 and events[-1]["done"] == 18
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    (meta,) = conn.execute("SELECT value FROM meta WHERE key = 'timing'").fetchone()
    conn.close()
    timing = json.loads(meta)
    assert (timing["warmup"], timing["min_runs"], timing["max_runs"]) == (1, 3, 5)
    assert timing["max_seconds"] == 0.5 and timing["target_rel_ci"] == 0.02


def profile_command(omdp, model, devices_file, db, tmp_path) -> tuple[list[str], dict]:
    """`omdp profile` and its environment, slow enough to be interrupted mid-way."""
    cmd = omdp(
        "profile",
        str(model),
        "--devices",
        str(devices_file),
        "--auto",
        "3",
        "--session",
        str(db),
        "--node-times",
        "0",
        "--warmup",
        "0",
        "--min-runs",
        "25",
        "--max-runs",
        "25",
    )
    return cmd, {**os.environ, "OMDP_CACHE_DIR": str(tmp_path / "cache")}


def test_kill_9_mid_run_then_resume_loses_and_duplicates_nothing(
    tmp_path, medium_model_path, devices_file, omdp
):
    db = tmp_path / "kill.omdp"
    cmd, env = profile_command(omdp, medium_model_path, devices_file, db, tmp_path)
    proc = subprocess.Popen(
        cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 60
    before: dict[int, list[float]] = {}
    while time.monotonic() < deadline and proc.poll() is None:
        before = ok_rows(db) if db.exists() else {}
        if len(before) >= 3:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    assert proc.returncode == -signal.SIGKILL
    before = ok_rows(db)
    total = 4 + 10 + 4
    assert 3 <= len(before) < total, "the run was not interrupted mid-way"
    assert all(len(s) == 25 for s in before.values())  # every committed result is whole

    # the agents notice their host is gone (stdin EOF) and exit on their own
    conn = sqlite3.connect(db)
    pids = [
        json.loads(h)["pid"]
        for (h,) in conn.execute("SELECT hello FROM runs WHERE hello IS NOT NULL")
    ]
    conn.close()
    assert pids
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.05)
    assert not any(_alive(p) for p in pids)

    out = subprocess.run(
        [*cmd, "--json"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    events = [json.loads(line) for line in out.stdout.splitlines()]
    assert events[0]["resumed"] and events[0]["todo"] == total - len(before)
    assert events[-1]["measured"] == total - len(before)  # only the remainder ran
    after = ok_rows(db)
    assert len(after) == total
    assert {i: after[i] for i in before} == before  # nothing lost or changed
    conn = sqlite3.connect(db)
    dup = conn.execute(
        "SELECT COUNT(*) FROM (SELECT device, seg_start, seg_end, config, "
        "COUNT(*) c FROM measurements GROUP BY 1, 2, 3, 4 HAVING c > 1)"
    )
    assert dup.fetchone()[0] == 0
    assert conn.execute("SELECT COUNT(*) FROM samples").fetchone()[0] == 25 * total
    conn.close()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie (exited, not yet reaped by its dead parent's reaper) counts as gone
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def test_ctrl_c_stops_cleanly_and_keeps_results(tmp_path, medium_model_path, devices_file, omdp):
    db = tmp_path / "int.omdp"
    cmd, env = profile_command(omdp, medium_model_path, devices_file, db, tmp_path)
    proc = subprocess.Popen(
        cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if db.exists() and len(ok_rows(db)) >= 1:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 130, stderr
    assert "stopped early" in stdout and "run the same command again" in stdout
    assert "Traceback" not in stderr
    assert 1 <= len(ok_rows(db)) < 18

    # interrupted while re-measuring: the same command again would start over, so the
    # advice is to go on without --remeasure
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    (device,) = conn.execute("SELECT device FROM measurements WHERE status = 'ok'").fetchone()
    others = conn.execute(
        "SELECT COUNT(*) FROM measurements WHERE status = 'ok' AND device != ?", (device,)
    ).fetchone()[0]
    conn.close()
    # slow runs, and the interrupt once the re-measure has measured one segment again (so
    # it lands mid-run, not before the run starts nor after it ends)
    slow = ["--min-runs", "400", "--max-runs", "400"]
    again = omdp("profile", "--session", str(db), "--remeasure", device, *slow)
    proc = subprocess.Popen(
        again, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if _retired(db) and len(ok_rows(db)) > others:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 130, stderr
    assert f"stopped early: everything measured is saved; `omdp profile --session {db}` " in stdout


def _retired(db: Path) -> bool:
    """Whether a re-measure has moved a measurement to the history yet (a second reader)."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        return conn.execute("SELECT COUNT(*) FROM measurement_history").fetchone()[0] > 0
    except sqlite3.OperationalError:
        return False
    finally:
        conn.close()


@pytest.mark.parametrize(
    "make_args, message",
    [
        (lambda t, m, d: ["profile", m, "--devices", str(t / "none.toml")], "no devices file at"),
        (
            lambda t, m, d: ["profile", m, "--devices", _write(t, "[[device]]\nname = \n")],
            "bad.toml:2: invalid TOML",
        ),
        (
            lambda t, m, d: [
                "profile",
                m,
                "--devices",
                _write(t, '[[device]]\nname = "a"\nspeed = 3\n'),
            ],
            "bad.toml:3: device 'a': unknown field 'speed'",
        ),
        (
            lambda t, m, d: ["profile", m, "--devices", d, "--session", _junk(t)],
            "is not an OMDP session",
        ),
        (
            lambda t, m, d: [
                "profile",
                m,
                "--devices",
                d,
                "--candidates",
                "4,999",
                "--session",
                str(t / "s.omdp"),
            ],
            "position 999 is out of range — positions go from 0 to 20",
        ),
        (
            lambda t, m, d: [
                "profile",
                m,
                "--devices",
                d,
                "--candidates",
                "block1_ad,nope",
                "--session",
                str(t / "s.omdp"),
            ],
            "no node or tensor named 'block1_ad'",
        ),
        (lambda t, m, d: ["results", _junk(t)], "is not an OMDP session"),
        (lambda t, m, d: ["sessions", str(t / "nowhere")], "no session folder at"),
        (lambda t, m, d: ["profile"], "no model and no session given — give MODEL --devices"),
        (
            lambda t, m, d: ["profile", m, "--session", str(t / "s.omdp")],
            "and no --devices for a new one — give --devices devices.toml",
        ),
        (lambda t, m, d: ["profile", "--session", _junk(t)], "is not an OMDP session"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    tmp_path, tiny_model_path, devices_file, capsys, make_args, message
):
    code = main(make_args(tmp_path, str(tiny_model_path), str(devices_file)))
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("omdp: error: ") and message in err
    assert not (tmp_path / "s.omdp").exists()  # nothing half-created


def _write(tmp: Path, text: str) -> str:
    p = tmp / "bad.toml"
    p.write_text(text)
    return str(p)


def _junk(tmp: Path) -> str:
    p = tmp / "junk.omdp"
    p.write_bytes(b"\x00garbage" * 64)
    return str(p)


def test_real_input_npy_feeds_real_intermediates(tmp_path, tiny_model_path, capsys, monkeypatch):
    import numpy as np

    monkeypatch.setenv("OMDP_CACHE_DIR", str(tmp_path / "cache"))
    devices = _write(tmp_path, '[[device]]\nname = "solo"\n')
    np.save(tmp_path / "x.npy", np.ones((1, 3, 16, 16), np.float32))
    base = [
        "profile",
        str(tiny_model_path),
        "--devices",
        devices,
        "--auto",
        "2",
        "--json",
        "--session",
        str(tmp_path / "n.omdp"),
        "--node-times",
        "0",
        *FAST,
    ]
    assert main([*base, "--input-npy", "nope=x.npy"]) == 2
    assert "'nope', which is not a model input" in capsys.readouterr().err
    assert main([*base, "--input-npy", str(tmp_path / "x.npy")]) == 0
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert not [e for e in events if e["event"] == "notice"]  # no fallback to random inputs
    summary = events[-1]
    assert (summary["measured"], summary["errors"], summary["total"]) == (1, 0, 1)


def test_dry_run_prints_the_plan_and_writes_nothing(
    tmp_path, tiny_model_path, devices_file, capsys, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    before = sorted(p.name for p in tmp_path.iterdir())
    code = main(
        [
            "profile",
            str(tiny_model_path),
            "--devices",
            str(devices_file),
            "--auto",
            "2",
            "--dry-run",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert "plan: 12 segments (glasses 3, phone 6, cloud 3); 0 done, 12 to measure" in out
    assert "session: sessions/tiny.omdp (dry run: nothing written)" in out
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no file, no folder


def test_a_device_that_measures_nothing_fails_the_run(
    tmp_path, tiny_model_path, capsys, monkeypatch
):
    """`solo` asks for an execution provider that is not installed: its job fails before
    any timing, naming the providers that are; the run exits non-zero, and that
    configuration is not counted as finished."""
    monkeypatch.setenv("OMDP_CACHE_DIR", str(tmp_path / "cache"))
    devices = tmp_path / "d.toml"
    devices.write_text(
        '[[device]]\nname = "solo"\nproviders = ["CUDAExecutionProvider"]\n\n'
        '[[device]]\nname = "two"\n\n'
        '[[link]]\nfrom = "solo"\nto = "two"\nbandwidth_mbps = 50\n'
    )
    args = [
        "profile",
        str(tiny_model_path),
        "--devices",
        str(devices),
        "--auto",
        "2",
        "--session",
        str(tmp_path / "s.omdp"),
        "--node-times",
        "0",
        "--json",
        *FAST,
    ]
    assert main(args) == 1
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    summary = events[-1]
    assert "provider(s) CUDAExecutionProvider not available" in summary["failed"]["solo"]
    assert "(installed: " in summary["failed"]["solo"]
    assert "CPUExecutionProvider" in summary["failed"]["solo"]
    timed = [e for e in events if e.get("device") == "solo" and e.get("phase") == "timing"]
    assert timed == [] and not [
        e for e in events if e.get("event") == "measured" and e.get("device") == "solo"
    ]
    assert (summary["done"], summary["total"]) == (3, 6)
    assert main(args) == 1  # not finished: measured again, and still failing
    plan = json.loads(capsys.readouterr().out.splitlines()[0])
    assert plan["todo_per_device"] == {"solo": 3, "two": 0}


def _profiler_holds(db: Path) -> bool:
    if not db.exists():
        return False
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        return (
            conn.execute("SELECT 1 FROM meta WHERE key = 'profiler'").fetchone() is not None
            and conn.execute("SELECT COUNT(*) FROM measurements WHERE status = 'ok'").fetchone()[0]
            > 0
        )
    except sqlite3.Error:
        return False
    finally:
        conn.close()


def test_a_second_profile_stops_at_once_and_readers_go_on(
    tmp_path, medium_model_path, devices_file, omdp, capsys
):
    db = tmp_path / "two.omdp"
    cmd, env = profile_command(omdp, medium_model_path, devices_file, db, tmp_path)
    first = subprocess.Popen(
        cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and first.poll() is None and not _profiler_holds(db):
            time.sleep(0.05)
        assert first.poll() is None, first.communicate()
        rows = ok_rows(db)
        started = time.monotonic()
        assert main(cmd[3:]) == 2
        err = capsys.readouterr().err
        assert time.monotonic() - started < 10
        assert err.count("\n") == 1 and f"is being profiled by pid {first.pid} on" in err
        assert main(["results", str(db), "--json"]) == 0  # reading is never blocked
        assert len(json.loads(capsys.readouterr().out)) == 18
        after = ok_rows(db)
        assert {i: after[i] for i in rows} == rows
    finally:
        first.send_signal(signal.SIGINT)
        first.communicate(timeout=60)
    assert first.returncode == 130


def test_a_changed_model_is_refused_on_resume(
    tmp_path, tiny_model_path, devices_file, capsys, make_conv_chain
):
    import onnx

    from backend.chain import load_devices
    from backend.model.analysis import analyze
    from backend.profiling.session import Session

    db = tmp_path / "r.omdp"
    args = [
        "profile",
        str(tiny_model_path),
        "--devices",
        str(devices_file),
        "--auto",
        "2",
        "--session",
        str(db),
        "--dry-run",
    ]
    Session.create(db, analyze(tiny_model_path), load_devices(devices_file), [4]).close()
    assert main(args) == 0
    onnx.save(make_conv_chain(seed=9), tiny_model_path)
    capsys.readouterr()
    assert main(args) == 2
    assert "changed since session" in capsys.readouterr().err


@pytest.mark.slow
def test_squeezenet_on_three_local_devices_both_runtimes(
    tmp_path, squeezenet_path, devices_file, omdp
):
    db = tmp_path / "sq.omdp"
    out = run(
        omdp(
            "profile",
            str(squeezenet_path),
            "--devices",
            str(devices_file),
            "--auto",
            "4",
            "--session",
            str(db),
            "--json",
            *FAST,
        ),
        tmp_path / "cache",
        timeout=600,
    )
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout.splitlines()[-1])
    assert summary["errors"] == 0 and summary["done"] == summary["total"] == 5 + 15 + 5


@pytest.mark.slow
def test_yolov5n_five_candidates_three_local_devices_both_runtimes(tmp_path, devices_file, omdp):
    zoo = pytest.importorskip("backend.model.zoo")
    if "yolov5n" not in {e.name for e in zoo.list_models()}:
        pytest.skip("the zoo has no yolov5n yet")
    db = tmp_path / "yolo.omdp"
    out = run(
        omdp(
            "profile",
            "yolov5n",
            "--devices",
            str(devices_file),
            "--auto",
            "5",
            "--session",
            str(db),
            "--json",
            "--node-times",
            "3",
            "--warmup",
            "2",
            "--min-runs",
            "5",
            "--max-runs",
            "20",
            "--max-seconds",
            "2",
        ),
        tmp_path / "cache",
        timeout=1800,
    )
    assert out.returncode == 0, out.stderr
    events = [json.loads(line) for line in out.stdout.splitlines()]
    assert events[0]["candidates"] and len(events[0]["candidates"]) == 5
    summary = events[-1]
    assert summary["errors"] == 0 and summary["done"] == summary["total"] == 6 + 21 + 6
    rows = json.loads(run(omdp("results", str(db), "--json"), tmp_path).stdout)
    whole = [r for r in rows if r["start"] == 0 and r["end"] == max(x["end"] for x in rows)]
    assert len(whole) == 3 and all(r["median_ms"] > 0 for r in whole)
