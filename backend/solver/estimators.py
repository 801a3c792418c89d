"""A segment's time on a device, estimated from the segments measured there and the
per-node times: the approaches of docs/attribution.md, their leave-one-out test, and the
per-device choice among them (`auto`, the *estimated* cost model).

- `layer-sum`: the sum of the segment's per-node times (the profiler's kernel times of a
  whole-model run): blind to fusion across a cut and to what a segment run costs beyond
  its kernels.
- `scaled` (an adjustment): layer sums times the device's median ratio of measured time
  to layer sum over its measured segments.
- `corrected` (an empirical correction): a per-device fit of measured = rate x layer sum +
  overhead per segment run (relative least squares, Huber-weighted), plus a correction
  per block between consecutive candidates (ridge-regularised towards zero), shared out
  pro rata by layer sum when a segment covers part of a block.
- `shapley`: the blocks' Shapley shares of the measured times (runs not measured there
  valued by `corrected`), summed over the segment (pro rata by layer sum for part of a
  block), plus half the device's typical cut overhead for each inner end.
- `kriging`: a Gaussian-process fit of the measured segments: rate x layer sum + overhead
  per run, plus a deviation that accumulates along the model (a random walk in layer-sum
  time: fusion, layers slower than profiled) and an overhead at each end (a cut costs
  what its measured triples say). Its variances are fitted to the device's own segments
  (restricted maximum likelihood); where nothing is measured it interpolates.

`auto` (CHOSEN) picks, per device, the approach with the lowest leave-one-out median
error on that device's measured segments; its own leave-one-out makes that choice again
without the held-out segment (nested), so the held-out time never shapes its estimate.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from backend.solver.attribution import shapley

APPROACHES: tuple[str, ...] = ("layer-sum", "scaled", "corrected", "kriging", "shapley")
CHOSEN = "auto"  # per device: the approach with the lowest leave-one-out median there
ESTIMATORS: tuple[str, ...] = (*APPROACHES, CHOSEN)
RIDGE = 1e-2  # block corrections' penalty, in median segment times vs relative errors
HUBER = 0.05  # relative residual beyond which `corrected` down-weights a segment
TOLERANCE = 1.1  # `auto` takes a simpler approach whose median is within 10 % of the best
MIN_CHOICE = 4  # measured segments below which `auto` does not compare (uses `scaled`)
KRIGING_LIMIT = 80  # measured segments a kriging fit uses at most (evenly spread)
CHOICE_FOLDS = 30  # held-out segments `auto` compares the approaches on, at most
EVALUATION_FOLDS = 60  # held-out segments a leave-one-out evaluation uses, at most
KRIGING_GRID = np.concatenate([[0.0], 10.0 ** np.arange(-2.0, 7.0)])  # variance ratios

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
    estimates are never below 0 (a fit may extrapolate there) and stay within what the
    device was seen to do (`_held_to_measured`). `auto`: the approach `choose` picks for
    this device."""
    if approach == CHOSEN:
        approach = choose(times, blocks)
    if approach == "layer-sum":
        return times.layer_sum
    if approach == "scaled":
        predict = _scaled(times)
    elif approach == "corrected":
        predict = _corrected(times, blocks)
    elif approach == "shapley":
        predict = _shapley(times, blocks)
    elif approach == "kriging":
        predict = _kriging(times)
    else:
        raise ValueError(f"unknown estimator {approach!r}")
    return _held_to_measured(times, predict)


SEEN_FACTOR = 2.0


def _held_to_measured(times: DeviceTimes, predict: Predictor) -> Predictor:
    """`predict`, never below 0 nor above twice the shortest measured segment around the
    estimated one. A fit that extrapolates far from its data (an estimate hundreds of
    times the whole model was seen) is held to what the device did; the factor 2 leaves
    room for noise and for cut overheads (a segment can be slower than a longer one
    around it). No lower bound from the segments inside it: one timing taken in a busy
    moment would then drag up every estimate around it."""
    a, b, t = times.arrays()

    def held(s: np.ndarray, e: np.ndarray) -> np.ndarray:
        s, e = np.atleast_1d(s), np.atleast_1d(e)
        out = np.maximum(predict(s, e), 0.0)
        if not len(t):
            return out
        for lo in range(0, len(out), 512):  # bounded memory: 512 × measured at a time
            ss, ee = s[lo : lo + 512, None], e[lo : lo + 512, None]
            around = np.where((a <= ss) & (b >= ee), t, np.inf).min(axis=1) * SEEN_FACTOR
            out[lo : lo + 512] = np.minimum(out[lo : lo + 512], around)
        return out

    return held


