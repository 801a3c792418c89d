"""The bandwidth map: which partition is best while one or two links' bandwidths range
over a box, with its exact breakpoints and regions.

A partition's end-to-end latency is affine in the inverse bandwidths u = 1/bw of the
links: compute + Σ latencies + Σ bytes·8/1000 · u. With the other links fixed, each
partition is a plane `const + Σ slope_k·u_k` over the varying links, and the best one at
each point is the lower envelope of those planes. `backend.solver.envelope` finds that
envelope exactly from an oracle, here the ranker (K = 1) at a point; this module turns its
cells into bands (one link) or regions (two links) in Mbit/s, with the runner-up's margin,
the boundaries between regions, and the partitions that stay within P% of the optimum over
the whole box (`Mapper.robustness`). Region boundaries are straight in 1/bw, so they are
curves on a bandwidth axis; `curve` samples them finely enough to draw and measure.

The throughput objective (the slowest stage, a maximum of affine functions) is not affine.
On one link it is still exact (`_bands_sweep`: each partition is max(C, A + B·u), and the
next change of winner is a root on one of three linear pieces, for all partitions at
once); on two links, or when the cut space is searched rather than enumerated, the map
comes from a grid (`GRID_2D`² points; `GRID_1D` points with each change of winner
bisected) and says so (`method`).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from backend.errors import OmdpError
from backend.solver.costs import SegmentInstance, compute_sum, link_stage_ms, segment_costs
from backend.solver.envelope import Cell, Piece, Point, envelope_1d, envelope_2d
from backend.solver.segment_ranker import Ranker

SCALES: tuple[str, ...] = ("log", "linear")
GRID_1D = 2001  # throughput, one link: grid points before bisecting each change of winner
GRID_2D = 161  # throughput, two links: points per axis
GRID_2D_SEARCH = 41  # the same when each point is a search (cut spaces too big to enumerate)
MAX_VARYING = 2
NEAR_TOP = 20  # partitions kept per map vertex when the robust search cannot enumerate
MIN_BANDWIDTH_MBPS = 1e-6  # 1 bit/s
MAX_BANDWIDTH_MBPS = 1e9
_GAUSS = np.polynomial.legendre.leggauss(24)


@dataclass(frozen=True)
class LinkRange:
    """A link whose bandwidth varies over [lo, hi] Mbit/s (0 < lo < hi)."""

    link: str
    index: int  # link number in the chain
    lo: float
    hi: float

    def __post_init__(self) -> None:
        if not (0 < self.lo < self.hi <= MAX_BANDWIDTH_MBPS and self.lo >= MIN_BANDWIDTH_MBPS):
            raise OmdpError(
                f"the range of {self.link} must satisfy 0 < LO < HI with LO ≥ "
                f"{MIN_BANDWIDTH_MBPS:g} and HI ≤ {MAX_BANDWIDTH_MBPS:g} Mbit/s, "
                f"got {self.lo:g}:{self.hi:g}",
                f"e.g. --vary {self.link}=5:100",
            )


@dataclass(frozen=True)
class Choice:
    """A partition on the map: its cuts and its latency as an affine function of 1/bw of
    the varying links (`slope_ms` in ms·Mbit/s: the ms it costs at 1 Mbit/s)."""

    cuts: tuple[int, ...]
    const_ms: float
    slope_ms: tuple[float, ...]

    def ms_at(self, mbps: Sequence[float]) -> float:
        return self.const_ms + sum(s / b for s, b in zip(self.slope_ms, mbps, strict=True))


@dataclass(frozen=True)
class Reading:
    """What the map says at one point: the best partition, the runner-up, the margin."""

    mbps: tuple[float, ...]
    best: tuple[int, ...]
    best_ms: float
    runner_up: tuple[int, ...] | None
    margin_ms: float | None  # runner-up minus best (None: the only feasible partition)


@dataclass(frozen=True)
class Band:
    """[lo, hi] Mbit/s of the one varying link where `cuts` is the best partition."""

    lo: float
    hi: float
    cuts: tuple[int, ...]
    ms_at_lo: float
    ms_at_hi: float
    middle: Reading  # at the geometric middle of the band: runner-up and margin


@dataclass(frozen=True)
class Region:
    """Where `cuts` is best on two varying links: a convex polygon in 1/bw, given by its
    vertices in Mbit/s (None for a grid map), and its share of the box on the map's scale."""

    choice: Choice
    share: float
    polygon: tuple[tuple[float, float], ...] | None
    ms_min: float  # the objective's range over the region (its vertices, or grid points)
    ms_max: float
    middle: Reading  # at a point inside: runner-up and margin

    @property
    def cuts(self) -> tuple[int, ...]:
        return self.choice.cuts


