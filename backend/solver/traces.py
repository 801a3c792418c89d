"""Bandwidth traces: load recorded link throughput, replay it, pick a partition that holds up.

A trace file has one sample per line, `<seconds> <Mbit/s>`, separated by spaces or a tab
(the Lumos5G traces use both); blank lines and `#` comments are skipped. A sample holds
until the next one (step-wise); the last one holds for the trace's median step. A sample
of 0 Mbit/s means the link is down for that step: transfers over it take forever (inf),
so partitions that need the link are simply not usable then.

Several traces (one per link, named "a-b" by device names) are aligned on absolute time:
the timeline covers the span where every trace has a value (latest start to earliest
end), with a step at every time stamp of any trace (the union), each link holding its last
value. Links without a trace keep the instance's bandwidth.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from backend.errors import OmdpError
from backend.files import read_text
from backend.solver.costs import SegmentInstance, link_stage_ms, segment_costs
from backend.solver.segment_ranker import Ranker

P95 = 0.95
MAX_TRACE_BYTES = 16 << 20  # ~1M samples: days of one-second samples
MAX_TIME_S = 1e12  # time stamps are seconds; beyond this they are a unit mistake
MAX_REPLAY_CELLS = 1 << 24  # steps x partitions (and steps x links x candidates) replayed


def _show(text: str, width: int = 60) -> str:
    """A line of the file for a one-line message: quoted, escaped, long lines cut."""
    shown = repr(text)
    return shown if len(shown) <= width else shown[: width - 1] + "…"


@dataclass(frozen=True, eq=False)
class Trace:
    """One link's recorded bandwidth: sample times (s, strictly increasing) and Mbit/s."""

    name: str
    times_s: np.ndarray
    mbps: np.ndarray

    @property
    def step_s(self) -> float:
        """How long the last sample holds: the median step (1 s for a single sample)."""
        if len(self.times_s) < 2:
            return 1.0
        return float(np.median(np.diff(self.times_s)))

    @property
    def end_s(self) -> float:
        return float(self.times_s[-1]) + self.step_s

    def at(self, t: np.ndarray) -> np.ndarray:
        """Bandwidth held at times t (each t must lie within the trace)."""
        i = np.searchsorted(self.times_s, t, side="right") - 1
        return self.mbps[np.clip(i, 0, len(self.mbps) - 1)]


def parse_trace(text: str, source: str = "<trace>", name: str | None = None) -> Trace:
    """Parse trace text; every problem names `source:line` and how to fix it.

    Times must not go back; samples sharing a time stamp are averaged.
    """
    times: list[float] = []
    values: list[float] = []
    counts: list[int] = []
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        where = f"{source}:{lineno}"
        parts = line.split()
        try:
            if len(parts) != 2:
                raise ValueError
            t, v = float(parts[0]), float(parts[1])
        except ValueError:
            raise OmdpError(
                f"{where}: expected '<seconds> <Mbit/s>', got {_show(raw.strip())}",
                "write two numbers per line, separated by a space or a tab",
            ) from None
        if not (math.isfinite(t) and math.isfinite(v)):
            raise OmdpError(f"{where}: {_show(raw.strip())} is not finite", "use plain numbers")
        if t < 0 or v < 0:
            raise OmdpError(
                f"{where}: negative value in {_show(raw.strip())}",
                "times and bandwidths must be >= 0 (0 Mbit/s = link down)",
            )
        if t >= MAX_TIME_S:
            raise OmdpError(
                f"{where}: time {t:g} s is beyond {MAX_TIME_S:g} s",
                "give times in seconds from the start of the recording",
            )
        if times and t < times[-1]:
            raise OmdpError(
                f"{where}: time {t:g} s goes back (previous sample at {times[-1]:g} s)",
                "sort the samples by time",
            )
        if times and t == times[-1]:  # two samples in one time stamp (real traces have it)
            counts[-1] += 1
            values[-1] += (v - values[-1]) / counts[-1]  # their mean
            continue
        times.append(t)
        values.append(v)
        counts.append(1)
    if not times:
        raise OmdpError(f"{source}: the trace has no samples", "one '<seconds> <Mbit/s>' per line")
    label = name if name is not None else Path(source).stem
    return Trace(label, np.array(times), np.array(values))


def load_trace(path: str | Path, name: str | None = None) -> Trace:
    """Read a trace file (see `parse_trace`)."""
    p = Path(path)
    text = read_text(
        p, "trace file", MAX_TRACE_BYTES, "give a text file, one '<seconds> <Mbit/s>' per line"
    )
    return parse_trace(text, str(p), name)


