"""A ranked partition and how it is described: its stages, its transfers, its bottleneck.

One home for what the user sees of a partition (`Partition`, `Stage`, `Transfer`), for
the order partitions are ranked in (`select`: cost, then latency for throughput, then
the cut vector), and for turning candidate rows into those objects (the breakdowns).
Every number here comes from the canonical cost functions of `backend.solver.costs`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from backend.chain import link_name
from backend.errors import OmdpError
from backend.solver.costs import LayerInstance, SegmentInstance, layer_stage_arrays

MAX_K = 100_000  # partitions per ranking: more is never read, and costs time and memory


@dataclass(slots=True)
class Stage:
    """One device's share of a partition: segment [start, end) (empty when start == end)."""

    device: str
    start: int
    end: int
    compute_ms: float  # under the cost model that ranked the partition (0 when empty)
    measured_ms: float | None = None  # None: not measured (or no such table)
    estimated_ms: float | None = None
    memory_bytes: float | None = None  # weights + peak activations, when the instance has them
    stand_in: bool = False  # compute_ms is an estimate standing in for a missing measurement

    @property
    def empty(self) -> bool:
        return self.start == self.end


@dataclass(slots=True)
class Transfer:
    """Data X(position) crossing one link, from device `src` to device `dst`."""

    link: str
    src: str
    dst: str
    position: int
    bytes: float | None  # None for layer-level instances (they give times, not bytes)
    ms: float


