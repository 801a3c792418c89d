"""A device that throttles: the agent reads temperatures and CPU frequencies (from /sys, or
the tree `OMDP_SYS_ROOT` names) before and after each segment's timed runs; a measurement
taken below 90% of the maximum frequency, or after which a zone reached its trip point,
is flagged in `results` and in the ranking's warnings, and `--remeasure throttled` measures it
again. A device that exposes none of these files records nothing."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from backend.device import probe

ROOT = Path(__file__).resolve().parents[1]
FAST = ["--warmup", "1", "--min-runs", "3", "--max-runs", "5", "--max-seconds", "0.3"]


def fake_sys(
    root: Path,
    *,
    cur_mhz: float = 2000,
    max_mhz: float = 2000,
    temp_c: float = 45,
    trip_c: float = 85,
    governor: str = "performance",
    cpus: int = os.cpu_count() or 1,
) -> Path:
    """A /sys tree with one thermal zone and `cpus` CPUs running at `cur_mhz`."""
    zone = root / "class" / "thermal" / "thermal_zone0"
    zone.mkdir(parents=True, exist_ok=True)
    (zone / "type").write_text("cpu-thermal\n")
    (zone / "temp").write_text(f"{int(temp_c * 1000)}\n")
    (zone / "trip_point_0_type").write_text("active\n")  # a fan: not a throttling trip
    (zone / "trip_point_0_temp").write_text(f"{int((trip_c - 30) * 1000)}\n")
    (zone / "trip_point_1_type").write_text("passive\n")
    (zone / "trip_point_1_temp").write_text(f"{int(trip_c * 1000)}\n")
    for cpu in range(cpus):
        freq = root / "devices" / "system" / "cpu" / f"cpu{cpu}" / "cpufreq"
        freq.mkdir(parents=True, exist_ok=True)
        (freq / "scaling_cur_freq").write_text(f"{int(cur_mhz * 1000)}\n")
        (freq / "cpuinfo_max_freq").write_text(f"{int(max_mhz * 1000)}\n")
        (freq / "scaling_max_freq").write_text(f"{int(max_mhz * 1000)}\n")
        (freq / "scaling_governor").write_text(f"{governor}\n")
    return root


# -- reading and judging -----------------------------------------------------------------------


def test_a_cool_full_speed_device_reads_fine_and_is_not_flagged(tmp_path, monkeypatch):
    monkeypatch.setenv(probe.SYS_ROOT_ENV, str(fake_sys(tmp_path)))
    snap = probe.snapshot([0])
    assert snap == {
        "temp_c": 45.0,
        "zone": "cpu-thermal",
        "trip_c": 85.0,
        "over_trip": False,
        "cpu": 0,
        "cur_mhz": 2000.0,
        "max_mhz": 2000.0,
        "freq_ratio": 1.0,
    }
    assert probe.throttle_reason({"before": snap, "after": snap}) is None
    assert probe.flag_risks() == []


def test_a_cpu_below_90_percent_of_its_maximum_is_flagged(tmp_path, monkeypatch):
    monkeypatch.setenv(probe.SYS_ROOT_ENV, str(fake_sys(tmp_path, cur_mhz=1200)))
    snap = probe.snapshot([0])
    reason = probe.throttle_reason({"before": snap, "after": snap})
    assert reason == "CPU 0 at 60% of its maximum frequency before timing (1200 of 2000 MHz)"
    fake_sys(tmp_path, cur_mhz=1850)  # 92.5%: within the floor
    assert probe.throttle_reason({"after": probe.snapshot([0])}) is None


def test_a_zone_past_its_trip_point_after_timing_is_flagged(tmp_path, monkeypatch):
    monkeypatch.setenv(probe.SYS_ROOT_ENV, str(fake_sys(tmp_path, temp_c=60)))
    before = probe.snapshot([0])
    fake_sys(tmp_path, temp_c=88)
    after = probe.snapshot([0])
    reason = probe.throttle_reason({"before": before, "after": after})
    assert reason == "cpu-thermal at 88 °C reached its trip point (85 °C) while timing"
    assert probe.flag_risks()[0].startswith("cpu-thermal is at 88 °C, near or past its trip")


def test_a_slow_governor_and_a_capped_cpu_are_named_as_risks(tmp_path, monkeypatch):
    root = fake_sys(tmp_path, governor="powersave", cpus=2)
    (root / "devices/system/cpu/cpu1/cpufreq/scaling_max_freq").write_text("1000000\n")
    monkeypatch.setenv(probe.SYS_ROOT_ENV, str(root))
    risks = probe.flag_risks()
    assert any("CPU 1 capped below 90%" in r for r in risks), risks
    assert any(r.startswith("governor powersave may keep") for r in risks), risks
    assert probe.cpu_state()["governor"] == "powersave"


def test_a_device_without_these_files_records_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv(probe.SYS_ROOT_ENV, str(tmp_path / "empty"))
    assert probe.snapshot([0]) is None
    assert probe.thermal_zones() == [] and probe.cpu_freqs() == {}
    assert probe.throttle_reason({}) is None
    assert probe.cpu_state() == {"governor": None, "temp_c": None, "flag_risks": []}


# -- end to end: flagged, shown, warned about, re-measured ----------------------------------


def omdp(tmp_path: Path, sys_root: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMDP_CACHE_DIR": str(tmp_path / "cache")}
    env[probe.SYS_ROOT_ENV] = str(sys_root)
    return subprocess.run(
        [sys.executable, "-m", "omdp_tui.main", *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def measurements(db: Path) -> list[tuple]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return conn.execute(
            "SELECT device, seg_start, seg_end, status, used, conditions, throttled "
            "FROM measurements ORDER BY id"
        ).fetchall()
    finally:
        conn.close()


@pytest.fixture
def two_devices(tmp_path: Path) -> Path:
    path = tmp_path / "devices.toml"
    path.write_text(
        '[[device]]\nname = "glasses"\n\n[[device]]\nname = "phone"\nruntime = "openvino"\n\n'
        '[[link]]\nfrom = "glasses"\nto = "phone"\nbandwidth_mbps = 20\n'
    )
    return path


def test_a_throttled_device_is_flagged_warned_about_and_measured_again(
    tmp_path, tiny_model_path, two_devices
):
    db = tmp_path / "s.omdp"
    hot = fake_sys(tmp_path / "hot-sys", cur_mhz=1000, max_mhz=2400)
    profile = ["profile", str(tiny_model_path), "--devices", str(two_devices), "--candidates",
               "4,11", "--session", str(db), "--node-times", "0", *FAST]  # fmt: skip
    out = omdp(tmp_path, hot, *profile)
    assert out.returncode == 0, out.stderr
    assert "[THROTTLED: CPU " in out.stdout
    rows = measurements(db)
    assert len(rows) == 6 and {r[3] for r in rows} == {"ok"}
    for device, _, _, _, used, conditions, throttled in rows:
        assert used == ("CPU" if device == "phone" else "CPUExecutionProvider")
        snaps = json.loads(conditions)
        assert snaps["before"]["freq_ratio"] == pytest.approx(1000 / 2400, abs=1e-3)
        assert throttled.startswith("CPU ") and "41% of its maximum frequency" in throttled

    shown = omdp(tmp_path, hot, "results", str(db))
    assert shown.stdout.count("throttled: CPU ") == 6, shown.stdout
    assert "6 measurements taken while the device throttled" in shown.stdout
    listed = json.loads(omdp(tmp_path, hot, "results", str(db), "--json").stdout)
    assert all(r["throttled"] and r["used"] for r in listed)
    ranked = omdp(tmp_path, hot, "paths", str(db), "-k", "2")
    assert ranked.returncode == 0, ranked.stderr
    assert "omdp: warning: glasses [0, " in ranked.stderr
    assert "--remeasure throttled" in ranked.stderr

    cool = fake_sys(tmp_path / "cool-sys", cur_mhz=2400, max_mhz=2400)
    again = omdp(tmp_path, cool, *profile)  # a resume without the flag: nothing to do
    assert measurements(db) == rows, again.stdout
    again = omdp(tmp_path, cool, *profile, "--remeasure", "throttled")
    assert again.returncode == 0, again.stderr
    after = measurements(db)
    assert len(after) == 6 and all(r[6] is None for r in after)  # measured again, unflagged
    with sqlite3.connect(db) as conn:  # the throttled ones are kept in the history
        kept = conn.execute("SELECT COUNT(*) FROM measurement_history").fetchone()[0]
    assert kept == 6
    assert "warning" not in omdp(tmp_path, cool, "paths", str(db)).stderr


def test_without_sys_files_a_measurement_records_no_conditions(
    tmp_path, tiny_model_path, two_devices
):
    db = tmp_path / "s.omdp"
    out = omdp(tmp_path, tmp_path / "no-sys", "profile", str(tiny_model_path), "--devices",
               str(two_devices), "--candidates", "4", "--session", str(db), "--node-times",
               "0", *FAST)  # fmt: skip
    assert out.returncode == 0, out.stderr
    rows = measurements(db)
    assert rows and all(r[5] is None and r[6] is None for r in rows)


@pytest.mark.parametrize(
    ("conditions", "says"),
    [
        ({"during": {}}, "a conditions key must be one of before, after"),
        ({"after": {"temp_c": float("inf")}}, "non-finite"),
        ({"after": {"temp_c": {"deeper": 1}}}, "must be plain data"),
        ({"after": {f"k{i}": 1 for i in range(40)}}, "at most 32 entries"),
    ],
)
def test_conditions_a_device_sends_are_checked_like_any_line(conditions, says):
    line = {
        "type": "result", "segment": [0, 4], "load_ms": 1.0, "samples": [1.0],
        "stats": {"count": 1, "median": 1.0}, "stop": "max_runs",
        "runtime": {"name": "onnxruntime"}, "conditions": conditions,
    }  # fmt: skip
    from backend.device import protocol as proto

    text = json.dumps(line).replace("Infinity", "1e999")
    with pytest.raises(proto.ProtocolError, match=says):
        proto.decode(text)
