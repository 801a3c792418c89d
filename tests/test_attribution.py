"""Shapley values of run games: the closed form against the definition, the axioms, and
the sampled values against the exact ones within their stated bound."""

from __future__ import annotations

import math

import numpy as np
import pytest

from backend.solver.attribution import shapley, shapley_exact, shapley_sampled


def brute_force(values: np.ndarray) -> np.ndarray:
    """The definition over all 2^n coalitions, a coalition worth the sum of its runs."""
    n = values.shape[0] - 1

    def worth(mask: int) -> float:
        out, i = 0.0, 0
        while i < n:
            if mask >> i & 1:
                j = i
                while j < n and mask >> j & 1:
                    j += 1
                out += values[i, j]
                i = j
            else:
                i += 1
        return out

    phi = np.zeros(n)
    for mask in range(1 << n):
        size = bin(mask).count("1")
        base = worth(mask)
        for i in range(n):
            if not mask >> i & 1:
                weight = math.factorial(size) * math.factorial(n - size - 1) / math.factorial(n)
                phi[i] += weight * (worth(mask | 1 << i) - base)
    return phi


def random_game(n: int, seed: int) -> np.ndarray:
    """Run values with fusion savings and per-run overheads: nothing additive about it."""
    rng = np.random.default_rng(seed)
    v = np.zeros((n + 1, n + 1))
    for a in range(n):
        for b in range(a + 1, n + 1):
            v[a, b] = rng.uniform(0.5, 3.0) * (b - a) + rng.uniform(0, 2)
    return v


@pytest.mark.parametrize("n", [1, 2, 3, 5, 8])
def test_closed_form_matches_the_definition(n):
    v = random_game(n, seed=n)
    assert np.allclose(shapley_exact(v), brute_force(v), atol=1e-9)


def test_efficiency_shares_add_up_to_the_whole_run():
    for n in (1, 4, 30):
        v = random_game(n, seed=100 + n)
        assert shapley_exact(v).sum() == pytest.approx(v[0, n], rel=1e-12)
        assert shapley_sampled(v, samples=50).values.sum() == pytest.approx(v[0, n], rel=1e-12)


def test_symmetry_mirrored_game_gives_mirrored_shares():
    n = 7
    v = random_game(n, seed=3)
    for a in range(n):  # make v[a, b] == v[n - b, n - a]
        for b in range(a + 1, n + 1):
            if (n - b, n - a) < (a, b):
                v[a, b] = v[n - b, n - a]
    phi = shapley_exact(v)
    assert np.allclose(phi, phi[::-1])
    assert not np.allclose(phi, phi[0])  # the game is not trivially uniform


def test_symmetry_two_blocks_of_equal_worth_share_equally():
    v = np.array([[0.0, 3.0, 5.0], [0.0, 0.0, 3.0], [0.0, 0.0, 0.0]])
    assert np.allclose(shapley_exact(v), [2.5, 2.5])


def test_null_player_gets_zero():
    """Block 3 adds nothing to any coalition: a run through it is worth its two sides."""
    n, null = 7, 3
    g = random_game(n, seed=11)
    v = np.zeros((n + 1, n + 1))
    for a in range(n):
        for b in range(a + 1, n + 1):
            left = g[a, min(b, null)] if a < null else 0.0
            right = g[max(a, null + 1), b] if b > null + 1 else 0.0
            v[a, b] = left + right
    phi = shapley_exact(v)
    assert phi[null] == pytest.approx(0.0, abs=1e-12)
    assert np.allclose(phi, brute_force(v))
    assert np.all(np.abs(np.delete(phi, null)) > 1e-3)


def test_sampled_values_agree_with_exact_within_the_stated_bound():
    v = random_game(12, seed=5)
    exact = shapley_exact(v)
    sampled = shapley_sampled(v, samples=3000, seed=1)
    assert sampled.error is not None and not sampled.exact
    assert np.all(np.abs(sampled.values - exact) <= sampled.error)
    # the bound is informative: a few percent of the shares, not a blanket
    assert sampled.max_error < 0.2 * np.abs(exact).mean()


def test_shapley_switches_to_sampling_beyond_the_exact_limit():
    v = random_game(6, seed=2)
    assert shapley(v).exact
    big = shapley(v, exact_limit=5, samples=500)
    assert not big.exact and big.samples == 500
    assert np.all(np.abs(big.values - shapley_exact(v)) <= big.error)


def test_missing_run_value_is_refused():
    v = random_game(3, seed=0)
    v[1, 3] = np.nan
    with pytest.raises(ValueError, match="finite value"):
        shapley_exact(v)
