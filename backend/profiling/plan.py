"""The plan: which segments each device of the chain must profile, and how long that takes.

OMDP's scheme: with candidates C (interior positions) and N nodes, the first device runs
every prefix [0, c), the last every suffix [c, N), a middle device every [a, b) with
a < b in C ∪ {0, N}; the whole model [0, N) runs everywhere. Every partition is then
priced from measurements alone, and each (segment, device) is measured once.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import combinations

from backend.device.protocol import TimingSettings
from backend.errors import OmdpError

# Rough speed of a device nobody has measured yet (GFLOP/s): a few CPU cores.
DEFAULT_GFLOPS = 20.0
# Expected timed runs per segment before the median is precise enough (typical, quiet CPU).
TYPICAL_RUNS = 30
# Per-segment fixed costs (s): extraction + session creation, and per device: agent start.
SEGMENT_OVERHEAD_S = 0.05
AGENT_START_S = 1.0
# More (segment, device) pairs than anyone can measure: refused before they are listed.
MAX_PLAN_ITEMS = 100_000


@dataclass(frozen=True, order=True)
class PlanItem:
    device: str
    start: int
    end: int

    @property
    def segment(self) -> tuple[int, int]:
        return (self.start, self.end)


@dataclass
class Plan:
    n: int
    candidates: list[int]
    devices: list[str]
    items: list[PlanItem] = field(default_factory=list)

    def by_device(self) -> dict[str, list[PlanItem]]:
        out: dict[str, list[PlanItem]] = {d: [] for d in self.devices}
        for it in self.items:
            out[it.device].append(it)
        return out

    def counts(self) -> dict[str, int]:
        return {d: len(items) for d, items in self.by_device().items()}

    def __len__(self) -> int:
        return len(self.items)


def check_candidates(n: int, candidates: Sequence[int]) -> list[int]:
    """Sorted unique interior positions; 0 and N are implied and dropped."""
    bad = [c for c in candidates if not 0 <= c <= n]
    if bad:
        raise ValueError(f"candidate {bad[0]} is out of range 0..{n}")
    return sorted({c for c in candidates if 0 < c < n})


def plan_size(n_candidates: int, n_devices: int) -> int:
    """How many items `build_plan` makes, counted without making them: prefixes and
    suffixes at the ends, every pair of points in the middle."""
    if n_devices <= 1:
        return n_devices
    c = n_candidates
    return 2 * (c + 1) + (n_devices - 2) * (c + 2) * (c + 1) // 2


def check_size(n_candidates: int, n_devices: int) -> None:
    """OmdpError when the plan would be larger than anyone can measure."""
    size = plan_size(n_candidates, n_devices)
    if size > MAX_PLAN_ITEMS:
        raise OmdpError(
            f"the plan would measure {size} segments ({n_candidates} candidates "
            f"on {n_devices} devices; the limit is {MAX_PLAN_ITEMS})",
            "choose fewer candidates (--auto K or --candidates)",
        )


def build_plan(n: int, candidates: Sequence[int], devices: Sequence[str]) -> Plan:
    """Every (segment, device) the chain needs, once, in chain order then (start, end)."""
    if n < 1:
        raise ValueError("the model has no nodes")
    if not devices:
        raise ValueError("the chain has no devices")
    if len(set(devices)) != len(devices):
        raise ValueError("device names must be unique")
    cands = check_candidates(n, candidates)
    check_size(len(cands), len(devices))
    points = [0, *cands, n]
    items: set[PlanItem] = set()
    last = len(devices) - 1
    for i, dev in enumerate(devices):
        if last == 0:
            segs = [(0, n)]
        elif i == 0:
            segs = [(0, c) for c in [*cands, n]]
        elif i == last:
            segs = [(c, n) for c in [0, *cands]]
        else:
            segs = list(combinations(points, 2))
        segs.append((0, n))
        items.update(PlanItem(dev, a, b) for a, b in segs)
    order = {d: i for i, d in enumerate(devices)}
    return Plan(
        n, cands, list(devices), sorted(items, key=lambda it: (order[it.device], it.start, it.end))
    )


def plan_segments(
    devices: Sequence[str],
    candidates: Sequence[int],
    n: int,
) -> dict[str, list[tuple[int, int]]]:
    """The plan as {device: [(a, b), ...]} in chain order (for callers that only need
    segments, e.g. the TUI's plan table)."""
    out: dict[str, list[tuple[int, int]]] = {d: [] for d in devices}
    for it in build_plan(n, candidates, devices).items:
        out[it.device].append(it.segment)
    return out


# -- estimating the duration -----------------------------------------------------------------


def segment_flops(node_flops: Sequence[int | None]) -> Callable[[int, int], int]:
    """FLOPs of [a, b) in O(1) from prefix sums (uncounted nodes count 0)."""
    cum = [0]
    for f in node_flops:
        cum.append(cum[-1] + max(f or 0, 0))
    return lambda a, b: cum[b] - cum[a]


def speeds_from_measurements(
    rows: Sequence[Mapping],
    flops_of: Callable[[int, int], int],
) -> dict[str, float]:
    """GFLOP/s per device from earlier measurements (rows with device, start, end,
    median_ms): the ratio of summed FLOPs to summed time, so big segments dominate."""
    flops: dict[str, float] = {}
    ms: dict[str, float] = {}
    for r in rows:
        med = r.get("median_ms")
        if med is None or not med > 0 or r.get("status", "ok") != "ok":
            continue
        f = flops_of(int(r["start"]), int(r["end"]))
        if f <= 0:
            continue
        flops[r["device"]] = flops.get(r["device"], 0.0) + f
        ms[r["device"]] = ms.get(r["device"], 0.0) + med
    return {d: flops[d] / ms[d] / 1e6 for d in flops if ms[d] > 0}


@dataclass
class Estimate:
    seconds: float  # wall time if every device runs at the same time
    per_device: dict[str, float]
    source: dict[str, str]  # device -> "measured" | "configured" | "default"


def estimate(
    items: Sequence[PlanItem],
    flops_of: Callable[[int, int], int],
    timing: TimingSettings,
    gflops: Mapping[str, float] | None = None,
    measured: Mapping[str, float] | None = None,
    runs_of: Mapping[str, float] | None = None,
    overhead_of: Mapping[str, float] | None = None,
) -> Estimate:
    """Seconds to run `items`: per segment, runs × (FLOPs / speed) within the timing
    budget, plus load and agent start. Speeds come from earlier measurements if any, else
    the device's configured GFLOP/s, else a default; `runs_of` and `overhead_of` (timed
    runs and load seconds per segment, learnt from measurements) replace the guesses."""
    per: dict[str, float] = {}
    source: dict[str, str] = {}
    measured, gflops = measured or {}, gflops or {}
    runs_of, overhead_of = runs_of or {}, overhead_of or {}
    for it in items:
        if it.device in measured:
            speed, src = measured[it.device], "measured"
        elif it.device in gflops:
            speed, src = gflops[it.device], "configured"
        else:
            speed, src = DEFAULT_GFLOPS, "default"
        source[it.device] = src
        run_s = flops_of(it.start, it.end) / (max(speed, 1e-3) * 1e9)
        typical = runs_of.get(it.device, TYPICAL_RUNS)
        runs = min(timing.max_runs, max(timing.min_runs, typical))
        timed = min(runs * run_s, max(timing.max_seconds, timing.min_runs * run_s))
        overhead = SEGMENT_OVERHEAD_S + overhead_of.get(it.device, 0.0)
        per[it.device] = (
            per.get(it.device, AGENT_START_S) + overhead + timing.warmup * run_s + timed
        )
    return Estimate(max(per.values(), default=0.0), per, source)


def format_duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"