@dataclass(frozen=True)
class Boundary:
    """The line between two adjacent regions (straight in 1/bw), ends in Mbit/s."""

    a: tuple[int, ...]
    b: tuple[int, ...]
    ends: tuple[tuple[float, float], tuple[float, float]]


@dataclass(frozen=True)
class RobustChoice:
    """A partition judged over the whole box: its worst ratio to the optimum and its worst
    excess in ms (the regret)."""

    cuts: tuple[int, ...]
    worst_ratio: float  # max over the box of its objective / the best one's
    worst_regret_ms: float
    where: tuple[float, ...]  # a point (Mbit/s) where the worst ratio is reached


@dataclass(frozen=True)
class Robustness:
    percent: float
    within: list[RobustChoice]  # every partition within percent of the optimum, best first
    best: RobustChoice  # the smallest worst-case ratio over the box
    exact: bool  # False: judged on the grid, or among the partitions near the vertices
    considered: int  # how many partitions were judged


@dataclass
class BandwidthMap:
    """The map of one or two varying links, other links fixed."""

    devices: tuple[str, ...]
    n_positions: int
    ranges: tuple[LinkRange, ...]
    objective: str
    cost_model: str
    method: str  # "exact", or how the grid was made
    scale: str
    bands: list[Band] = field(default_factory=list)
    regions: list[Region] = field(default_factory=list)
    boundaries: list[Boundary] = field(default_factory=list)
    grid: GridLabels | None = None  # two links on a grid: a label per cell
    robust: Robustness | None = None

    @property
    def exact(self) -> bool:
        return self.method == "exact"

    def describe(self, cuts: Sequence[int]) -> str:
        return describe(self.devices, cuts, self.n_positions)


@dataclass(frozen=True)
class GridLabels:
    """A grid map: axes in Mbit/s (log-spaced) and the index of the best region per point
    (labels[j, i] at x = xs[i], y = ys[j]; -1 where nothing is feasible)."""

    xs: tuple[float, ...]
    ys: tuple[float, ...]
    labels: np.ndarray


def describe(devices: Sequence[str], cuts: Sequence[int], n_positions: int) -> str:
    """`glasses[0,76)  phone[76,388)`: the devices that compute and their segments."""
    bounds = [0, *cuts, n_positions]
    return "  ".join(
        f"{d}[{a},{b})" for d, a, b in zip(devices, bounds, bounds[1:], strict=False) if a < b
    )


def _nothing_feasible() -> OmdpError:
    return OmdpError(
        "no feasible partition: every split needs a segment that is not allowed",
        "profile the session, or relax --memory",
    )


def geometric_middle(lo: float, hi: float) -> float:
    return math.sqrt(lo * hi)


