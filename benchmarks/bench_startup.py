"""`omdp --help` start-up: lazy verb loading vs importing every verb (the old way), side by side.

Both run as fresh interpreters from the same venv, alternating, so machine load affects both
alike. The baseline builds the parser with every verb module imported (what `omdp --help`
did before verbs were loaded lazily); ours is the real console entry point.
Run: python benchmarks/bench_startup.py [--runs 15]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OURS = [
    sys.executable,
    "-c",
    "import sys; from omdp_tui.main import main; sys.exit(main(['--help']))",
]
BASELINE = [
    sys.executable,
    "-c",
    "from backend.cli import build_parser; build_parser().parse_args(['--help'])",
]


def wall_s(cmd: list[str]) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, check=True)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=15)
    runs = ap.parse_args().runs
    wall_s(OURS), wall_s(BASELINE)  # warm the page cache for both
    ours, base = [], []
    for _ in range(runs):
        ours.append(wall_s(OURS))
        base.append(wall_s(BASELINE))
    o, b = statistics.median(ours), statistics.median(base)
    print(f"omdp --help, median of {runs} fresh interpreters")
    print(f"  lazy verbs (ours)        {o * 1000:7.1f} ms   (max {max(ours) * 1000:.1f} ms)")
    print(f"  every verb imported      {b * 1000:7.1f} ms   (max {max(base) * 1000:.1f} ms)")
    verdict = "met" if o < 0.3 else "MISSED"
    print(f"  speed-up                 {b / o:7.1f}x   goal: ours < 300 ms -> {verdict}")


if __name__ == "__main__":
    main()