def _positive(times: DeviceTimes) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The measured segments with a positive time (a 0 says nothing about a rate)."""
    a, b, t = times.arrays()
    keep = t > 0
    return a[keep], b[keep], t[keep]


def _scaled(times: DeviceTimes) -> Predictor:
    """The median of measured / layer sum over the segments with both positive: one
    segment timed at a busy moment cannot move it (a ratio of sums would follow it)."""
    a, b, t = _positive(times)
    layer = times.layer_sum(a, b)
    ratios = t[layer > 0] / layer[layer > 0]
    scale = float(np.median(ratios)) if len(ratios) else 1.0
    return lambda s, e: scale * times.layer_sum(s, e)


def _rate_and_overhead(
    layer: np.ndarray, t: np.ndarray, cover: np.ndarray | None = None
) -> tuple[float, float, np.ndarray]:
    """measured ≈ rate x layer sum + overhead + cover @ corrections, fitted jointly, the
    corrections ridge-regularised towards 0 and left out (0) when there are no more
    segments than unknowns: relative least squares (each segment's
    error counts in % of its time, as the leave-one-out judges it), Huber-weighted so
    one odd timing cannot swing the fit."""
    extra = np.zeros((len(t), 0)) if cover is None else cover
    if extra.shape[1] + 2 >= len(t):  # more unknowns than segments: no corrections
        extra = np.zeros((len(t), 0))
    design = np.column_stack([layer, np.ones(len(t)), extra]) / t[:, None]
    ones = np.ones(len(t))
    penalty = np.zeros(design.shape[1])
    penalty[2:] = RIDGE / float(np.median(t)) ** 2  # corrections in median segment times
    weight = ones
    for _ in range(5):  # iteratively reweighted: Huber weights on relative residuals
        wd = design * weight[:, None]
        coef = np.linalg.lstsq(wd.T @ design + np.diag(penalty), wd.T @ ones, rcond=None)[0]
        rel = np.abs(ones - design @ coef)
        weight = np.where(rel > HUBER, HUBER / np.maximum(rel, 1e-12), 1.0)
    corrections = np.zeros(0 if cover is None else cover.shape[1])
    corrections[: len(coef) - 2] = coef[2:]
    return float(coef[0]), float(coef[1]), corrections


def _determined(layer: np.ndarray, t: np.ndarray) -> bool:
    """Enough segments, with layer sums that vary, to fit a rate and an overhead."""
    return len(t) >= 3 and np.ptp(layer) > 1e-9 * max(float(layer.max()), 1e-12)


def _corrected(times: DeviceTimes, blocks: np.ndarray) -> Predictor:
    """Falls back to `scaled` when the rate is not determined (fewer than three
    segments, layer sums that do not vary) or comes out non-positive."""
    a, b, t = _positive(times)
    layer = times.layer_sum(a, b)
    if not _determined(layer, t):
        return _scaled(times)
    rate, overhead, corr = _rate_and_overhead(layer, t, block_cover(times, blocks, a, b))
    if not (np.isfinite(rate) and rate > 0 and np.all(np.isfinite(corr))):
        return _scaled(times)

    extra = cover_prefix(times, blocks, corr)

    def predict(s: np.ndarray, e: np.ndarray) -> np.ndarray:
        return rate * times.layer_sum(s, e) + overhead + extra[e] - extra[s]

    return predict


def _overlap(xa: np.ndarray, xb: np.ndarray, ya: np.ndarray, yb: np.ndarray) -> np.ndarray:
    """(len(x), len(y)) length of [xa, xb) ∩ [ya, yb)."""
    hi = np.minimum(xb[:, None], yb[None, :])
    lo = np.maximum(xa[:, None], ya[None, :])
    return np.maximum(hi - lo, 0.0)


def _kriging(times: DeviceTimes) -> Predictor:
    """Segment [a, b) = rate·(x_b − x_a) + overhead + W(b) − W(a) + e(b) + s(a) + noise,
    x the cumulative layer sum (node index where per-node times are all 0). Rate and
    overhead: `corrected`'s global fit. W is a random walk in x (covariance of two
    segments: σ_W² × their overlap in x), e and s independent per position (σ_o²), the
    noise relative to the time (σ_n² t²). The two variance ratios to the noise are the
    grid point of highest likelihood of the residuals (the noise scale profiled out);
    the estimate adds the residuals' best linear prediction (simple kriging). Falls back
    to `scaled` where the rate is not determined."""
    a, b, t = _positive(times)
    keep = evenly(len(t), KRIGING_LIMIT)
    a, b, t = a[keep], b[keep], t[keep]
    x = times.prefix
    if not x[-1] > 0:
        x = np.arange(times.n + 1, dtype=float)
    layer = x[b] - x[a]
    if not _determined(layer, t):
        return _scaled(times)
    rate, overhead, _ = _rate_and_overhead(layer, t)
    if not (np.isfinite(rate) and rate > 0):
        return _scaled(times)
    span = float(x[-1])
    unit = float(np.median(t))
    resid = (t - rate * layer - overhead) / unit
    k_walk = _overlap(x[a], x[b], x[a], x[b]) / span
    k_ends = (a[:, None] == a[None, :]).astype(float) + (b[:, None] == b[None, :])
    noise = np.diag((t / unit) ** 2)
    tw, to = np.meshgrid(KRIGING_GRID, KRIGING_GRID, indexing="ij")
    tw, to = tw.ravel(), to.ravel()
    cov = tw[:, None, None] * k_walk + to[:, None, None] * k_ends + noise
    chol = np.linalg.cholesky(cov)  # (G, n, n): positive definite (noise > 0)
    alphas = _cho_solve(chol, resid[:, None])[..., 0]  # (G, n)
    sigma2 = np.maximum(alphas @ resid, 1e-300) / len(t)  # the noise scale, profiled out
    logdet = 2.0 * np.log(np.diagonal(chol, axis1=1, axis2=2)).sum(axis=1)
    loglik = -0.5 * (len(t) * np.log(sigma2) + logdet)
    g = int(np.argmax(np.where(np.isfinite(loglik), loglik, -np.inf)))
    alpha, w, o = alphas[g], tw[g], to[g]
    xa, xb = x[a], x[b]

    def predict(s: np.ndarray, e: np.ndarray) -> np.ndarray:
        out = rate * (x[e] - x[s]) + overhead
        for lo in range(0, len(s), 4096):  # bounded memory for long query lists
            qs, qe = s[lo : lo + 4096], e[lo : lo + 4096]
            k = w * _overlap(x[qs], x[qe], xa, xb) / span
            k += o * ((qs[:, None] == a[None, :]).astype(float) + (qe[:, None] == b[None, :]))
            out[lo : lo + 4096] += unit * (k @ alpha)
        return out

    return predict


def _cho_solve(chol: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    """(G, n, k) solutions of (L Lᵀ) z = rhs for each of the G Cholesky factors L."""
    lower = np.linalg.solve(chol, np.broadcast_to(rhs, (chol.shape[0], *rhs.shape)))
    return np.linalg.solve(np.swapaxes(chol, 1, 2), lower)


_CHOICES: OrderedDict[bytes, str] = OrderedDict()  # recent choices (pricing asks often)


def choose(times: DeviceTimes, blocks: np.ndarray) -> str:
    """The approach with the lowest leave-one-out median |error| on this device's own
    measured segments (on CHOICE_FOLDS of them at most), or a simpler one within
    TOLERANCE of it; `scaled` with fewer than MIN_CHOICE segments to compare on."""
    if len(_positive(times)[2]) < MIN_CHOICE:
        return "scaled"
    key = b"".join(  # everything a fit sees (zero times too: `shapley` uses them)
        np.ascontiguousarray(v).tobytes()
        for v in (*times.arrays(), np.asarray(times.node_ms, float), np.asarray(blocks, np.int64))
    )
    if key in _CHOICES:
        _CHOICES.move_to_end(key)
        return _CHOICES[key]
    scores = [leave_one_out(x, times, blocks, CHOICE_FOLDS).median_abs_pct for x in APPROACHES]
    finite = np.where(np.isfinite(scores), scores, np.inf)
    best = float(finite.min())
    # the simplest approach (APPROACHES is in order of complexity) within TOLERANCE of the
    # best: a few held-out segments cannot tell close scores apart, a simpler fit varies less
    picked = next(
        (x for x, v in zip(APPROACHES, finite, strict=True) if v <= best * TOLERANCE + 1e-12),
        "scaled",
    )
    _CHOICES[key] = picked
    if len(_CHOICES) > 64:
        _CHOICES.popitem(last=False)
    return picked


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
    all the others; signed errors in % of the measured time. For `auto`, `picked` is the
    approach it uses on all the segments and `picks` how often each was chosen without
    the held-out segment."""

    device: str
    approach: str
    errors_pct: np.ndarray
    picked: str | None = None
    picks: Mapping[str, int] = field(default_factory=dict)

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