@dataclass(frozen=True, eq=False)
class Timeline:
    """Aligned link conditions: step t starts at start_s[t], lasts duration_s[t], and each
    link l has bandwidth_mbps[t, l]."""

    link_names: tuple[str, ...]
    start_s: np.ndarray  # (T,)
    duration_s: np.ndarray  # (T,)
    bandwidth_mbps: np.ndarray  # (T, L)

    def __len__(self) -> int:
        return len(self.start_s)


def align_traces(
    traces: Mapping[str, Trace], link_names: Sequence[str], fixed_mbps: Sequence[float]
) -> Timeline:
    """Align one trace per link (keys are link names) on the union of their time stamps
    within the span they all cover; links without a trace hold `fixed_mbps`."""
    names = tuple(link_names)
    if not traces:
        raise OmdpError("no bandwidth trace given", "give a trace for at least one link")
    for name in traces:
        if name not in names:
            raise OmdpError(
                f"unknown link {name!r} for a trace", f"valid links: {', '.join(names) or '(none)'}"
            )
    start = max(float(tr.times_s[0]) for tr in traces.values())
    end = min(tr.end_s for tr in traces.values())
    if not start < end:
        raise OmdpError(
            "the traces do not overlap in time",
            "use traces that cover a common time span (times are absolute seconds)",
        )
    stamps = np.unique(np.concatenate([tr.times_s for tr in traces.values()]))
    points = np.unique(np.concatenate([[start], stamps[(stamps >= start) & (stamps < end)]]))
    durations = np.diff(np.append(points, end))
    bw = np.tile(np.asarray(fixed_mbps, dtype=float), (len(points), 1))
    for name, tr in traces.items():
        bw[:, names.index(name)] = tr.at(points)
    return Timeline(names, points, durations, bw)


@dataclass(frozen=True)
class RobustChoice:
    """A partition judged over the whole trace (time-weighted)."""

    cuts: tuple[int, ...]
    segments: tuple[tuple[str, int, int], ...]  # (device, start, end) per device
    mean_ms: float
    p95_ms: float  # smallest cost c with cost <= c for >= 95 % of the time
    mean_regret_ms: float  # vs the best partition of each step
    max_regret_ms: float
    share_optimal: float  # share of the time it is the best partition


@dataclass(frozen=True, eq=False)
class TraceAnalysis:
    """Per-step optimum, how often each partition is optimal, and the robust choices."""

    timeline: Timeline
    objective: str
    optimal_ms: np.ndarray  # (T,) best cost per step (inf: nothing usable)
    optimal_cuts: list[tuple[int, ...] | None]  # best partition per step
    shares: list[tuple[tuple[int, ...], float]]  # (cuts, share of time optimal), largest first
    best_mean: RobustChoice | None
    best_p95: RobustChoice | None
    n_candidates: int  # partitions compared for the robust choices
    exhaustive: bool  # all feasible partitions compared (else per-step top-k + best mean)


def analyse_trace(
    ranker: Ranker | SegmentInstance,
    timeline: Timeline,
    *,
    latency_ms: Sequence[float] | Mapping[str, float] | None = None,
    candidate_k: int = 5,
) -> TraceAnalysis:
    """Replay a timeline over a segment-level instance.

    The per-step optimum comes from the re-ranking object (`Ranker.rank_link_ms`, k=1).
    Robust choices compare every feasible partition when the ranker enumerates them
    (exact); otherwise the union of each step's top `candidate_k` and the top
    `candidate_k` by mean link time (for latency the mean cost is linear in the link
    times, so the best-mean partition is exact there too).
    """
    if isinstance(ranker, SegmentInstance):
        ranker = Ranker(ranker)
    inst = ranker.instance
    if tuple(timeline.link_names) != inst.link_names:
        raise OmdpError(
            f"timeline links {list(timeline.link_names)} do not match the instance",
            f"align the traces on links {list(inst.link_names)}",
        )
    n_rows = len(ranker.rows) if ranker.rows is not None else 0
    _check_replay_size(len(timeline), max(n_rows, (inst.n_devices - 1) * inst.n_candidates))
    link_stack = np.stack(
        [link_stage_ms(inst, bw, latency_ms)[0] for bw in timeline.bandwidth_mbps]
    )  # (T, L, M)
    steps = len(timeline)
    opt = np.full(steps, np.inf)
    opt_rows: list[np.ndarray | None] = [None] * steps
    for t in range(steps):
        best = ranker.rank_link_ms(link_stack[t], 1)
        if len(best):
            opt[t] = best.total_ms[0]
            opt_rows[t] = best.rows[0]
    rows, costs = _candidate_costs(ranker, link_stack, candidate_k, opt_rows)
    weights = timeline.duration_s
    cuts_of = inst.candidates
    opt_cuts = [None if r is None else tuple(cuts_of[r[1:-1]].tolist()) for r in opt_rows]
    share: dict[tuple[int, ...], float] = {}
    total_time = float(weights.sum())
    for c, w in zip(opt_cuts, weights.tolist(), strict=True):
        if c is not None:
            share[c] = share.get(c, 0.0) + w / total_time
    shares = sorted(share.items(), key=lambda x: (-x[1], x[0]))
    best_mean = best_p95 = None
    if len(rows):
        mean = _weighted_mean(costs, weights)
        p95 = _weighted_quantile(costs, weights, P95)
        lex = tuple(rows[:, c] for c in range(rows.shape[1] - 2, 0, -1))
        i_mean = int(np.lexsort((*lex, p95, mean))[0])
        i_p95 = int(np.lexsort((*lex, mean, p95))[0])
        best_mean = _choice(inst, rows[i_mean], costs[:, i_mean], opt, weights, share)
        best_p95 = _choice(inst, rows[i_p95], costs[:, i_p95], opt, weights, share)
    return TraceAnalysis(
        timeline=timeline,
        objective=ranker.objective,
        optimal_ms=opt,
        optimal_cuts=opt_cuts,
        shares=shares,
        best_mean=best_mean,
        best_p95=best_p95,
        n_candidates=len(rows),
        exhaustive=ranker.enumerated,
    )


