"""Exact lower envelopes of affine cost functions, found with an exact oracle.

Every partition's latency is affine in the inverse bandwidths u = 1/bw of the links:
cost(u) = c + Σ a_i·u_i. The best partition at u is the minimum over partitions, a concave
piecewise-affine function whose pieces tile u-space into convex cells. We never enumerate
partitions: an oracle (the ranker, K = 1) names the best one at a point, and the envelope
is grown from the pieces the oracle returns until it is proven complete:

- one varying link: Eisner–Severance bisection — between two points with different
  winners, solve at their lines' crossing; if nothing beats them there, the crossing is a
  breakpoint, else recurse on both sides with the new winner;
- two varying links: keep the cells of the pieces found so far (a convex polygon each);
  solve at every cell vertex; if the oracle beats the envelope anywhere, add that piece and
  repeat. When every vertex checks out the envelope is exact, because on each cell the
  true minimum is concave, agrees with the (affine) envelope at the cell's vertices, and so
  is ≥ it inside, while it is ≤ it everywhere by construction.

See docs/map.md.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass

from backend.errors import OmdpError

Point = tuple[float, ...]


@dataclass(frozen=True)
class Piece:
    """One candidate's affine cost: value(u) = const + Σ slope_i·u_i."""

    key: Hashable
    const: float
    slope: tuple[float, ...]

    def value(self, u: Sequence[float]) -> float:
        return self.const + sum(s * x for s, x in zip(self.slope, u, strict=True))


Oracle = Callable[[Point], Piece]


def _tol(*values: float) -> float:
    return 1e-9 * max(1.0, *(abs(v) for v in values))


@dataclass(frozen=True)
class Interval:
    """[lo, hi] in u where `piece` is optimal."""

    lo: float
    hi: float
    piece: Piece


def envelope_1d(oracle: Oracle, lo: float, hi: float) -> list[Interval]:
    """The exact breakpoints of min over pieces on [lo, hi] (u-coordinates, lo < hi)."""
    left, right = oracle((lo,)), oracle((hi,))
    breaks: list[tuple[float, Piece]] = []  # (u where `piece` starts, piece)

    def split(a: float, pa: Piece, b: float, pb: Piece, depth: int = 0) -> None:
        if pa.key == pb.key or depth > 200:
            return
        ds = pa.slope[0] - pb.slope[0]
        if abs(ds) <= _tol(pa.slope[0], pb.slope[0]):  # parallel: pb never wins inside
            return
        x = (pb.const - pa.const) / ds
        x = min(max(x, a), b)
        best = oracle((x,))
        if best.value((x,)) >= pa.value((x,)) - _tol(pa.value((x,))) or best.key in (
            pa.key,
            pb.key,
        ):
            breaks.append((x, pb))
            return
        split(a, pa, x, best, depth + 1)
        split(x, best, b, pb, depth + 1)

    split(lo, left, hi, right)
    breaks.sort(key=lambda t: t[0])
    out: list[Interval] = []
    start, current = lo, left
    for x, piece in breaks:
        if x > start or not out:
            out.append(Interval(start, x, current))
        start, current = x, piece
    out.append(Interval(start, hi, current))
    return [iv for iv in out if iv.hi > iv.lo] or [Interval(lo, hi, left)]


Polygon = list[tuple[float, float]]


def clip(poly: Polygon, a: float, b: float, c: float) -> Polygon:
    """The part of convex `poly` where a·x + b·y + c ≤ 0 (Sutherland–Hodgman, one edge)."""
    out: Polygon = []
    n = len(poly)
    for i in range(n):
        p, q = poly[i], poly[(i + 1) % n]
        fp, fq = a * p[0] + b * p[1] + c, a * q[0] + b * q[1] + c
        if fp <= 0:
            out.append(p)
        if (fp < 0 < fq) or (fq < 0 < fp):
            t = fp / (fp - fq)
            out.append((p[0] + t * (q[0] - p[0]), p[1] + t * (q[1] - p[1])))
    return out


def polygon_area(poly: Polygon) -> float:
    return 0.5 * abs(
        sum(p[0] * q[1] - q[0] * p[1] for p, q in zip(poly, poly[1:] + poly[:1], strict=True))
    )


@dataclass(frozen=True)
class Cell:
    """The convex region of u-space (a polygon) where `piece` is optimal."""

    polygon: Polygon
    piece: Piece


def cells_of(pieces: Sequence[Piece], box: Polygon) -> list[Cell]:
    """Each piece's cell in the lower envelope of `pieces`, clipped to `box` (empty dropped).

    Ties between identical planes go to the earlier piece, so cells never overlap."""
    cells = []
    for i, p in enumerate(pieces):
        poly = list(box)
        for j, q in enumerate(pieces):
            if i == j or not poly:
                continue
            # p ≤ q  ⇔  (p.const - q.const) + Σ (p.slope - q.slope)·u ≤ 0 (strict for j < i)
            a = p.slope[0] - q.slope[0]
            b = p.slope[1] - q.slope[1]
            c = p.const - q.const
            if abs(a) + abs(b) <= _tol(*p.slope, *q.slope):
                if c > 0 or (c == 0 and j < i):
                    poly = []
                continue
            poly = clip(poly, a, b, c)
        if len(poly) >= 3 and polygon_area(poly) > 0:
            cells.append(Cell(_dedupe(poly), p))
    return cells


def _dedupe(poly: Polygon) -> Polygon:
    out: Polygon = []
    for p in poly:
        if not out or abs(p[0] - out[-1][0]) + abs(p[1] - out[-1][1]) > 1e-15:
            out.append(p)
    if len(out) > 1 and abs(out[0][0] - out[-1][0]) + abs(out[0][1] - out[-1][1]) <= 1e-15:
        out.pop()
    return out


def envelope_2d(oracle: Oracle, box: Polygon, max_rounds: int = 1000) -> list[Cell]:
    """The exact cells of the lower envelope over the convex `box` (u-coordinates)."""
    pieces: dict[Hashable, Piece] = {}
    for v in box:
        pc = oracle(v)
        pieces.setdefault(pc.key, pc)
    checked: set[tuple[float, float]] = set()
    for _ in range(max_rounds):
        cells = cells_of(list(pieces.values()), box)
        added = False
        for cell in cells:
            for v in cell.polygon:
                key = (round(v[0], 15), round(v[1], 15))
                if key in checked:
                    continue
                checked.add(key)
                best = oracle(v)
                here = cell.piece.value(v)
                if best.key not in pieces and best.value(v) < here - _tol(here):
                    pieces[best.key] = best
                    added = True
        if not added:
            return cells
        # A vertex that passed keeps passing: pieces only ever lower the envelope to the
        # true minimum the oracle reported there.
    raise OmdpError(
        f"the bandwidth map did not converge in {max_rounds} rounds",
        "narrow the ranges (--vary LO:HI) or report this session",
    )
