"""A segment's time on a device, estimated from the segments measured there and the
per-node times: the four approaches of docs/attribution.md, and their leave-one-out test.

- `layer-sum`: the sum of the segment's per-node times (the profiler's kernel times of a
  whole-model run): blind to fusion across a cut and to what a segment run costs beyond
  its kernels.
- `scaled` (an adjustment): layer sums times the device's ratio of measured time to layer
  sum over its measured segments.
- `corrected` (an empirical correction): a per-device fit of measured = rate x layer sum +
  overhead per segment, plus a correction per block between consecutive candidates
  (ridge-regularised towards zero), shared out pro rata by layer sum when a segment
  covers part of a block.
- `shapley`: the blocks' Shapley shares of the measured times (runs not measured there
  valued by `corrected`), summed over the segment (pro rata by layer sum for part of a
  block), plus half the device's typical cut overhead for each inner end.

`corrected` is the `estimated` cost model (CHOSEN): the best of the four on the sessions
of benchmarks/bench_estimates.py.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from backend.solver.attribution import shapley

APPROACHES: tuple[str, ...] = ("layer-sum", "scaled", "corrected", "shapley")
CHOSEN = "corrected"
RIDGE = 1e-3  # block corrections' penalty, times the squared median measured time

Predictor = Callable[[np.ndarray, np.ndarray], np.ndarray]  # (starts, ends) -> ms


@dataclass(frozen=True)
class DeviceTimes:
    """What one device has: per-node times (N,) and its measured segments' medians."""

    device: str
    node_ms: np.ndarray
    measured: Mapping[tuple[int, int], float] = field(default_factory=dict)

    @cached_property
    def prefix(self) -> np.ndarray:
        return np.concatenate([[0.0], np.cumsum(np.asarray(self.node_ms, dtype=float))])

    @property
    def n(self) -> int:
        return len(self.node_ms)

    def layer_sum(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return self.prefix[np.asarray(b)] - self.prefix[np.asarray(a)]

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(starts, ends, medians) of the measured segments, in (start, end) order."""
        keys = sorted(self.measured)
        a = np.array([k[0] for k in keys], dtype=np.int64)
        b = np.array([k[1] for k in keys], dtype=np.int64)
        return a, b, np.array([self.measured[k] for k in keys], dtype=float)

    def without(self, segment: tuple[int, int]) -> DeviceTimes:
        rest = {k: v for k, v in self.measured.items() if k != segment}
        return DeviceTimes(self.device, self.node_ms, rest)


def block_cover(times: DeviceTimes, blocks: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(S, n) share of each block [blocks[k], blocks[k+1]) inside each segment [a, b), by
    layer sum (by node count where a block's layer sum is 0)."""
    lo = np.maximum(blocks[:-1][None, :], np.asarray(a)[:, None])
    hi = np.minimum(blocks[1:][None, :], np.asarray(b)[:, None])
    hi = np.maximum(hi, lo)
    pre = times.prefix
    whole = pre[blocks[1:]] - pre[blocks[:-1]]
    by_time = (pre[hi] - pre[lo]) / np.where(whole > 0, whole, 1.0)
    by_count = (hi - lo) / np.maximum(blocks[1:] - blocks[:-1], 1)
    return np.where(whole[None, :] > 0, by_time, by_count)


def cover_prefix(times: DeviceTimes, blocks: np.ndarray, per_block: np.ndarray) -> np.ndarray:
    """(N+1,) F with F[b] - F[a] = block_cover([a, b)) @ per_block for any a <= b: the
    cover is additive over positions, so pricing every pair costs O(1) each."""
    pos = np.arange(times.n + 1)
    k = np.clip(np.searchsorted(blocks, pos, side="right") - 1, 0, len(blocks) - 2)
    lo, hi = blocks[k], blocks[k + 1]
    pre = times.prefix
    whole = pre[hi] - pre[lo]
    frac = np.where(
        whole > 0, (pre[pos] - pre[lo]) / np.where(whole > 0, whole, 1.0), (pos - lo) / (hi - lo)
    )
    before = np.concatenate([[0.0], np.cumsum(per_block)])
    return before[k] + frac * per_block[k]


def fit(approach: str, times: DeviceTimes, blocks: np.ndarray) -> Predictor:
    """The estimator `approach` fitted to `times` (blocks: candidates with 0 and N); its
    estimates are never below 0 (a fit may extrapolate there)."""
    if approach == "layer-sum":
        return times.layer_sum
    if approach == "scaled":
        predict = _scaled(times)
    elif approach == "corrected":
        predict = _corrected(times, blocks)
    elif approach == "shapley":
        predict = _shapley(times, blocks)
    else:
        raise ValueError(f"unknown estimator {approach!r}")
    return lambda s, e: np.maximum(predict(s, e), 0.0)


def _scaled(times: DeviceTimes) -> Predictor:
    a, b, t = times.arrays()
    total = float(times.layer_sum(a, b).sum())
    scale = float(t.sum()) / total if len(t) and total > 0 else 1.0
    return lambda s, e: scale * times.layer_sum(s, e)


def _corrected(times: DeviceTimes, blocks: np.ndarray) -> Predictor:
    a, b, t = times.arrays()
    if len(t) < 3:  # too few for a rate and an overhead
        return _scaled(times)
    layer = times.layer_sum(a, b)
    (rate, overhead), *_ = np.linalg.lstsq(np.column_stack([layer, np.ones(len(t))]), t, rcond=None)
    residual = t - (rate * layer + overhead)
    cover = block_cover(times, blocks, a, b)
    penalty = RIDGE * max(float(np.median(t)) ** 2, 1e-9) * np.eye(cover.shape[1])
    corr = np.linalg.solve(cover.T @ cover + penalty, cover.T @ residual)

    extra = cover_prefix(times, blocks, corr)

    def predict(s: np.ndarray, e: np.ndarray) -> np.ndarray:
        s, e = np.atleast_1d(s), np.atleast_1d(e)
        return rate * times.layer_sum(s, e) + overhead + extra[e] - extra[s]

    return predict


def run_values(
    times: DeviceTimes, blocks: np.ndarray, fallback: Predictor
) -> tuple[np.ndarray, np.ndarray]:
    """(M, M) value of every run of blocks [blocks[i], blocks[j]): the measured median
    where there is one, else `fallback`'s estimate; and the mask of estimated runs."""
    m = len(blocks)
    i, j = np.triu_indices(m, 1)
    values = np.zeros((m, m))
    values[i, j] = fallback(blocks[i], blocks[j])
    estimated = np.zeros((m, m), dtype=bool)
    estimated[i, j] = True
    index = {int(p): k for k, p in enumerate(blocks)}
    for (a, b), ms in times.measured.items():
        if a in index and b in index:
            values[index[a], index[b]] = ms
            estimated[index[a], index[b]] = False
    return values, estimated


def cut_overheads(values: np.ndarray) -> np.ndarray:
    """(M,) what cutting the whole model at each block boundary adds:
    v[0, c) + v[c, N) - v[0, N) (0 at the two ends)."""
    m = values.shape[0]
    out = np.zeros(m)
    out[1:-1] = values[0, 1:-1] + values[1:-1, m - 1] - values[0, m - 1]
    return out


def _shapley(times: DeviceTimes, blocks: np.ndarray) -> Predictor:
    values, _ = run_values(times, blocks, fit("corrected", times, blocks))
    shares = shapley(values).values
    inner = cut_overheads(values)[1:-1]
    half_cut = float(np.median(inner)) / 2 if len(inner) else 0.0

    share = cover_prefix(times, blocks, shares)

    def predict(s: np.ndarray, e: np.ndarray) -> np.ndarray:
        s, e = np.atleast_1d(s), np.atleast_1d(e)
        ends = (s > 0).astype(float) + (e < times.n).astype(float)
        return share[e] - share[s] + half_cut * ends

    return predict


@dataclass(frozen=True)
class Evaluation:
    """Leave-one-out of one approach on one device: each measured segment estimated from
    all the others; signed errors in % of the measured time."""

    device: str
    approach: str
    errors_pct: np.ndarray

    @property
    def count(self) -> int:
        return len(self.errors_pct)

    @property
    def median_abs_pct(self) -> float:
        return float(np.median(np.abs(self.errors_pct))) if self.count else float("nan")

    @property
    def p90_abs_pct(self) -> float:
        return float(np.percentile(np.abs(self.errors_pct), 90)) if self.count else float("nan")

    @property
    def median_pct(self) -> float:
        """Signed: a device whose estimates miss in one direction shows it here."""
        return float(np.median(self.errors_pct)) if self.count else float("nan")


def leave_one_out(approach: str, times: DeviceTimes, blocks: np.ndarray) -> Evaluation:
    """Estimate every measured segment (with a positive time) from the others."""
    errors = []
    for (a, b), ms in sorted(times.measured.items()):
        if not ms > 0:
            continue
        predict = fit(approach, times.without((a, b)), blocks)
        estimate = float(predict(np.array([a]), np.array([b]))[0])
        errors.append(100.0 * (estimate - ms) / ms)
    return Evaluation(times.device, approach, np.array(errors))
