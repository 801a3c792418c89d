"""Noisy measurements and measuring again: marked everywhere, re-measured on demand, the
earlier results kept in the session's history (real sessions, real agents for the CLI)."""

from __future__ import annotations

import json
import sqlite3

import numpy as np
import pandas as pd
import pytest
from old_sessions import make_version

from backend.chain import Chain, DeviceSpec, LinkSpec
from backend.cli import main
from backend.errors import OmdpError
from backend.model.analysis import analyze
from backend.profiling import noise, schema
from backend.profiling.plan import build_plan
from backend.profiling.session import Session
from backend.usecases import remeasure

FAST = ["--warmup", "1", "--min-runs", "3", "--max-runs", "5", "--max-seconds", "0.5"]
GOOD = {"median": 2.0, "p10": 1.9, "p90": 2.1, "mean": 2.0, "std": 0.1, "rel_ci": 0.01}
WHOLE = GOOD | {"median": 10.0, "p10": 9.9, "p90": 10.1}
BAD = {"median": 9.0, "p10": 2.0, "p90": 30.0, "mean": 12.0, "std": 9.0, "rel_ci": 0.4}


def chain2() -> Chain:
    return Chain.of(
        [DeviceSpec("glasses"), DeviceSpec("phone")], [LinkSpec("glasses", "phone", 20.0, 5.0)]
    )


@pytest.fixture
def measured(tmp_path, tiny_model_path):
    """A session on two devices, every segment measured; phone [4, n) is noisy (and
    faster than the whole model, which contains it: not contradicted)."""
    analysis = analyze(tiny_model_path)
    s = Session.create(tmp_path / "s.omdp", analysis, chain2(), [4])
    plan = build_plan(analysis.n, [4], chain2().names)
    s.save_plan(plan)
    for it in plan.items:
        noisy = it.device == "phone" and it.start == 4
        s.record_result(
            it.device,
            it.segment,
            load_ms=1.0,
            samples=[2.0, 30.0, 9.0] if noisy else [2.0, 2.0, 2.0],
            stats=BAD if noisy else WHOLE if it.segment == (0, analysis.n) else GOOD,
            stop="max_seconds" if noisy else "ci",
        )
    yield s, analysis, plan
    s.close()


def test_noisy_is_a_ci_above_its_target_or_a_budget_stop():
    assert noise.is_noisy({"status": "ok", "rel_ci": 0.05, "stop": "ci"}, 0.02)
    assert noise.is_noisy({"status": "ok", "rel_ci": 0.01, "stop": "max_runs"}, 0.02)
    assert not noise.is_noisy({"status": "ok", "rel_ci": 0.01, "stop": "ci"}, 0.02)
    assert not noise.is_noisy({"status": "error", "rel_ci": None, "stop": None}, 0.02)
    assert noise.target_of({"target_rel_ci": 0.1}) == 0.1
    assert noise.target_of(None) == 0.02


def test_retiring_keeps_the_old_result_and_its_samples(measured):
    s, analysis, plan = measured
    n = analysis.n
    assert noise.noisy_keys(s) == {("phone", 4, n)}
    items = remeasure.remeasure(s, plan.items, remeasure.Target("noisy"))
    assert [(it.device, it.start, it.end) for it in items] == [("phone", 4, n)]
    assert [(it.device, it.start, it.end) for it in s.missing(plan)] == [("phone", 4, n)]
    history = s.history_frame()
    assert list(history["reason"]) == ["noisy"]
    assert list(history["median_ms"]) == [9.0] and list(history["kept_samples"]) == [3]
    assert noise.noisy_keys(s) == set()
    # the new result takes the old one's place; the history still has the old
    s.record_result("phone", (4, n), load_ms=1.0, samples=[2.0] * 3, stats=GOOD, stop="ci")
    assert s.missing(plan) == [] and len(s.history_frame()) == 1


def test_targets_choose_a_device_a_segment_or_a_cell(measured):
    s, analysis, plan = measured
    n, chain = analysis.n, chain2()

    def chosen(text):
        target = remeasure.parse_target(text, chain, n)
        return {(it.device, it.start, it.end) for it in remeasure.choose(s, plan.items, target)}

    assert chosen("glasses") == {("glasses", 0, 4), ("glasses", 0, n)}
    assert chosen(f"0:{n}") == {("glasses", 0, n), ("phone", 0, n)}
    assert chosen(f"phone@4:{n}") == {("phone", 4, n)}
    for bad in ("tablet", "3:2", f"0:{n + 1}", "x:y", "tablet@0:4", "fast"):
        with pytest.raises(OmdpError):
            remeasure.parse_target(bad, chain, n)


