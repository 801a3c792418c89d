"""The bandwidth map vs a grid of re-rankings, side by side in the same run.

A 64-candidate x 3-device segment instance (DNN-like: the glasses slow, the phone 4x and
the cloud 16x faster; cut sizes log-normal), both links varying from 1 to 1000 Mbit/s:

- map: `Mapper.map()` — the exact regions (envelope of the partitions' planes in 1/bw),
  their shares on log axes, boundaries and a reading inside each region;
- grid: 200 x 200 log-spaced points, each ranked through the existing ranker
  (`Ranker.rank(bandwidths, k=1)`, the re-ranking the TUI does on a keystroke).

Both are built from the same precomputed `Ranker`. The grid's labels are checked against
the map's regions at every grid point not within 1e-9 of a boundary. Timings are medians
(map: 20 runs; grid: one run, it takes seconds); on a busy machine both grow.
Run: python benchmarks/bench_map.py
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from backend.solver.bandwidth_map import LinkRange, Mapper
from backend.solver.costs import SegmentInstance
from backend.solver.segment_ranker import Ranker

GRID = 200


def instance(seed: int = 0) -> SegmentInstance:
    rng = np.random.default_rng(seed)
    m, n = 64, 400
    cands = np.concatenate([[0], np.sort(rng.choice(np.arange(1, n), m - 2, replace=False)), [n]])
    span = (cands[None, :] - cands[:, None]).astype(float)
    comp = np.stack([span * s * rng.uniform(0.9, 1.1, (m, m)) for s in (1.0, 0.25, 0.0625)])
    cut = rng.lognormal(np.log(200e3), 1.0, m)
    cut[0] = 1.2e6
    return SegmentInstance(["glasses", "phone", "cloud"], cands, cut, comp, [20.0, 100.0], [5, 20])


def main() -> None:
    inst = instance()
    ranker = Ranker(inst)
    ranges = [LinkRange("glasses-phone", 0, 1.0, 1000.0), LinkRange("phone-cloud", 1, 1.0, 1000.0)]
    print(
        f"== Two-link map: {inst.n_candidates} candidates x {inst.n_devices} devices "
        f"({len(ranker.rows)} partitions), both links 1..1000 Mbit/s"
    )
    Mapper(ranker, ranges).map()  # warm up
    times = []
    for _ in range(20):
        t = time.perf_counter()
        bmap = Mapper(ranker, ranges).map()
        times.append(time.perf_counter() - t)
    map_ms = statistics.median(times) * 1e3

    xs = np.geomspace(1.0, 1000.0, GRID)
    t = time.perf_counter()
    labels = [[ranker.rank([x, y], None, 1).cuts[0] for x in xs] for y in xs]
    grid_ms = (time.perf_counter() - t) * 1e3

    checked = agree = 0
    for j, y in enumerate(xs):
        for i, x in enumerate(xs):
            values = [r.choice.ms_at((x, y)) for r in bmap.regions]
            order = sorted(values)
            if len(order) > 1 and order[1] - order[0] <= 1e-9 * order[0]:
                continue  # on a boundary: either side is right
            checked += 1
            best = bmap.regions[int(np.argmin(values))].cuts
            agree += tuple(int(c) for c in labels[j][i]) == best
    print(f"map (exact, {len(bmap.regions)} regions, {len(bmap.boundaries)} boundaries):")
    print(f"  {map_ms:8.1f} ms   median of 20")
    print(f"grid of {GRID}x{GRID} re-rankings through Ranker.rank (k=1):")
    print(f"  {grid_ms:8.1f} ms   one run")
    print(f"speed-up: {grid_ms / map_ms:.0f}x; labels agree at {agree}/{checked} grid points")
    met = grid_ms / map_ms >= 20 and map_ms < 50
    print(f"targets (>= 20x faster, < 50 ms): {'met' if met else 'NOT met'}")
    print("regions (share of the log-log box):")
    for r in bmap.regions:
        print(f"  {100 * r.share:5.1f}%  {bmap.describe(r.cuts)}")
    if agree != checked:
        raise SystemExit("the map and the grid disagree")


if __name__ == "__main__":
    main()
