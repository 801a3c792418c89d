"""The rest of omdp against a lab, as a user runs it: `links measure`, CPU shares, and a
profile that loses a device mid-run. Slow (tens of seconds each) and timing-sensitive:
the figures are printed (run with -s) so a failure under someone else's load can be told
from a broken lab.
"""

from __future__ import annotations

import dataclasses
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

from backend.cli import main
from backend.lab import lifecycle

from .helpers import kill_device, why_no_lab

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.skipif(why_no_lab() is not None, reason=str(why_no_lab())),
]

ROOT = Path(__file__).resolve().parents[2]
BENCH = Path(__file__).with_name("cpu_bench.py")


def load() -> str:
    return Path("/proc/loadavg").read_text().split()[0]


def test_links_measure_reports_the_shaped_links(make_lab, tmp_path: Path, capsys) -> None:
    """5/10, 20/5, 100/10 and 100/5 (Mbit/s, ms): every link's bandwidth within 10 % and
    its latency within 2 ms of what was shaped. Other work on the lab machine wakes the
    relays and the helpers up late, which lengthens round trips and holds transfers up,
    never the other way: when a link misses, the chain is measured once more and the second
    measurement is judged; links shaped wrong miss both times."""
    names = ["a", "b", "c", "d", "e"]
    shaped = [(5, 10), (20, 5), (100, 10), (100, 5)]
    make_lab(
        [{"name": n} for n in names],
        [
            {"from": x, "to": y, "bandwidth_mbps": bw, "latency_ms": lat}
            for x, y, (bw, lat) in zip(names, names[1:], shaped, strict=False)
        ],
    )

    def close(m: dict, bw: float, lat: float) -> bool:
        return abs(m["bandwidth_mbps"] - bw) <= 0.1 * bw and abs(m["latency_ms"] - lat) <= 2.0

    for _ in range(2):
        argv = ["links", "measure", str(tmp_path / "lab" / "devices.toml"), "--json", "--no-lab"]
        code = main(argv)
        found = json.loads(capsys.readouterr().out)
        assert code == 0, found["failures"]
        with capsys.disabled():
            print(f"\nlinks measure (load {load()}):")
            for m, (bw, lat) in zip(found["chain"], shaped, strict=True):
                print(
                    f"  {m['src']}-{m['dst']} shaped {bw} Mbit/s {lat} ms: measured "
                    f"{m['bandwidth_mbps']:.1f} Mbit/s, {m['latency_ms']:.2f} ms, "
                    f"rtt {m['rtt_ms']:.2f} ms"
                )
        if all(close(m, *s) for m, s in zip(found["chain"], shaped, strict=True)):
            break
    for m, (bw, lat) in zip(found["chain"], shaped, strict=True):
        assert abs(m["bandwidth_mbps"] - bw) <= 0.1 * bw, m
        assert abs(m["latency_ms"] - lat) <= 2.0, m


