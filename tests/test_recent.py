"""The recent-sessions index: sessions opened anywhere are found again; a dry run and a
broken index change nothing."""

from __future__ import annotations

import json

from bad_inputs.harness import tree_state as tree

from backend.cli import main
from backend.profiling import recent


def test_profile_remembers_the_session_and_sessions_lists_it(
    tmp_path, tiny_model_path, devices_file, capsys, monkeypatch, _state_dir
):
    monkeypatch.chdir(tmp_path)
    where = tmp_path / "lab" / "run1.omdp"
    where.parent.mkdir()
    args = ["profile", str(tiny_model_path), "--devices", str(devices_file), "--auto", "1"]
    before = tree([tmp_path, _state_dir])
    assert main([*args, "--session", str(where), "--dry-run"]) == 0
    assert tree([tmp_path, _state_dir]) == before  # a dry run writes nothing anywhere
    fast = ["--max-runs", "3", "--min-runs", "2", "--max-seconds", "0.2", "--node-times", "0"]
    assert main([*args, "--session", str(where), *fast]) == 0
    assert recent.recent_paths() == [where.resolve()]
    capsys.readouterr()
    assert main(["sessions"]) == 0  # no sessions/ folder here: the index finds it
    out = capsys.readouterr().out
    assert str(where.resolve()) in out and "glasses → phone → cloud" in out


def test_a_broken_or_stale_index_is_skipped(tmp_path, _state_dir):
    index = recent.index_path()
    index.parent.mkdir(parents=True, exist_ok=True)
    index.write_text("{not json")
    assert recent.recent_paths() == []
    kept = tmp_path / "a.omdp"
    kept.write_bytes(b"")
    index.write_text(json.dumps([str(tmp_path / "gone.omdp"), str(kept), 3, str(kept)]))
    assert recent.recent_paths() == [kept]
    recent.remember(tmp_path / "b.omdp")
    assert json.loads(index.read_text())[:2] == [str((tmp_path / "b.omdp").resolve()), str(kept)]