def evenly(count: int, limit: int) -> np.ndarray:
    """Indices of at most `limit` of `count` items, evenly spread (all when they fit):
    bounds the cost of a fit or a leave-one-out on hundreds of measured segments."""
    if count <= limit:
        return np.arange(count)
    return np.unique(np.linspace(0, count - 1, limit).round().astype(int))


def spread(keys: list[tuple[int, int]], limit: int) -> list[tuple[int, int]]:
    """At most `limit` of `keys` (sorted), evenly spread."""
    return [keys[i] for i in evenly(len(keys), limit)]


def leave_one_out(
    approach: str, times: DeviceTimes, blocks: np.ndarray, limit: int = EVALUATION_FOLDS
) -> Evaluation:
    """Estimate measured segments (with a positive time; at most `limit`, evenly spread)
    each from all the others. The fit, and for `auto` the choice of approach too, sees
    only the others."""
    errors = []
    picks: dict[str, int] = {}
    held = spread(sorted(k for k, ms in times.measured.items() if ms > 0), limit)
    for a, b in held:
        ms = times.measured[(a, b)]
        rest = times.without((a, b))
        used = approach
        if approach == CHOSEN:
            used = choose(rest, blocks)
            picks[used] = picks.get(used, 0) + 1
        estimate = float(fit(used, rest, blocks)(np.array([a]), np.array([b]))[0])
        errors.append(100.0 * (estimate - ms) / ms)
    picked = choose(times, blocks) if approach == CHOSEN else None
    return Evaluation(times.device, approach, np.array(errors), picked, picks)
