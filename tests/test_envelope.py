"""Exact envelopes against brute force on random affine families."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from backend.solver.envelope import Piece, cells_of, envelope_1d, envelope_2d, polygon_area


def family(rng: np.random.Generator, n: int, dims: int) -> list[Piece]:
    return [
        Piece(i, float(rng.uniform(0, 100)), tuple(float(x) for x in rng.uniform(0, 50, dims)))
        for i in range(n)
    ]


def oracle_of(pieces: list[Piece], calls: list[int] | None = None):
    def best(u):
        if calls is not None:
            calls.append(1)
        return min(pieces, key=lambda p: (p.value(u), p.key))

    return best


@pytest.mark.parametrize("seed", range(40))
def test_1d_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    pieces = family(rng, int(rng.integers(1, 30)), 1)
    lo, hi = 0.001, float(rng.uniform(0.5, 3))
    intervals = envelope_1d(oracle_of(pieces), lo, hi)
    assert intervals[0].lo == lo and intervals[-1].hi == hi
    assert all(a.hi == b.lo for a, b in itertools.pairwise(intervals))
    keys = [iv.piece.key for iv in intervals]
    assert len(keys) == len(set(keys)), "a piece appears in two disconnected intervals"
    for x in np.linspace(lo, hi, 2001):
        true = min(p.value((x,)) for p in pieces)
        (iv,) = [iv for iv in intervals if iv.lo <= x <= iv.hi][:1]
        near = min(abs(x - iv.lo), abs(x - iv.hi))
        if near > 1e-9 * max(1, abs(x)):
            assert iv.piece.value((x,)) == pytest.approx(true, rel=1e-9, abs=1e-9)


@pytest.mark.parametrize("seed", range(30))
def test_2d_matches_brute_force(seed):
    rng = np.random.default_rng(100 + seed)
    pieces = family(rng, int(rng.integers(1, 40)), 2)
    box = [(0.001, 0.001), (1.0, 0.001), (1.0, 2.0), (0.001, 2.0)]
    calls: list[int] = []
    cells = envelope_2d(oracle_of(pieces, calls), box)
    total = sum(polygon_area(c.polygon) for c in cells)
    assert total == pytest.approx(polygon_area(box), rel=1e-9)
    truth = cells_of(pieces, box)  # the envelope of the whole family, computed directly
    assert {c.piece.key for c in cells} == {c.piece.key for c in truth}
    for x in np.linspace(0.001, 1.0, 61):
        for y in np.linspace(0.001, 2.0, 61):
            true = min(p.value((x, y)) for p in pieces)
            owners = [c for c in cells if _inside(c.polygon, (x, y))]
            assert owners, (x, y)
            assert owners[0].piece.value((x, y)) == pytest.approx(true, rel=1e-9, abs=1e-9)
    assert len(calls) < 20 * max(1, len(truth)) + 10


def _inside(poly, pt, eps=1e-12):
    sign = 0
    for p, q in zip(poly, poly[1:] + poly[:1], strict=True):
        cross = (q[0] - p[0]) * (pt[1] - p[1]) - (q[1] - p[1]) * (pt[0] - p[0])
        if abs(cross) <= eps:
            continue
        s = 1 if cross > 0 else -1
        if sign and s != sign:
            return False
        sign = s
    return True