@dataclass(slots=True)
class Partition:
    """One ranked partition: which device runs which segment, and what it costs."""

    rank: int
    total_ms: float  # the objective: end-to-end latency, or the bottleneck stage time
    cuts: tuple[int, ...]  # p_1..p_{D-1}
    stages: list[Stage]  # one per device, empty ones included (start == end)
    transfers: list[Transfer]
    objective: str
    cost_model: str
    latency_ms: float  # end-to-end time of one frame
    bottleneck: str  # slowest stage, e.g. "compute phone" or "link glasses-phone"
    bottleneck_ms: float
    measured_total_ms: float | None = None  # objective under each cost model, when known
    estimated_total_ms: float | None = None

    @property
    def has_stand_ins(self) -> bool:
        """Some stage's time is an estimate standing in for a segment not measured yet."""
        return any(s.stand_in for s in self.stages)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (what `omdp solve --json` prints)."""
        return {
            "rank": self.rank,
            "total_ms": self.total_ms,
            "objective": self.objective,
            "cost_model": self.cost_model,
            "cuts": list(self.cuts),
            "latency_ms": self.latency_ms,
            "bottleneck": self.bottleneck,
            "bottleneck_ms": self.bottleneck_ms,
            "measured_total_ms": self.measured_total_ms,
            "estimated_total_ms": self.estimated_total_ms,
            "has_stand_ins": self.has_stand_ins,
            "stages": [
                {
                    "device": s.device,
                    "start": s.start,
                    "end": s.end,
                    "compute_ms": s.compute_ms,
                    "measured_ms": s.measured_ms,
                    "estimated_ms": s.estimated_ms,
                    "memory_bytes": s.memory_bytes,
                    "stand_in": s.stand_in,
                }
                for s in self.stages
            ],
            "transfers": [
                {
                    "link": t.link,
                    "from": t.src,
                    "to": t.dst,
                    "position": t.position,
                    "bytes": t.bytes,
                    "ms": t.ms,
                }
                for t in self.transfers
            ],
        }


Breakdown = tuple[list[Stage], list[Transfer], str, float]  # + bottleneck name and time


def segment_breakdowns(
    inst: SegmentInstance,
    rows: np.ndarray,
    cost_model: str,
    link_ms: np.ndarray,
    tau: np.ndarray,
) -> list[Breakdown]:
    """Stages, transfers (in time order) and the bottleneck of partitions given as
    candidate-index rows: numbers gathered column-wise with numpy, then plain objects."""
    n_dev, m = inst.n_devices, inst.n_candidates
    cols = [rows[:, d] for d in range(n_dev + 1)]
    pos = [inst.candidates[col].tolist() for col in cols]
    measured = inst.segment_ms("measured")
    stand_in = inst.stand_in if inst.has_stand_ins else None
    if stand_in is not None:
        measured = np.where(stand_in, np.nan, measured)
    est = inst.segment_ms("estimated") if inst.estimated_ms is not None else None
    mem = inst.memory.required_bytes if inst.memory is not None else None
    seg = inst.segment_ms(cost_model)
    stage_ms = []  # per stage (devices, then links): time, -inf when the stage is absent
    by_dev = []
    for d, dev in enumerate(inst.devices):
        a, b = cols[d], cols[d + 1]
        comp = seg[d, a, b]
        stage_ms.append(np.where(a < b, comp, -np.inf))
        meas = _none_if_not_finite(measured[d, a, b])
        nothing: list[float | None] = [None] * len(rows)
        estv = nothing if est is None else _none_if_not_finite(est[d, a, b])
        memv = (
            nothing if mem is None else _none_if_not_finite(np.where(a < b, mem[d, a, b], np.nan))
        )
        flagged = [False] * len(rows)
        if stand_in is not None and cost_model == "measured":
            flagged = stand_in[d, a, b].tolist()
        by_dev.append(
            [
                Stage(dev, s, e, c, me, es, mb, f)
                for s, e, c, me, es, mb, f in zip(
                    pos[d], pos[d + 1], comp.tolist(), meas, estv, memv, flagged, strict=True
                )
            ]
        )
    moves_by_row: list[list] = [[] for _ in range(len(rows))]
    main, inp, out = inst.flow_masks
    names, devs = inst.link_names, inst.devices
    cand, cut, tau_l = inst.candidates.tolist(), inst.cut_bytes.tolist(), tau.tolist()
    sink_side = inst.sink if inst.sink is not None else 0
    for lk in range(n_dev - 1):
        col = cols[lk + 1]
        col_l = col.tolist()
        fwd, bwd = (devs[lk], devs[lk + 1]), (devs[lk + 1], devs[lk])
        f_in, f_main, f_out = inp[lk, col], main[lk, col], out[lk, col]
        stage_ms.append(np.where(f_in | f_main | f_out, link_ms[lk, col], -np.inf))
        # input first, hop by hop away from the source; output last, towards the sink
        flows = (
            (f_in, (0, abs(lk + 0.5 - inst.source)), 0),
            (f_main, (1, lk), 1),
            (f_out, (2, -abs(lk + 0.5 - sink_side)), 2),
        )
        for mask, key, kind in flows:
            for r in np.flatnonzero(mask).tolist():
                c = col_l[r]
                i = 0 if kind == 0 else c if kind == 1 else m - 1  # which X(.) moves
                src, dst = fwd if kind == 1 or c == i else bwd  # X(0)/X(N) may go backwards
                t = Transfer(names[lk], src, dst, cand[i], cut[i], tau_l[lk][i])
                moves_by_row[r].append((key, t))
    stage_ms_arr = np.stack(stage_ms, axis=1)
    worst = np.argmax(stage_ms_arr, axis=1).tolist()
    worst_ms = stage_ms_arr.max(axis=1).tolist()
    stage_names = [f"compute {d}" for d in devs] + [f"link {n}" for n in names]
    result = []
    for r, moves in enumerate(moves_by_row):
        moves.sort(key=lambda x: x[0])
        ok = worst_ms[r] > -np.inf
        result.append(
            (
                [stages[r] for stages in by_dev],
                [t for _, t in moves],
                stage_names[worst[r]] if ok else "none",
                worst_ms[r] if ok else 0.0,
            )
        )
    return result


def _none_if_not_finite(values: np.ndarray) -> list[float | None]:
    return [v if math.isfinite(v) else None for v in values.tolist()]


def layer_breakdowns(inst: LayerInstance, rows: np.ndarray) -> list[Breakdown]:
    """Stages, transfers and the bottleneck of partitions given as position rows."""
    computes, moves, holders, sink = layer_stage_arrays(inst, rows)
    comp = [x.tolist() for x in computes]
    mv = [x.tolist() for x in moves]
    hold = [x.tolist() for x in holders]
    snk = sink.tolist()
    devs, n = inst.devices, inst.n_positions
    result = []
    for r, p in enumerate(rows.tolist()):
        stages, transfers, named = [], [], []
        holder = inst.source
        for d, dev in enumerate(devs):
            a, b = p[d], p[d + 1]
            ms = comp[d][r]
            stages.append(Stage(dev, a, b, ms, ms))
            if a < b:
                named.append((f"compute {dev}", ms))
                h = hold[d][r]
                if h != d:
                    link = link_name(devs[h], dev)
                    transfers.append(Transfer(link, devs[h], dev, a, None, mv[d][r]))
                    named.append((f"link {link}", mv[d][r]))
                holder = d
        if inst.sink is not None and holder != inst.sink:
            link = link_name(devs[holder], devs[inst.sink])
            transfers.append(Transfer(link, devs[holder], devs[inst.sink], n, None, snk[r]))
            named.append((f"link {link}", snk[r]))
        name, worst = named[0] if named else ("none", 0.0)
        for nm, ms in named[1:]:
            if ms > worst:
                name, worst = nm, ms
        result.append((stages, transfers, name, worst))
    return result


def select(
    primary: np.ndarray, secondary: np.ndarray | None, tie_cols: tuple[np.ndarray, ...], k: int
) -> np.ndarray:
    """Indices of the k best finite entries by (primary, secondary, cut vector), exactly:
    everything tied with the k-th value takes part in the final sort."""
    if len(primary) > k:
        kth = np.partition(primary, k - 1)[k - 1]
        cand = np.flatnonzero(primary <= kth)
    else:
        cand = np.arange(len(primary))
    cand = cand[np.isfinite(primary[cand])]
    keys = [c[cand] for c in tie_cols]
    if secondary is not None:
        keys.append(secondary[cand])
    keys.append(primary[cand])
    return cand[np.lexsort(keys)[:k]]


def check_k(k: Any) -> None:
    """K is a whole number from 1 to MAX_K."""
    if not isinstance(k, (int, np.integer)) or isinstance(k, bool) or not 1 <= k <= MAX_K:
        raise OmdpError(
            f"K must be a whole number from 1 to {MAX_K:,}, got {k!r}",
            f"ask for at least one partition and at most {MAX_K:,}",
        )


# -- all partitions of an instance (enumeration, for small cut spaces) ----------------------


Step = Callable[[int, np.ndarray, np.ndarray], np.ndarray]  # (d, r_d, r_{d+1}) -> allowed


def _nondecreasing_rows(m: int, n_free: int, allowed: Step) -> np.ndarray:
    """All rows 0 = r_0 <= r_1 <= ... <= r_n_free <= r_last = m-1, in lexicographic order.

    `allowed(d, a, b)` (vectorised) prunes step d (r_d -> r_{d+1}) while expanding, so
    infeasible prefixes never multiply. Returns an (P, n_free + 2) int array.
    """
    rows = np.zeros((1, 1), dtype=np.int32)
    for d in range(n_free):
        lastcol = rows[:, -1]
        counts = m - lastcol
        rep = np.repeat(np.arange(len(rows)), counts)
        starts = np.cumsum(counts) - counts
        newcol = (np.arange(int(counts.sum())) - np.repeat(starts, counts) + lastcol[rep]).astype(
            np.int32
        )
        rows = np.concatenate([rows[rep], newcol[:, None]], axis=1)
        rows = rows[allowed(d, rows[:, -2], rows[:, -1])]
    end = np.full((len(rows), 1), m - 1, dtype=np.int32)
    rows = np.concatenate([rows, end], axis=1)
    return rows[allowed(n_free, rows[:, -2], rows[:, -1])]


def layer_rows(inst: LayerInstance) -> np.ndarray:
    """All partitions of a layer instance as position rows (P, D+1), lexicographic order,
    without runs over a not-allowed layer (a run [a, b) on device d is allowed when no
    forbidden layer lies between: equal forbidden-prefix counts at a and b)."""
    fp = inst.forbidden_prefix
    return _nondecreasing_rows(
        inst.n_positions + 1, inst.n_devices - 1, lambda d, a, b: fp[d][a] == fp[d][b]
    )


def segment_rows(seg: np.ndarray) -> np.ndarray:
    """All partitions with every compute stage finite, as candidate-index rows (P, D+1)."""
    d, m, _ = seg.shape
    finite = np.isfinite(seg)
    return _nondecreasing_rows(m, d - 1, lambda k, a, b: finite[k][a, b])


def count_partitions(n_choices: int, n_devices: int) -> int:
    """Number of cut vectors 0 <= p_1 <= ... <= p_{D-1} <= last over n_choices values."""
    return math.comb(n_choices + n_devices - 2, n_devices - 1)