def _check_replay_size(steps: int, width: int) -> None:
    """Refuse, before allocating, a replay of more than MAX_REPLAY_CELLS steps x partitions
    (or steps x link-cut pairs), saying how many steps would fit."""
    if steps * width > MAX_REPLAY_CELLS:
        raise OmdpError(
            f"the traces give {steps:,} steps to replay over {width:,} partitions or link cuts; "
            f"the limit is {MAX_REPLAY_CELLS:,} steps x partitions "
            f"({MAX_REPLAY_CELLS // max(width, 1):,} steps here)",
            "resample the traces to coarser steps, or replay a shorter span",
        )


def _candidate_costs(
    ranker: Ranker, link_stack: np.ndarray, k: int, opt_rows: list[np.ndarray | None]
) -> tuple[np.ndarray, np.ndarray]:
    """Candidate rows (P, D+1) and their objective per step (T, P)."""
    pick = 0 if ranker.objective == "latency" else 1
    if ranker.rows is not None:
        rows = ranker.rows
        costs = np.stack([ranker.costs(f)[pick] for f in link_stack])
    else:
        found = {tuple(r.tolist()) for r in opt_rows if r is not None}
        for f in [*link_stack, link_stack.mean(axis=0)]:
            found.update(tuple(r) for r in ranker.rank_link_ms(f, k).rows.tolist())
        rows = np.array(sorted(found), dtype=np.int64).reshape(-1, ranker.instance.n_devices + 1)
        _check_replay_size(len(link_stack), len(rows))
        costs = np.stack([segment_costs(ranker.seg, f, rows)[pick] for f in link_stack])
    usable = np.isfinite(costs).any(axis=0)
    return rows[usable], costs[:, usable]


def _weighted_mean(costs: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Time-weighted mean per column; inf if the partition is unusable at any step."""
    with np.errstate(invalid="ignore"):
        return (costs * w[:, None]).sum(axis=0) / w.sum()


def _weighted_quantile(costs: np.ndarray, w: np.ndarray, q: float) -> np.ndarray:
    """Per column: the smallest cost c such that cost <= c for at least q of the time."""
    order = np.argsort(costs, axis=0, kind="stable")
    sorted_costs = np.take_along_axis(costs, order, axis=0)
    cum = np.cumsum(w[order], axis=0)
    idx = np.argmax(cum >= q * w.sum() * (1 - 1e-12), axis=0)
    return sorted_costs[idx, np.arange(costs.shape[1])]


def _choice(
    inst: SegmentInstance,
    row: np.ndarray,
    cost: np.ndarray,
    opt: np.ndarray,
    w: np.ndarray,
    share: dict[tuple[int, ...], float],
) -> RobustChoice:
    pos = inst.candidates[row].tolist()
    cuts = tuple(pos[1:-1])
    with np.errstate(invalid="ignore"):
        regret = np.where(cost == opt, 0.0, cost - opt)
    return RobustChoice(
        cuts=cuts,
        segments=tuple((dev, pos[d], pos[d + 1]) for d, dev in enumerate(inst.devices)),
        mean_ms=float(_weighted_mean(cost[:, None], w)[0]),
        p95_ms=float(_weighted_quantile(cost[:, None], w, P95)[0]),
        mean_regret_ms=float(_weighted_mean(regret[:, None], w)[0]),
        max_regret_ms=float(regret.max()),
        share_optimal=share.get(cuts, 0.0),
    )