def test_a_quarter_cpu_is_four_times_slower(make_lab, tmp_path: Path) -> None:
    """A segment of a few hundred ms, one onnxruntime thread, on a device with cpu = 0.25
    and on one without a limit, measured alternately (so both see the same load from the
    rest of the machine): 3.2-4.8× slower, with p90/p10 under 1.3 (of each limited run
    against the unlimited run timed beside it).

    The ratio is taken against the unlimited device's CPU time, which is its wall time
    on an idle machine: when other work shares the lab machine, the unlimited device's
    wall time grows with it while the limited one is held at its quota. When the
    unlimited device did have a whole CPU, the wall-time ratio is checked as well."""
    report = make_lab(
        [{"name": "free", "threads": 1}, {"name": "limited", "threads": 1, "lab": {"cpu": 0.25}}],
        [{"from": "free", "to": "limited", "bandwidth_mbps": 100}],
    )
    folder = tmp_path / "lab"
    sessions = []
    for device in report.status["devices"]:
        sessions.append(
            subprocess.Popen(
                [
                    "ssh",
                    "-F",
                    str(folder / "ssh_config"),
                    "-i",
                    str(folder / "lab_key"),
                    "-o",
                    f"UserKnownHostsFile={folder / 'known_hosts'}",
                    "-o",
                    "BatchMode=yes",
                    "-o",
                    "StrictHostKeyChecking=yes",
                    f"root@{device['host']}",
                    sys.executable,
                    str(BENCH),
                    "1024",
                    "14",
                ],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
        )
    try:
        for s in sessions:
            assert s.stdout is not None and json.loads(s.stdout.readline()) == {"ready": True}
        # Other work on the lab machine can only slow the limited device down further (its
        # caches are refilled after every pause), never speed it up: a second attempt is
        # made only when the first misses, and the better one is judged.
        attempts = [measure_quarter_cpu(sessions)]
        if not attempts[0].ok:
            attempts.append(measure_quarter_cpu(sessions))
    finally:
        for s in sessions:
            s.kill()
            s.wait()
    best = min(attempts, key=lambda a: abs(a.ratio - 4.0))
    assert best.free_cpu >= 300, "the segment must take a few hundred ms unlimited"
    assert best.ok, [a.line for a in attempts]


@dataclasses.dataclass
class QuarterCpu:
    free_wall: float
    free_cpu: float
    limited_wall: float
    limited_cpu: float
    spread: float
    line: str

    @property
    def ratio(self) -> float:
        return self.limited_wall / self.free_cpu

    @property
    def ok(self) -> bool:
        """3.2-4.8× slower with p90/p10 under 1.3; against the wall time too when the
        unlimited device had a whole CPU."""
        wall_ok = (
            self.free_cpu / self.free_wall < 0.9 or 3.2 <= self.limited_wall / self.free_wall <= 4.8
        )
        return 3.2 <= self.ratio <= 4.8 and self.spread < 1.3 and wall_ok


def measure_quarter_cpu(sessions: list[subprocess.Popen[str]]) -> QuarterCpu:
    wall: dict[int, list[float]] = {0: [], 1: []}
    cpu: dict[int, list[float]] = {0: [], 1: []}
    for _ in range(4):
        for k, s in enumerate(sessions):
            assert s.stdin is not None and s.stdout is not None
            s.stdin.write("3\n")
            s.stdin.flush()
            got = json.loads(s.stdout.readline())
            wall[k] += got["wall"]
            cpu[k] += got["cpu"]
    limited = sorted(wall[1])
    # The spread of the limit itself: each limited run against the unlimited run timed
    # next to it, so the machine's own drift (both slowed by other work, or a virtual
    # CPU changing speed between rounds) cancels out and only the quota's unevenness is left.
    paired = sorted(w / c for w, c in zip(wall[1], cpu[0], strict=True))
    spread = paired[int(0.9 * (len(paired) - 1))] / paired[int(0.1 * (len(paired) - 1))]
    m = QuarterCpu(
        statistics.median(wall[0]),
        statistics.median(cpu[0]),
        statistics.median(limited),
        statistics.median(cpu[1]),
        spread,
        "",
    )
    m.line = (
        f"load {load()}: unlimited {m.free_wall:.0f} ms wall / {m.free_cpu:.0f} ms cpu, "
        f"cpu=0.25 {m.limited_wall:.0f} ms wall / {m.limited_cpu:.0f} ms cpu; ratio "
        f"{m.ratio:.2f} (wall/wall {m.limited_wall / m.free_wall:.2f}), p90/p10 {spread:.3f}"
    )
    print("\n" + m.line)
    return m


def omdp(*args: str) -> list[str]:
    return [
        sys.executable,
        "-c",
        "import sys; from backend.cli import main; sys.exit(main(sys.argv[1:]))",
        *args,
    ]


def test_profile_survives_a_device_lost_mid_run(make_lab, tmp_path: Path) -> None:
    """YOLOv5n, --auto 4, over a 3-device lab: the phone is killed (sshd, session and
    agent) after its first result; the run reports it and finishes the others. The lab
    is brought back with `lab up`, and the same command measures only what is missing."""
    make_lab(
        [
            {"name": "glasses", "threads": 1, "lab": {"cpu": 0.5}},
            {"name": "phone", "threads": 1, "lab": {"cpu": 0.5}},
            {"name": "cloud", "threads": 1},
        ],
        [
            {"from": "glasses", "to": "phone", "bandwidth_mbps": 20, "latency_ms": 5},
            {"from": "phone", "to": "cloud", "bandwidth_mbps": 100, "latency_ms": 10},
        ],
    )
    folder = tmp_path / "lab"
    session = tmp_path / "yolo.omdp"
    cmd = omdp(
        "profile",
        "yolov5n",
        "--devices",
        str(folder / "devices.toml"),
        "--auto",
        "4",
        "--session",
        str(session),
        "--json",
        "--warmup",
        "1",
        "--min-runs",
        "3",
        "--max-runs",
        "5",
        "--max-seconds",
        "0.5",
        "--node-times",
        "0",
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    first = subprocess.Popen(
        cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    events = []
    killed: list[int] = []
    assert first.stdout is not None
    for line in first.stdout:
        event = json.loads(line)
        events.append(event)
        if not killed and event.get("event") == "measured" and event.get("device") == "phone":
            killed = kill_device(folder, 1)
    first.wait(300)
    assert killed, "the phone measured nothing before the run ended"
    plan = events[0]
    failed = [e for e in events if e.get("event") == "device_failed"]
    finished = {e["device"] for e in events if e.get("event") == "device_finished"}
    assert first.returncode != 0
    assert [e["device"] for e in failed] == ["phone"]
    assert finished == {"glasses", "cloud"}
    phone_done = sum(
        1 for e in events if e.get("event") == "measured" and e.get("device") == "phone"
    )
    assert 1 <= phone_done < plan["per_device"]["phone"]

    assert lifecycle.status(folder).state == "degraded"
    assert lifecycle.up(tmp_path / "lab.toml", folder).action == "repaired"

    again = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    events = [json.loads(line) for line in again.stdout.splitlines()]
    todo = plan["per_device"]["phone"] - phone_done
    assert events[0]["todo"] == todo and events[0]["resumed"]
    measured = [e for e in events if e.get("event") == "measured"]
    assert {e["device"] for e in measured} == {"phone"} and len(measured) == todo
    summary = events[-1]
    assert summary["done"] == summary["total"] == plan["todo"]