def test_throttled_measurements_are_chosen_and_kept_in_the_history(tmp_path, tiny_model_path):
    analysis = analyze(tiny_model_path)
    n = analysis.n
    s = Session.create(tmp_path / "hot.omdp", analysis, chain2(), [4])
    plan = build_plan(n, [4], chain2().names)
    s.save_plan(plan)
    for it in plan.items:
        hot = "CPU 0 at 40% of its maximum frequency" if it.device == "glasses" else None
        s.record_result(it.device, it.segment, load_ms=1.0, samples=[2.0] * 3, stats=GOOD,
                        stop="ci", throttled=hot)  # fmt: skip
    assert s.missing(plan) == []  # throttled counts as measured until asked otherwise
    target = remeasure.parse_target("throttled", chain2(), n)
    items = remeasure.remeasure(s, plan.items, target)
    on_glasses = [it for it in plan.items if it.device == "glasses"]
    assert items == on_glasses and len(items) >= 2
    history = s.history_frame()
    assert set(history["reason"]) == {"throttled"}
    assert history["throttled"].str.startswith("CPU 0 at 40%").all()  # why, kept with it
    assert noise.throttled(s) == {} and s.missing(plan) == on_glasses
    s.close()


def test_a_version_1_session_gains_the_history_on_open(measured):
    s, _, _ = measured
    path = s.path
    make_version(s.conn, 1)
    s.close()
    with Session.open(path, check_model=False) as again:
        assert again.conn.execute("SELECT version FROM schema_version").fetchone()[0] == (
            schema.VERSION
        )
        assert again.history_frame().empty
        assert noise.noisy_keys(again)  # every measurement is still there


def test_a_version_4_history_keeps_its_rows_and_gains_the_conditions(measured):
    s, _, plan = measured
    remeasure.remeasure(s, plan.items, remeasure.Target("noisy"))
    path = s.path
    make_version(s.conn, 4)
    assert "throttled" not in {
        r[1] for r in s.conn.execute("PRAGMA table_info(measurement_history)")
    }
    s.close()
    with Session.open(path, check_model=False) as again:
        history = again.history_frame()
        assert list(history["reason"]) == ["noisy"] and list(history["median_ms"]) == [9.0]
        assert history[["used", "conditions", "throttled"]].isna().all().all()


def test_results_and_paths_mark_noisy_measurements(measured, capsys):
    s, analysis, _ = measured
    s.close()
    assert main(["results", str(s.path)]) == 0
    out = capsys.readouterr().out
    noisy_line = next(
        line for line in out.splitlines() if line.startswith("phone") and "[4," in line
    )
    assert "9.0 !" in noisy_line and "noisy: CI ±40%, target 2%" in noisy_line
    assert "--remeasure noisy" in out
    assert main(["results", str(s.path), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["device"], r["start"]) for r in rows if r["noisy"]] == [("phone", 4)]
    assert main(["paths", str(s.path), "-k", "3", "--bw", "glasses-phone=1000"]) == 0
    out = capsys.readouterr().out
    assert f"[4, {analysis.n})!" in out
    assert "! uses a noisy measurement (CI missed its target, or contradicted" in out
    assert f"`omdp results` says which): phone [4, {analysis.n}); " in out
    assert f"`omdp profile --session {s.path} --remeasure noisy`" in out
    assert main(["paths", str(s.path), "-k", "3", "--json"]) == 0
    parts = json.loads(capsys.readouterr().out)
    assert any(p["noisy"] == [f"phone [4, {analysis.n})"] for p in parts)


def test_profile_remeasure_runs_again_and_keeps_history(
    tmp_path, tiny_model_path, devices_file, capsys
):
    """A real run on three local devices, then `--remeasure phone`: only the phone's
    segments are measured again, the earlier ones are in the history."""
    db = tmp_path / "r.omdp"
    base = ["profile", str(tiny_model_path), "--devices", str(devices_file), "--session", str(db)]
    assert main([*base, "--candidates", "4", "--node-times", "0", *FAST]) == 0
    capsys.readouterr()
    before = _medians(db)
    assert main([*base, "--remeasure", "nope", *FAST]) == 2
    refused = capsys.readouterr().err
    assert "--remeasure nope is not noisy, throttled, a device or a segment" in refused
    assert main([*base, "--remeasure", "phone", "--dry-run", *FAST]) == 0
    out = capsys.readouterr().out
    assert "would re-measure 3 (every measurement on phone)" in out
    assert _history(db) == []  # a dry run writes nothing
    assert main([*base, "--remeasure", "phone", "--node-times", "0", *FAST]) == 0
    out = capsys.readouterr().out
    assert "re-measuring 3 (every measurement on phone)" in out and "3 to measure" in out
    after = _medians(db)
    assert after.keys() == before.keys()
    history = _history(db)
    assert sorted(h[0] for h in history) == ["phone"] * 3
    assert all(h[2] == "device" and h[3] > 0 for h in history)  # reason, samples kept
    for device, a, b in before:
        if device != "phone":
            assert after[(device, a, b)] == before[(device, a, b)]


def _medians(db):
    with sqlite3.connect(db) as conn:
        return {
            (r[0], r[1], r[2]): (r[3], r[4])
            for r in conn.execute(
                "SELECT device, seg_start, seg_end, median_ms, id FROM measurements "
                "WHERE status = 'ok'"
            )
        }


def _history(db):
    with sqlite3.connect(db) as conn:
        return conn.execute(
            "SELECT device, measurement, reason, (SELECT count(*) FROM history_samples s "
            "WHERE s.history = h.id) FROM measurement_history h"
        ).fetchall()


