"""Shapley values of the blocks between consecutive candidates: who pays for a segment.

The players are the n blocks [c_k, c_{k+1}) between consecutive candidates (0 and N
included). The value of a run of consecutive blocks [a, b) is the time of that segment on
one device (`values[a, b]`); a coalition that is not one run is worth the sum of its
maximal runs (a set of separate blocks can only run as separate segments; see
docs/attribution.md). Then block i's marginal contribution to a coalition S depends only
on the run L of S ending at i-1 and the run R starting at i+1:
v(L ∪ {i} ∪ R) - v(L) - v(R). Over random orderings, the probability that exactly the l
blocks left of i and the r blocks right of i precede it, and the next ones beyond (the
e ∈ {0, 1, 2} of them that exist) follow it, is (l + r)! e! / (l + r + e + 1)!, so the
exact values cost O(n²) per block. Beyond `EXACT_LIMIT` blocks they are sampled over
random orderings, with a stated error bound.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

EXACT_LIMIT = 400  # blocks: exact costs ~n³/6 multiply-adds (10.7M at 400)
DEFAULT_SAMPLES = 2000  # random orderings when sampling
CONFIDENCE_Z = 3.29  # two-sided 99.9% normal quantile: the sampled values' error bound


@dataclass(frozen=True)
class Shares:
    """Each block's Shapley value (ms); exact, or sampled with a per-block error bound."""

    values: np.ndarray  # (n,)
    exact: bool
    samples: int = 0  # random orderings used (0: exact)
    error: np.ndarray | None = None  # (n,) half-width at 99.9% confidence (None: exact)

    @property
    def max_error(self) -> float:
        return 0.0 if self.error is None else float(self.error.max(initial=0.0))


def check_values(values: np.ndarray) -> np.ndarray:
    """(n+1, n+1) run values as floats: finite above the diagonal (a run's value), the
    diagonal 0 (the empty run)."""
    v = np.array(values, dtype=float)
    if v.ndim != 2 or v.shape[0] != v.shape[1] or v.shape[0] < 2:
        raise ValueError(f"run values must be an (n+1) x (n+1) table, got shape {v.shape}")
    upper = np.triu(np.ones(v.shape, dtype=bool), 1)
    if not np.all(np.isfinite(v[upper])):
        raise ValueError("every run of blocks needs a finite value")
    np.fill_diagonal(v, 0.0)
    return v


def shapley_exact(values: np.ndarray) -> np.ndarray:
    """Exact Shapley values of the run game `values` ((n+1, n+1), see the module)."""
    v = check_values(values)
    n = v.shape[0] - 1
    phi = np.zeros(n)
    for i in range(n):
        ls = np.arange(i + 1)[:, None]  # blocks i-l..i-1 precede i
        rs = np.arange(n - i)[None, :]  # blocks i+1..i+r precede i
        start, end = i - ls, i + 1 + rs
        marginal = v[start, end] - v[start, i] - v[i + 1, end]
        ends = (start > 0).astype(int) + (end < n).astype(int)  # blocks that must follow
        phi[i] = float(np.sum(order_weights(ls + rs, ends) * marginal))
    return phi


def order_weights(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    """Probability that, among `before` given blocks, block i and `after` (0..2) others,
    a random ordering puts exactly the given ones before i and the others after it:
    before! after! / (before + after + 1)!."""
    k = before + 1.0
    w = 1.0 / k
    w = np.where(after >= 1, w / (k + 1.0), w)
    return np.where(after >= 2, 2.0 * w / (k + 2.0), w)


def shapley_sampled(values: np.ndarray, samples: int = DEFAULT_SAMPLES, seed: int = 0) -> Shares:
    """Shapley values estimated over `samples` random orderings. Each ordering's marginal
    contributions add up to the full run's value, so the estimates keep efficiency
    exactly; `error` is z * std / sqrt(samples) per block (z for 99.9%)."""
    v = check_values(values)
    n = v.shape[0] - 1
    rng = np.random.default_rng(seed)
    total = np.zeros(n)
    squares = np.zeros(n)
    for _ in range(samples):
        lo = np.arange(n + 1)  # lo[b]: start of the run ending at b (b when none)
        hi = np.arange(n + 1)  # hi[a]: end of the run starting at a (a when none)
        inside = np.zeros(n + 2, dtype=bool)  # shifted by one: inside[i + 1] = block i
        marg = np.empty(n)
        for i in rng.permutation(n).tolist():
            a = int(lo[i]) if inside[i] else i
            b = int(hi[i + 1]) if inside[i + 2] else i + 1
            marg[i] = v[a, b] - v[a, i] - v[i + 1, b]
            inside[i + 1] = True
            hi[a], lo[b] = b, a
        total += marg
        squares += marg * marg
    mean = total / samples
    var = np.maximum(squares / samples - mean * mean, 0.0) * samples / max(samples - 1, 1)
    return Shares(mean, exact=False, samples=samples, error=CONFIDENCE_Z * np.sqrt(var / samples))


def shapley(
    values: np.ndarray,
    *,
    exact_limit: int = EXACT_LIMIT,
    samples: int = DEFAULT_SAMPLES,
    seed: int = 0,
) -> Shares:
    """Exact Shapley values up to `exact_limit` blocks, sampled beyond."""
    n = np.shape(values)[0] - 1
    if n <= exact_limit:
        return Shares(shapley_exact(values), exact=True)
    return shapley_sampled(values, samples, seed)
