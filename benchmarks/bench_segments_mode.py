"""Segments mode against model mode, side by side in one run.

The same job on the same local agent, (a) in model mode (the agent cuts the segments from
the whole model) and (b) in segments mode (the lab cuts them and the job carries them, as
for a device without onnx). The two alternate `--rounds` times; for each segment the best
median of each mode is kept (the one least disturbed by the rest of the machine) and their
ratio printed: segments mode must not change the numbers. Also the lab's cutting time.

Usage: .venv/bin/python benchmarks/bench_segments_mode.py [--model NAME] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from backend.device import protocol as proto
from backend.device.protocol import Job, TimingSettings
from backend.model import zoo
from backend.remote.local import LocalTransport
from backend.remote.models import put_model
from backend.remote.parts import cut_parts

TIMING = TimingSettings(warmup=3, min_runs=20, max_runs=200, max_seconds=1.5)


async def medians(job: Job, cache: Path) -> dict[proto.Segment, float]:
    transport = LocalTransport(cache)
    await transport.start(job)
    found: dict[proto.Segment, float] = {}
    try:
        while (event := await transport.next_event()) is not None:
            if isinstance(event, proto.Result):
                found[event.segment] = float(event.stats["median"] or 0.0)
            elif isinstance(event, proto.Done):
                break
    finally:
        await transport.finish(5)
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="yolov5n", help="a built-in model")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="omdp-bench-"))
    cache = tmp / "cache"
    path, sha = put_model(zoo.build_to(args.model, tmp / "m.onnx").read_bytes(), cache)
    n = len(zoo.build(args.model).graph.node)
    items = [(0, n // 10), (n // 10, n // 2), (n // 2, n), (0, n)]
    model_job = Job(sha, items, {"name": "onnxruntime", "threads": 1}, TIMING, model_path=str(path))
    t0 = time.perf_counter()
    segments_job = cut_parts(path, model_job, cache)
    cut_s = time.perf_counter() - t0
    best: dict[str, dict[proto.Segment, float]] = {"model": {}, "segments": {}}
    for _ in range(args.rounds):
        for mode, job in (("model", model_job), ("segments", segments_job)):
            for seg, ms in asyncio.run(medians(job, cache)).items():
                best[mode][seg] = min(ms, best[mode].get(seg, ms))
    print(f"{args.model}: the lab cut {len(items)} segments in {cut_s:.2f} s")
    print(f"{'segment':>12} {'model ms':>10} {'segments ms':>12} {'ratio':>7}")
    for seg in items:
        a, b = best["model"][seg], best["segments"][seg]
        print(f"{list(seg)!s:>12} {a:>10.3f} {b:>12.3f} {b / a:>7.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
