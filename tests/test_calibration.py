"""The plan's time estimate, learnt from measurements: within 2× of the real run once the
devices have been measured once (here or in an earlier session)."""

from __future__ import annotations

import json
import time

from backend.cli import main
from backend.profiling import calibration

TIMING = ["--max-runs", "60", "--max-seconds", "0.6", "--node-times", "0"]


def _profile(capsys, model, devices, session, *extra) -> tuple[float, float]:
    """(estimated seconds, wall seconds) of one `omdp profile --json` run."""
    args = ["profile", str(model), "--devices", str(devices), "--session", str(session)]
    start = time.monotonic()
    assert main([*args, *extra, *TIMING, "--json"]) == 0
    wall = time.monotonic() - start
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    plan = next(e for e in events if e["event"] == "plan")
    return plan["estimate_s"], wall


def test_a_second_session_on_the_same_devices_is_estimated_within_2x(
    tmp_path, medium_model_path, devices_file, capsys
):
    _profile(capsys, medium_model_path, devices_file, tmp_path / "a.omdp", "--auto", "2")
    learnt = calibration.remembered(_chain(devices_file))
    assert set(learnt) == {"glasses", "phone", "cloud"}
    assert all(r.gflops > 0 and r.runs >= 3 for r in learnt.values())
    estimate, wall = _profile(
        capsys, medium_model_path, devices_file, tmp_path / "b.omdp", "--auto", "3"
    )
    assert wall / 2 <= estimate <= wall * 2, (estimate, wall)


def _chain(devices_file):
    from backend.chain import load_devices

    return load_devices(devices_file)