def test_a_target_with_nothing_to_measure_says_why(measured):
    s, _, plan = measured
    hot = remeasure.Target("throttled")
    assert remeasure.choose(s, plan.items, hot) == []
    assert hot.nothing() == "no measurement was timed while its device throttled"
    assert remeasure.Target("cell", "phone", (0, 3)).nothing() == (
        "segment [0, 3) is not measured on phone yet"
    )


def frame_of(rows: list[tuple[str, int, int, float]], config: str = "c") -> pd.DataFrame:
    return pd.DataFrame(
        [
            {"device": d, "start": a, "end": b, "median_ms": ms, "status": "ok", "config": config}
            for d, a, b, ms in rows
        ]
    )


def test_a_segment_slower_than_one_containing_it_contradicts_it():
    consistent = [("phone", 0, 10, 10.0), ("phone", 0, 4, 4.0), ("phone", 4, 10, 6.0)]
    assert noise.contradicted(frame_of(consistent)) == {}
    # a part may cost a little more than the whole (its end materialised): 1.25× + 0.1 ms
    assert noise.contradicted(frame_of([*consistent[:2], ("phone", 4, 10, 12.59)])) == {}
    found = noise.contradicted(frame_of([*consistent[:2], ("phone", 4, 10, 12.7)]))
    assert found == {
        ("phone", 4, 10): "slower than [0,10) (10.0 ms), which contains it",
        ("phone", 0, 10): "faster than [4,10) (12.7 ms), which it contains",
    }
    tiny = [("phone", 0, 10, 0.05), ("phone", 4, 10, 0.12)]  # a session call's time
    assert noise.contradicted(frame_of(tiny)) == {}
    # other devices, other configurations, failures and pending rows are not compared
    others = frame_of([("phone", 0, 10, 10.0), ("cloud", 4, 10, 30.0)])
    old = frame_of([("phone", 4, 10, 30.0)], config="old")
    failed = frame_of([("phone", 2, 3, 99.0)]).assign(status="error")
    assert noise.contradicted(pd.concat([others, old, failed], ignore_index=True)) == {}


def test_contradictions_are_those_of_the_pairwise_definition():
    """The O(P²) grid agrees with comparing every pair, on random measurements."""
    rng = np.random.default_rng(3)
    seen = 0
    for _ in range(40):
        cuts = np.sort(rng.choice(np.arange(1, 60), size=rng.integers(1, 8), replace=False))
        pos = [0, *cuts.tolist(), 60]
        keys = [(a, b) for i, a in enumerate(pos) for b in pos[i + 1 :] if rng.random() < 0.7]
        times = {k: (k[1] - k[0]) * rng.uniform(0.6, 1.6) for k in keys}
        found = noise.contradicted(frame_of([("d", a, b, ms) for (a, b), ms in times.items()]))
        slower = {
            k
            for k in keys
            if any(
                o != k and o[0] <= k[0] and o[1] >= k[1] and times[k] > 1.25 * times[o] + 0.1
                for o in keys
            )
        }
        assert slower <= {(a, b) for _, a, b in found}
        for (_, a, b), why in found.items():
            if (a, b) in slower:
                assert why.startswith("slower than")
            else:  # the other of a contradicting pair, named by the slower one's message
                assert why.startswith("faster than")
                assert any(f"[{a},{b})" in w for w in found.values())
        seen += len(slower)
    assert seen > 40  # the instances do contradict themselves


def test_a_contradiction_is_noisy_marked_and_measured_again(measured, capsys):
    s, analysis, plan = measured
    n = analysis.n
    remeasure.remeasure(s, plan.items, remeasure.Target("cell", "glasses", (0, 4)))
    # glasses [0, 4) timed at a busy moment: 13 ms, more than the whole model's 10 ms
    busy = GOOD | {"median": 13.0}
    s.record_result("glasses", (0, 4), load_ms=1.0, samples=[13.0] * 3, stats=busy, stop="ci")
    both = {("glasses", 0, 4), ("glasses", 0, n)}
    assert noise.noisy_keys(s) == {("phone", 4, n), *both}
    s.close()
    assert main(["results", str(s.path), "--json"]) == 0
    rows = {(r["device"], r["start"], r["end"]): r for r in json.loads(capsys.readouterr().out)}
    assert all(rows[k]["noisy"] for k in both)
    assert rows[("glasses", 0, 4)]["contradicts"] == (
        f"slower than [0,{n}) (10.0 ms), which contains it"
    )
    assert rows[("phone", 4, n)]["contradicts"] is None  # noisy by its CI alone
    assert main(["results", str(s.path)]) == 0
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if x.startswith("glasses") and "[0, 4)" in x)
    assert "13.0 !" in line and f"slower than [0,{n})" in line
    with Session.open(s.path, check_model=False) as again:
        items = remeasure.remeasure(again, plan.items, remeasure.Target("noisy"))
        assert {(it.device, it.start, it.end) for it in items} == {("phone", 4, n), *both}