class Mapper:
    """One ranker, the fixed links and the varying ones: maps, readings and robustness.

    Every partition's latency is `const + Σ slope_k / bw_k` (k over the varying links); the
    tables come from the same link pricing the ranker uses (`costs.link_stage_ms`), split
    into the part at infinite bandwidth and the part per 1/bw.
    """

    def __init__(
        self,
        ranker: Ranker,
        ranges: Sequence[LinkRange],
        bandwidth_mbps: Mapping[str, float] | None = None,
        latency_ms: Mapping[str, float] | None = None,
    ):
        if not 1 <= len(ranges) <= MAX_VARYING:
            raise OmdpError(
                f"a map varies one or two links, got {len(ranges)}",
                "give --vary once or twice",
            )
        if len({r.index for r in ranges}) != len(ranges):
            raise OmdpError("the same link is varied twice", "vary two different links")
        self.ranker = ranker
        self.inst: SegmentInstance = ranker.instance
        self.ranges = tuple(ranges)
        self.vary = [r.index for r in ranges]
        bw, lat = self.inst.link_arrays(bandwidth_mbps, latency_ms)
        self.bandwidth, self.latency = bw, lat
        at_infinity = bw.copy()
        at_infinity[self.vary] = np.inf
        self.base_link_ms, _ = link_stage_ms(self.inst, at_infinity, lat)  # (L, M)
        per_inverse, _ = link_stage_ms(self.inst, np.ones_like(bw), np.zeros_like(lat))
        self.per_inverse = per_inverse[self.vary]  # (V, M): ms per (1 / (Mbit/s))
        self._choices: dict[tuple[int, ...], Choice] = {}
        self.rows: np.ndarray | None = ranker.rows
        if self.rows is not None:  # every partition at once: numpy over the rows
            self._tables = self._row_tables(self.rows)

    # -- per-partition tables -----------------------------------------------------------
    def _row_tables(
        self, rows: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(compute sum, compute bottleneck, link ms at infinite bandwidth (L, R), link ms
        per 1/bw of each varying link (V, R)) of partitions given as rows (R, D+1)."""
        compute, worst = compute_sum(self.ranker.seg, rows)
        n_links = self.base_link_ms.shape[0]
        base = np.stack([self.base_link_ms[k, rows[:, k + 1]] for k in range(n_links)])
        per = np.stack([self.per_inverse[v, rows[:, k + 1]] for v, k in enumerate(self.vary)])
        return compute, worst, base.reshape(n_links, len(rows)), per

    def _values(
        self, tables: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray], mbps: Any
    ) -> tuple[np.ndarray, np.ndarray]:
        """(objective, latency) of the tables' partitions at one point."""
        compute, worst, base, per = tables
        links = base.copy()
        links[self.vary] += per / np.asarray(mbps, dtype=float)[:, None]
        latency = compute + links.sum(axis=0)
        if self.ranker.objective == "latency":
            return latency, latency
        return np.maximum(worst, links.max(axis=0, initial=0.0)), latency

    def choice(self, row: np.ndarray) -> Choice:
        """The partition of this row, its latency as an affine function of 1/bw."""
        key = tuple(int(x) for x in row)
        found = self._choices.get(key)
        if found is None:
            compute, _, base, per = self._row_tables(np.asarray(row).reshape(1, -1))
            const = float(compute[0] + base[:, 0].sum())
            found = Choice(self.cuts_of(row), const, tuple(float(x) for x in per[:, 0]))
            self._choices[key] = found
        return found

    def cuts_of(self, row: np.ndarray) -> tuple[int, ...]:
        return tuple(int(c) for c in self.inst.candidates[np.asarray(row)[1:-1]])

    def links_at(self, mbps: Sequence[float]) -> np.ndarray:
        bw = self.bandwidth.copy()
        bw[self.vary] = mbps
        return bw

    # -- the ranker at a point ----------------------------------------------------------
    def ranked_rows(self, mbps: Sequence[float], k: int) -> tuple[np.ndarray, np.ndarray]:
        """The k best rows at this point and their objective values (the ranker's)."""
        if self.rows is not None:
            order, vals = self._best_indices(mbps, k)
            return self.rows[order], vals
        ranking = self.ranker.rank(self.links_at(mbps), self.latency, k)
        return ranking.rows, ranking.total_ms

    def _best_indices(self, mbps: Any, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Indices (into the enumerated rows) of the k best at this point, and their
        objective values: the ranker's order (objective, then latency, then row order)."""
        vals, latency = self._values(self._tables, mbps)
        k = min(k, len(vals))
        if k == 0:
            return np.zeros(0, dtype=np.int64), vals[:0]
        near = np.flatnonzero(vals <= np.partition(vals, k - 1)[k - 1])
        order = near[np.lexsort((near, latency[near], vals[near]))][:k]
        order = order[np.isfinite(vals[order])]
        return order, vals[order]

    def read(self, mbps: Sequence[float]) -> Reading:
        """The best partition at this point, the runner-up and the margin between them."""
        mbps = tuple(float(x) for x in mbps)
        rows, vals = self.ranked_rows(mbps, 2)
        if len(rows) == 0:
            raise _nothing_feasible()
        second = self.cuts_of(rows[1]) if len(rows) > 1 else None
        margin = float(vals[1] - vals[0]) if len(rows) > 1 else None
        return Reading(mbps, self.cuts_of(rows[0]), float(vals[0]), second, margin)

    def _oracle(self) -> Callable[[Point], Piece]:
        """The best partition at a point of the normalised box (s_k = u_k·lo_k, in
        [lo_k/hi_k, 1]), as the plane it lies on there."""
        scale = np.array([1.0 / r.lo for r in self.ranges])
        cache: dict[tuple[int, ...], Piece] = {}

        def oracle(s: Point) -> Piece:
            mbps = 1.0 / (np.asarray(s) * scale)
            if self.rows is not None:  # straight from the tables: no row to price again
                best, _ = self._best_indices(mbps, 1)
                if len(best) == 0:
                    raise _nothing_feasible()
                i = int(best[0])
                key = tuple(int(x) for x in self.rows[i])
                piece = cache.get(key)
                if piece is None:
                    compute, _, base, per = self._tables
                    const = float(compute[i] + base[:, i].sum())
                    slopes = tuple(float(x) for x in per[:, i])
                    self._choices[key] = Choice(self.cuts_of(self.rows[i]), const, slopes)
                    slope = tuple(x * float(f) for x, f in zip(slopes, scale, strict=True))
                    piece = cache[key] = Piece(key, const, slope)
                return piece
            rows, _ = self.ranked_rows(mbps, 1)
            if len(rows) == 0:
                raise _nothing_feasible()
            key = tuple(int(x) for x in rows[0])
            piece = cache.get(key)
            if piece is None:
                c = self.choice(rows[0])
                slope = tuple(float(x * f) for x, f in zip(c.slope_ms, scale, strict=True))
                piece = cache[key] = Piece(key, c.const_ms, slope)
            return piece

        return oracle

    def to_mbps(self, s: Sequence[float]) -> tuple[float, ...]:
        return tuple(float(r.lo / x) for r, x in zip(self.ranges, s, strict=True))

    # -- maps ----------------------------------------------------------------------------
    def map(self, scale: str = "log", robust_percent: float | None = None) -> BandwidthMap:
        if scale not in SCALES:
            raise OmdpError(f"unknown scale {scale!r}", f"use one of: {', '.join(SCALES)}")
        out = BandwidthMap(
            devices=self.inst.devices,
            n_positions=self.inst.n_positions,
            ranges=self.ranges,
            objective=self.ranker.objective,
            cost_model=self.ranker.cost_model,
            method="exact",
            scale=scale,
        )
        exact = self.ranker.objective == "latency"
        vertices: Sequence[tuple[float, ...]]
        if len(self.ranges) == 1 and exact:
            out.bands = self._bands_exact()
            vertices = [(b.lo,) for b in out.bands] + [(out.bands[-1].hi,)]
        elif len(self.ranges) == 1:
            if self.rows is not None:
                out.bands = self._bands_sweep()
            else:
                out.bands = self._bands_grid()
                out.method = f"grid of {GRID_1D} log-spaced points, changes bisected"
            r = self.ranges[0]
            vertices = [(float(x),) for x in np.geomspace(r.lo, r.hi, GRID_1D)]
        elif exact:
            cells = envelope_2d(self._oracle(), self._box())
            out.regions, out.boundaries = self._regions(cells, scale)
            vertices = sorted({self.to_mbps(v) for c in cells for v in c.polygon})
        else:
            out.grid, out.regions = self._grid_2d(scale)
            n = len(out.grid.xs)
            out.method = f"grid of {n}x{n} log-spaced points"
            vertices = [(x, y) for x in out.grid.xs for y in out.grid.ys]
        if robust_percent is not None:
            out.robust = self.robustness(robust_percent, vertices, exact)
        return out

    def _box(self) -> list[tuple[float, float]]:
        (a, b), (c, d) = ((r.lo / r.hi, 1.0) for r in self.ranges)
        return [(a, c), (b, c), (b, d), (a, d)]

    def _bands_exact(self) -> list[Band]:
        r = self.ranges[0]
        intervals = envelope_1d(self._oracle(), r.lo / r.hi, 1.0)
        bands = []
        for iv in reversed(intervals):  # u decreasing = bandwidth increasing
            lo, hi = float(r.lo / iv.hi), float(r.lo / iv.lo)
            bands.append(self._band(lo, hi, self.choice(np.array(iv.piece.key))))
        return _merged(bands)

    def _band(self, lo: float, hi: float, c: Choice) -> Band:
        return Band(
            lo=lo,
            hi=hi,
            cuts=c.cuts,
            ms_at_lo=c.ms_at((lo,)),
            ms_at_hi=c.ms_at((hi,)),
            middle=self.read((geometric_middle(lo, hi),)),
        )

    def _objective_at(self, row: np.ndarray, mbps: Sequence[float]) -> float:
        link, _ = link_stage_ms(self.inst, self.links_at(mbps), self.latency)
        lat, worst = segment_costs(self.ranker.seg, link, np.asarray(row).reshape(1, -1))
        return float((lat if self.ranker.objective == "latency" else worst)[0])

    def _bands_grid(self) -> list[Band]:
        r = self.ranges[0]
        xs = np.geomspace(r.lo, r.hi, GRID_1D)
        labels = [self.read((x,)).best for x in xs]
        edges = [r.lo]
        winners = [labels[0]]
        for i in range(1, len(xs)):
            if labels[i] != labels[i - 1]:
                edges.append(self._bisect(xs[i - 1], labels[i - 1], xs[i], labels[i]))
                winners.append(labels[i])
        edges.append(r.hi)
        bands = []
        rows = {self.cuts_of(row): row for row in self._rows_for(winners)}
        for lo, hi, cuts in zip(edges, edges[1:], winners, strict=False):
            row = rows[cuts]
            bands.append(
                Band(
                    lo,
                    hi,
                    cuts,
                    self._objective_at(row, (lo,)),
                    self._objective_at(row, (hi,)),
                    self.read((geometric_middle(lo, hi),)),
                )
            )
        return bands

    def _bands_sweep(self) -> list[Band]:
        """Throughput on one link, exactly: every partition's slowest stage is
        g(u) = max(C, A + B·u) (C the compute stages and fixed links, A + B·u the varying
        link's stage, u = 1/bw), its latency h(u) = c + B·u. Sweeping u upwards from the
        best partition, the next breakpoint is the first u where another one comes first
        in the ranker's order (smaller g, or equal g and smaller h): each partition's g
        and the winner's differ linearly between their two kinks, so that first point is a
        root on one of three pieces, for all partitions at once."""
        assert self.rows is not None
        compute, worst, base, per = self._tables
        (v,) = self.vary
        fixed = np.delete(base, v, axis=0)
        cc = np.maximum(worst, fixed.max(axis=0, initial=0.0))  # C
        a, b = base[v], per[0]  # the varying link's stage: A + B·u
        lat0 = compute + base.sum(axis=0)  # h(u) = lat0 + B·u
        with np.errstate(divide="ignore", invalid="ignore"):
            kink = np.where(b > 0, (cc - a) / b, np.inf)
        r = self.ranges[0]
        u, u_end = 1.0 / r.hi, 1.0 / r.lo
        tol_u = 1e-12 * u_end

        def g(t: Any) -> np.ndarray:
            return np.maximum(cc, a + b * t)

        def first_at(t: float) -> int:
            """The partition first in the ranker's order just after t (ties between equal
            objective values go to latency, then to the row order)."""
            gt = g(t)
            tol = 1e-12 * max(1.0, float(np.abs(gt[np.isfinite(gt)]).max(initial=1.0)))
            slope = np.where(a + b * t >= cc, b, 0.0)  # g's slope to the right of t
            keys = (gt, slope, lat0 + b * t, b)
            pool = np.arange(len(gt))
            for key in keys:
                sub = key[pool]
                pool = pool[sub <= sub.min() + tol]
            return int(pool[0])

        w = first_at(u)
        edges, winners = [u], [w]
        while True:
            lo_k, hi_k = np.minimum(kink, kink[w]), np.maximum(kink, kink[w])
            cuts = [np.full_like(kink, u), np.clip(lo_k, u, u_end), np.clip(hi_k, u, u_end)]
            cuts.append(np.full_like(kink, u_end))
            event = np.full(len(kink), np.inf)
            scale = 1e-12 * max(1.0, float(np.abs(g(u)[np.isfinite(g(u))]).max(initial=1.0)))
            for s0, s1 in itertools.pairwise(cuts):
                d0 = g(s0) - np.maximum(cc[w], a[w] + b[w] * s0)  # minus the winner's g
                d1 = g(s1) - np.maximum(cc[w], a[w] + b[w] * s1)
                h0 = lat0 + b * s0 - (lat0[w] + b[w] * s0)
                h1 = lat0 + b * s1 - (lat0[w] + b[w] * s1)
                tie = (np.abs(d0) <= scale) & (np.abs(d1) <= scale)
                x0, x1 = np.where(tie, h0, d0), np.where(tie, h1, d1)
                with np.errstate(divide="ignore", invalid="ignore"):
                    root = np.where(
                        x0 < -scale,
                        s0,
                        np.where(x1 < -scale, s0 + x0 / (x0 - x1) * (s1 - s0), np.inf),
                    )
                root = np.where((s1 > s0) & (root > u + tol_u), root, np.inf)
                event = np.minimum(event, root)
            nxt = float(event.min())
            if not nxt < u_end:
                break
            u = nxt
            w_next = first_at(u)
            if w_next != w:  # else a near-tie that rounding made look like one: go on
                w = w_next
                edges.append(u)
                winners.append(w)
        edges.append(u_end)
        bands = []
        for k in range(len(winners) - 1, -1, -1):  # u decreasing = bandwidth increasing
            lo = r.lo if k == len(winners) - 1 else 1.0 / edges[k + 1]
            hi = r.hi if k == 0 else 1.0 / edges[k]
            w = winners[k]
            bands.append(
                Band(
                    lo,
                    hi,
                    self.cuts_of(self.rows[w]),
                    float(g(1.0 / lo)[w]),
                    float(g(1.0 / hi)[w]),
                    self.read((geometric_middle(lo, hi),)),
                )
            )
        return _merged(bands)

    def _rows_for(self, cuts_list: Sequence[tuple[int, ...]]) -> list[np.ndarray]:
        index = {int(c): i for i, c in enumerate(self.inst.candidates)}
        m = self.inst.n_candidates
        return [np.array([0, *(index[c] for c in cuts), m - 1]) for cuts in cuts_list]

    def _bisect(self, a: float, la: tuple, b: float, lb: tuple) -> float:
        for _ in range(60):
            mid = math.sqrt(a * b)
            if mid in (a, b):
                break
            if self.read((mid,)).best == la:
                a = mid
            else:
                b = mid
        return math.sqrt(a * b)

    def _regions(self, cells: list[Cell], scale: str) -> tuple[list[Region], list[Boundary]]:
        areas = [self._area(c.polygon, scale) for c in cells]
        rx, ry = self.ranges
        if scale == "log":
            total = math.log10(rx.hi / rx.lo) * math.log10(ry.hi / ry.lo)
        else:
            total = (rx.hi - rx.lo) * (ry.hi - ry.lo)
        regions = []
        for cell, area in zip(cells, areas, strict=True):
            choice = self.choice(np.array(cell.piece.key))
            corners = [self.to_mbps(v) for v in cell.polygon]
            values = [choice.ms_at(p) for p in corners]
            inside = tuple(float(np.mean([v[k] for v in cell.polygon])) for k in range(2))
            regions.append(
                Region(
                    choice=choice,
                    share=area / total,
                    polygon=tuple((float(x), float(y)) for x, y in corners),
                    ms_min=min(values),
                    ms_max=max(values),
                    middle=self.read(self.to_mbps(inside)),
                )
            )
        order = sorted(range(len(regions)), key=lambda i: -regions[i].share)
        return [regions[i] for i in order], _boundaries(
            [cells[i] for i in order], [regions[i] for i in order], self.to_mbps
        )

    def _area(self, polygon: Sequence[Point], scale: str) -> float:
        """Area of a cell on the map's axes (log10 or linear bandwidth). Its edges are
        straight in 1/bw, so curved on those axes: Green's theorem, ½∮(x dy − y dx), each
        edge cut where u doubles (so 1/u varies little on a piece) and each piece
        integrated by Gauss–Legendre quadrature."""
        nodes, weights = _GAUSS
        total = 0.0
        for p, q in zip(polygon, [*polygon[1:], polygon[0]], strict=True):
            u0 = np.array([p[k] / r.lo for k, r in enumerate(self.ranges)])  # 1/bw
            du = np.array([q[k] / r.lo for k, r in enumerate(self.ranges)]) - u0
            if du[0] == 0 or du[1] == 0:  # along an axis: ½∮(x dy − y dx) in closed form
                to_axis = (lambda v: -math.log10(v)) if scale == "log" else (lambda v: 1 / v)
                x0, y0 = to_axis(u0[0]), to_axis(u0[1])
                x1, y1 = to_axis(u0[0] + du[0]), to_axis(u0[1] + du[1])
                total += 0.5 * (x0 * (y1 - y0) - y0 * (x1 - x0))
                continue
            cuts = {0.0, 1.0}
            for k in range(2):
                a, b = u0[k], u0[k] + du[k]
                pieces = math.ceil(math.log2(max(a, b) / min(a, b)) + 1e-12)
                if du[k] and pieces > 1:
                    cuts.update((a * (b / a) ** (i / pieces) - a) / du[k] for i in range(1, pieces))
            ts = np.array(sorted(cuts))
            width = np.diff(ts)[:, None]  # every piece of the edge at once: (pieces, nodes)
            t = ts[:-1, None] + (nodes[None, :] + 1) / 2 * width
            ux, uy = u0[0] + du[0] * t, u0[1] + du[1] * t
            if scale == "log":  # x = -log10 u, dx/dt = -du / (u ln 10)
                x, y = -np.log10(ux), -np.log10(uy)
                dx, dy = -du[0] / (ux * math.log(10)), -du[1] / (uy * math.log(10))
            else:  # x = 1/u, dx/dt = -du / u²
                x, y = 1 / ux, 1 / uy
                dx, dy = -du[0] / ux**2, -du[1] / uy**2
            total += 0.5 * float(((x * dy - y * dx) @ weights * width[:, 0]).sum()) / 2
        return abs(total)

    def winners(self, xs: Any, ys: Any) -> tuple[np.ndarray, list, np.ndarray]:
        """The best partition at every grid point (x over the first varying link, y over
        the second): labels[j, i] indexes the returned list of cut vectors (-1: none), and
        the best objective value there."""
        labels = np.full((len(ys), len(xs)), -1, dtype=np.int64)
        best = np.full((len(ys), len(xs)), np.inf)
        names: dict[tuple[int, ...], int] = {}
        if self.rows is None:
            for j, y in enumerate(ys):
                for i, x in enumerate(xs):
                    got = self.read((x, y))
                    labels[j, i] = names.setdefault(got.best, len(names))
                    best[j, i] = got.best_ms
            return labels, list(names), best
        compute, worst, base, per = self._tables
        inv_x = 1.0 / np.asarray(xs, dtype=float)
        x_link, y_link = self.vary
        for j, y in enumerate(ys):
            links = np.repeat(base[:, :, None], len(xs), axis=2)  # (L, R, X)
            links[x_link] += per[0][:, None] * inv_x[None, :]
            links[y_link] += (per[1] / y)[:, None]
            latency = compute[:, None] + links.sum(axis=0)
            if self.ranker.objective == "latency":
                vals = latency
            else:
                vals = np.maximum(worst[:, None], links.max(axis=0))
            low = vals.min(axis=0)
            tied = vals <= low + 1e-12 * np.abs(low)
            pick = np.where(tied, latency, np.inf).argmin(axis=0)
            best[j] = low
            labels[j] = np.where(np.isfinite(low), pick, -1)
        used = np.unique(labels[labels >= 0])
        renumber = np.full(len(self.rows) + 1, -1)
        renumber[used] = np.arange(len(used))
        return renumber[labels], [self.cuts_of(self.rows[r]) for r in used], best

    def _grid_2d(self, scale: str) -> tuple[GridLabels, list[Region]]:
        rx, ry = self.ranges
        n = GRID_2D if self.rows is not None else GRID_2D_SEARCH
        xs = np.geomspace(rx.lo, rx.hi, n)
        ys = np.geomspace(ry.lo, ry.hi, n)
        labels, names, best = self.winners(xs, ys)
        weights = _cell_weights(xs, scale)[None, :] * _cell_weights(ys, scale)[:, None]
        regions = []
        for n, cuts in enumerate(names):
            where = np.argwhere(labels == n)
            j, i = where[len(where) // 2]
            mask = labels == n
            regions.append(
                Region(
                    choice=self.choice(self._rows_for([cuts])[0]),
                    share=float(weights[mask].sum() / weights.sum()),
                    polygon=None,
                    ms_min=float(best[mask].min()),
                    ms_max=float(best[mask].max()),
                    middle=self.read((float(xs[i]), float(ys[j]))),
                )
            )
        order = sorted(range(len(regions)), key=lambda k: -regions[k].share)
        renumber = np.full(len(names) + 1, -1)
        for new, old in enumerate(order):
            renumber[old] = new
        grid = GridLabels(tuple(map(float, xs)), tuple(map(float, ys)), renumber[labels])
        return grid, [regions[k] for k in order]

    # -- robustness ----------------------------------------------------------------------
    def robustness(
        self, percent: float, vertices: Sequence[Sequence[float]], exact: bool
    ) -> Robustness:
        """Partitions within `percent` of the optimum everywhere in the box, and the one
        whose worst ratio to the optimum is smallest.

        Latency: on each region the optimum is affine, so a partition's ratio to it (affine
        over affine) and its excess are largest at a vertex: checking every region's
        vertices is exact. All partitions are judged when the ranker enumerates them; else
        the NEAR_TOP best at each vertex. Throughput: judged on the grid's points."""
        if not (math.isfinite(percent) and percent >= 0):
            raise OmdpError(
                f"--robust must be a percentage ≥ 0, got {percent!r}", "e.g. --robust 10"
            )
        points = np.array(vertices, dtype=float)
        if self.rows is not None:
            rows, tables, judged_all = self.rows, self._tables, True
        else:
            found: dict[tuple[int, ...], np.ndarray] = {}
            for p in points:
                for row in self.ranked_rows(p, NEAR_TOP)[0]:
                    found.setdefault(tuple(int(x) for x in row), row)
            rows = np.array(list(found.values()))
            tables, judged_all = self._row_tables(rows), False
        # one point at a time (a grid has thousands): running worst ratio, where, regret
        worst = np.full(len(rows), -np.inf)
        where = np.zeros(len(rows), dtype=np.int64)
        regret = np.full(len(rows), -np.inf)
        for n, p in enumerate(points):
            values = self._values(tables, p)[0]
            best = float(values.min()) if judged_all else float(self.ranked_rows(p, 1)[1][0])
            with np.errstate(divide="ignore", invalid="ignore"):
                ratio = values / best if best > 0 else np.where(values > best, np.inf, 1.0)
            worse = ratio > worst
            worst = np.where(worse, ratio, worst)
            where = np.where(worse, n, where)
            regret = np.maximum(regret, values - best)
        order = np.lexsort((regret, worst))

        def pick(i: int) -> RobustChoice:
            return RobustChoice(
                self.cuts_of(rows[i]),
                float(worst[i]),
                float(regret[i]),
                tuple(float(x) for x in points[where[i]]),
            )

        limit = 1 + percent / 100 + 1e-9
        within = [pick(int(i)) for i in order if worst[i] <= limit]
        return Robustness(
            percent=percent,
            within=within,
            best=pick(int(order[0])),
            exact=exact and judged_all,
            considered=len(rows),
        )


def _merged(bands: list[Band]) -> list[Band]:
    """Neighbouring bands with one partition (a tie the oracle broke twice) become one."""
    out: list[Band] = []
    for b in bands:
        if out and out[-1].cuts == b.cuts:
            prev = out.pop()
            b = Band(prev.lo, b.hi, b.cuts, prev.ms_at_lo, b.ms_at_hi, prev.middle)
        out.append(b)
    return out


def _cell_weights(axis: np.ndarray, scale: str) -> np.ndarray:
    """The width each grid point stands for on the map's scale (midpoint rule)."""
    coords = np.log10(axis) if scale == "log" else axis
    edges = np.concatenate([[coords[0]], (coords[1:] + coords[:-1]) / 2, [coords[-1]]])
    return np.diff(edges)


def _boundaries(
    cells: list[Cell], regions: list[Region], to_mbps: Callable[[Sequence[float]], Any]
) -> list[Boundary]:
    """Pairs of cells sharing an edge: the vertices of one that lie on the other's plane
    (both planes equal there) span their common edge when there are two of them apart."""
    out = []
    for i, ci in enumerate(cells):
        for j in range(i + 1, len(cells)):
            cj = cells[j]
            pi, pj = ci.piece, cj.piece
            on = [
                v
                for v in ci.polygon
                if abs(_plane(pi, v) - _plane(pj, v)) <= 1e-9 * max(1.0, abs(_plane(pi, v)))
            ]
            if len(on) < 2:
                continue
            a, b = max(
                ((p, q) for p in on for q in on),
                key=lambda pq: abs(pq[0][0] - pq[1][0]) + abs(pq[0][1] - pq[1][1]),
            )
            if abs(a[0] - b[0]) + abs(a[1] - b[1]) <= 1e-12:
                continue
            out.append(Boundary(regions[i].cuts, regions[j].cuts, (to_mbps(a), to_mbps(b))))
    return out


def _plane(piece: Piece, v: Point) -> float:
    return piece.const + piece.slope[0] * v[0] + piece.slope[1] * v[1]


def curve(
    p: Sequence[float],
    q: Sequence[float],
    plot: Callable[[Sequence[float]], tuple[float, float]],
    depth: int = 10,
) -> list[tuple[float, float]]:
    """Points (Mbit/s) along the segment p→q straight in 1/bw, finely enough that the
    polyline through their plotted images is within 1e-4 of the curve (p and q included)."""
    up, uq = [1 / x for x in p], [1 / x for x in q]

    def at(t: float) -> tuple[float, float]:
        return (1 / (up[0] + t * (uq[0] - up[0])), 1 / (up[1] + t * (uq[1] - up[1])))

    out = [tuple(p)]

    def split(t0: float, t1: float, a: tuple, b: tuple, level: int) -> None:
        tm = (t0 + t1) / 2
        m = at(tm)
        pa, pb, pm = plot(a), plot(b), plot(m)
        dx, dy = pb[0] - pa[0], pb[1] - pa[1]
        cross = abs(dx * (pm[1] - pa[1]) - dy * (pm[0] - pa[0]))
        off = cross / max(math.hypot(dx, dy), 1e-300)  # distance from the chord
        if level < depth and off > 1e-4:
            split(t0, tm, a, m, level + 1)
            split(tm, t1, m, b, level + 1)
        else:
            out.append(b)

    split(0.0, 1.0, tuple(p), tuple(q), 0)
    return out  # type: ignore[return-value]
