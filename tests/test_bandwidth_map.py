"""The bandwidth map against brute force: every partition priced by the canonical cost
functions at every point of a fine grid, on random segment-level instances and on a
session of a built-in model (its real cut sizes, timed segments recorded in SQLite)."""

from __future__ import annotations

import dataclasses
import itertools
import math
import weakref

import numpy as np
import pytest
from synthetic import measured_session

from backend.errors import OmdpError
from backend.model.analysis import analyze
from backend.profiling.session import Session
from backend.solver.bandwidth_map import LinkRange, Mapper
from backend.solver.costs import SegmentInstance, link_stage_ms, segment_costs
from backend.solver.partition import segment_rows
from backend.solver.segment_ranker import Ranker
from backend.usecases.maps import MapOptions, map_session, parse_percent, parse_ranges, view_map
from backend.usecases.rankings import RankOptions, rank_session

REL = 1e-9


def random_instance(seed: int, devices: int, sink: bool = True) -> SegmentInstance:
    """Float times and sizes (few ties), some segments not allowed, any source and sink."""
    rng = np.random.default_rng(seed)
    m = int(rng.integers(3, 9))
    n = 40
    cands = np.concatenate([[0], np.sort(rng.choice(np.arange(1, n), m - 2, replace=False)), [n]])
    speed = rng.uniform(0.2, 4.0, devices)
    span = (cands[None, :] - cands[:, None]).astype(float)
    comp = np.stack([span * s * rng.uniform(0.8, 1.2, (m, m)) for s in speed])
    comp[rng.random(comp.shape) < 0.15] = np.nan
    cut = rng.uniform(1e3, 4e5, m)
    bw = rng.uniform(5, 200, devices - 1)
    lat = rng.uniform(0, 20, devices - 1)
    source = int(rng.integers(0, devices)) if rng.random() < 0.3 else 0
    snk = int(rng.integers(0, devices)) if sink and rng.random() < 0.4 else None
    names = [f"d{i}" for i in range(devices)]
    return SegmentInstance(names, cands, cut, comp, bw, lat, source, snk)


# every feasible partition of an instance, computed once (weak: ids are reused)
_ROWS: weakref.WeakKeyDictionary[SegmentInstance, np.ndarray] = weakref.WeakKeyDictionary()


def brute(inst: SegmentInstance, objective: str, mbps: dict[int, float]) -> tuple[dict, float]:
    """Every partition's objective at this point ({cuts: value}) and the best value."""
    rows = _ROWS.get(inst)
    if rows is None:
        rows = _ROWS[inst] = segment_rows(inst.segment_ms("measured"))
    bw = inst.bandwidth_mbps.copy()
    for link, v in mbps.items():
        bw[link] = v
    link_ms, _ = link_stage_ms(inst, bw, None)
    lat, worst = segment_costs(inst.segment_ms("measured"), link_ms, rows)
    vals = lat if objective == "latency" else worst
    cuts = [tuple(int(c) for c in inst.candidates[r[1:-1]]) for r in rows]
    return dict(zip(cuts, vals.tolist(), strict=True)), float(vals.min())


def near(a: float, b: float) -> bool:
    return abs(a - b) <= REL * max(abs(a), abs(b))


def close(a: float, b: float) -> bool:
    return a == pytest.approx(b, rel=REL, abs=REL)


def ranges_for(inst: SegmentInstance, rng: np.random.Generator, links: list[int]):
    out = []
    for link in links:
        lo = float(rng.uniform(0.5, 20))
        out.append(LinkRange(inst.link_names[link], link, lo, lo * float(rng.uniform(5, 500))))
    return out


@pytest.mark.parametrize("seed", range(30))
def test_one_link_breakpoints_match_brute_force(seed):
    rng = np.random.default_rng(seed)
    inst = random_instance(seed, int(rng.integers(2, 5)))
    link = int(rng.integers(0, inst.n_devices - 1))
    (r,) = ranges_for(inst, rng, [link])
    bmap = Mapper(Ranker(inst), [r]).map()
    assert bmap.exact
    bands = bmap.bands
    assert bands[0].lo == r.lo and bands[-1].hi == pytest.approx(r.hi, rel=1e-12)
    assert all(a.hi == b.lo for a, b in itertools.pairwise(bands))
    keys = [b.cuts for b in bands]
    assert len(keys) == len(set(keys)), "a partition in two disconnected bands"
    edges = [b.lo for b in bands[1:]]
    for x in np.geomspace(r.lo, r.hi, 1501):
        if any(near(x, e) for e in edges):
            continue
        values, best = brute(inst, "latency", {link: x})
        (band,) = [b for b in bands if b.lo <= x <= b.hi][:1]
        assert close(values[band.cuts], best), (x, band)
    for left, right in itertools.pairwise(bands):  # a breakpoint: both best, equal there
        values, best = brute(inst, "latency", {link: left.hi})
        assert close(values[left.cuts], best) and close(values[right.cuts], best)
    for b in bands:  # the ends and the middle are priced like the brute force does
        values, _ = brute(inst, "latency", {link: b.lo})
        assert close(b.ms_at_lo, values[b.cuts])
        mid, best = brute(inst, "latency", {link: b.middle.mbps[0]})
        if b.middle.runner_up is not None:
            others = sorted(v for k, v in mid.items() if k != b.cuts)
            assert close(b.middle.margin_ms, others[0] - best)


@pytest.mark.parametrize("seed", range(30))
def test_two_link_regions_match_brute_force(seed):
    rng = np.random.default_rng(1000 + seed)
    inst = random_instance(1000 + seed, int(rng.integers(3, 5)))
    links = sorted(rng.choice(inst.n_devices - 1, 2, replace=False).tolist())
    rx, ry = ranges_for(inst, rng, links)
    bmap = Mapper(Ranker(inst), [rx, ry]).map()
    assert sum(r.share for r in bmap.regions) == pytest.approx(1.0, rel=1e-9)
    keys = [r.cuts for r in bmap.regions]
    assert len(keys) == len(set(keys)), "a partition in two disconnected regions"
    polys = [[(1 / x, 1 / y) for x, y in r.polygon] for r in bmap.regions]
    scale = max(1 / rx.lo, 1 / ry.lo)
    for x in np.geomspace(rx.lo, rx.hi, 41):
        for y in np.geomspace(ry.lo, ry.hi, 41):
            u = (1 / x, 1 / y)
            owners = [k for k, p in enumerate(polys) if inside(p, u, REL * scale)]
            if not owners:  # within 1e-9 of a boundary: still covered
                assert any(inside(p, u, -REL * scale) for p in polys), (x, y)
                continue
            assert len(owners) == 1, "regions overlap"
            values, best = brute(inst, "latency", dict(zip(links, (x, y), strict=True)))
            assert close(values[keys[owners[0]]], best), (x, y, keys[owners[0]])
    # shares on log axes: the fraction of a fine log-spaced grid of cell centres inside
    centres = [
        (1 / x, 1 / y)
        for x in np.geomspace(rx.lo, rx.hi, 121)[:-1] * (rx.hi / rx.lo) ** (0.5 / 120)
        for y in np.geomspace(ry.lo, ry.hi, 121)[:-1] * (ry.hi / ry.lo) ** (0.5 / 120)
    ]
    for region, poly in zip(bmap.regions, polys, strict=True):
        count = sum(inside(poly, u, 0.0) for u in centres)
        assert region.share == pytest.approx(count / len(centres), abs=0.02)
    for region, poly in zip(bmap.regions, polys, strict=True):
        # interior points of each region: random convex combinations of its corners
        for w in rng.dirichlet(np.ones(len(poly)), 5):
            u = np.asarray(poly).T @ w
            values, best = brute(inst, "latency", {links[0]: 1 / u[0], links[1]: 1 / u[1]})
            assert close(values[region.cuts], best)
        # and the reading inside names it (or a partition exactly as good there)
        values, best = brute(inst, "latency", dict(zip(links, region.middle.mbps, strict=True)))
        assert close(values[region.middle.best], values[region.cuts])


def inside(poly, pt, margin) -> bool:
    """pt is in the convex polygon at least `margin` from every edge (margin < 0: at most
    that far outside)."""
    turn = sum(p[0] * q[1] - q[0] * p[1] for p, q in zip(poly, [*poly[1:], poly[0]], strict=True))
    sign = 1 if turn > 0 else -1
    for p, q in zip(poly, [*poly[1:], poly[0]], strict=True):
        ex, ey = q[0] - p[0], q[1] - p[1]
        length = math.hypot(ex, ey)
        if length and sign * (ex * (pt[1] - p[1]) - ey * (pt[0] - p[0])) / length < margin:
            return False
    return True


def test_boundaries_separate_adjacent_regions():
    inst = random_instance(7, 3, sink=False)
    rng = np.random.default_rng(7)
    rx, ry = ranges_for(inst, rng, [0, 1])
    bmap = Mapper(Ranker(inst), [rx, ry]).map()
    by_cuts = {r.cuts: r for r in bmap.regions}
    for b in bmap.boundaries:
        for end in b.ends:  # both partitions cost the same on the line
            assert close(by_cuts[b.a].choice.ms_at(end), by_cuts[b.b].choice.ms_at(end))
    if len(bmap.regions) > 1:
        assert bmap.boundaries


@pytest.mark.parametrize("seed", range(8))
def test_robust_choices_hold_over_the_box(seed):
    rng = np.random.default_rng(2000 + seed)
    inst = random_instance(2000 + seed, 3)
    rx, ry = ranges_for(inst, rng, [0, 1])
    bmap = Mapper(Ranker(inst), [rx, ry]).map(robust_percent=15)
    rb = bmap.robust
    assert rb is not None and rb.exact
    grid = [(x, y) for x in np.geomspace(rx.lo, rx.hi, 25) for y in np.geomspace(ry.lo, ry.hi, 25)]
    corners = [v for r in bmap.regions for v in r.polygon]
    priced = [brute(inst, "latency", {0: x, 1: y}) for x, y in grid + corners]
    worst = {k: max(v[k] / b for v, b in priced) for k in priced[0][0]}
    for c in [*rb.within, rb.best]:
        assert close(worst[c.cuts], c.worst_ratio)  # nothing on the grid is worse
        values, best = brute(inst, "latency", {0: c.where[0], 1: c.where[1]})
        assert close(values[c.cuts] / best, c.worst_ratio)  # and it is reached
    assert {k for k, w in worst.items() if w <= 1.15 * (1 + REL)} == {c.cuts for c in rb.within}
    assert close(min(worst.values()), rb.best.worst_ratio)


@pytest.mark.parametrize("seed", range(30))
def test_throughput_on_one_link_is_exact(seed):
    """Every partition's slowest stage is max(C, A + B/bw): the sweep finds each change
    of winner exactly, in the ranker's order (ties on the slowest stage go to latency)."""
    rng = np.random.default_rng(3000 + seed)
    inst = random_instance(3000 + seed, int(rng.integers(2, 5)))
    (r,) = ranges_for(inst, rng, [0])
    mapper = Mapper(Ranker(inst, "throughput"), [r])
    bmap = mapper.map()
    assert bmap.exact
    edges = [b.lo for b in bmap.bands[1:]]
    for x in np.geomspace(r.lo, r.hi, 1501):
        if any(near(x, e) for e in edges):
            continue
        values, best = brute(inst, "throughput", {0: x})
        (band,) = [b for b in bmap.bands if b.lo <= x <= b.hi][:1]
        assert close(values[band.cuts], best), (x, band.cuts)
        assert mapper.read((x,)).best == band.cuts  # the one the ranker puts first
    for left, right in itertools.pairwise(bmap.bands):
        values, best = brute(inst, "throughput", {0: left.hi})
        assert close(values[left.cuts], best) and close(values[right.cuts], best)
        assert close(left.ms_at_hi, right.ms_at_lo)


@pytest.mark.parametrize("seed", range(2))
def test_throughput_uses_a_grid_where_it_must_and_says_so(seed):
    """Two links, or a cut space searched rather than enumerated: a grid."""
    rng = np.random.default_rng(3100 + seed)
    inst = random_instance(3100 + seed, 3)
    (r,) = ranges_for(inst, rng, [0])
    bmap = Mapper(Ranker(inst, "throughput", method="dag"), [r]).map()
    assert not bmap.exact and "grid" in bmap.method
    edges = [b.lo for b in bmap.bands[1:]]
    for x in np.geomspace(r.lo, r.hi, 201):
        if any(abs(x - e) <= 1e-6 * e for e in edges):
            continue
        values, best = brute(inst, "throughput", {0: x})
        (band,) = [b for b in bmap.bands if b.lo <= x <= b.hi][:1]
        assert close(values[band.cuts], best), (x, band.cuts)
    two = Mapper(Ranker(inst, "throughput"), ranges_for(inst, rng, [0, 1])).map()
    assert two.grid is not None and not two.exact
    assert sum(r.share for r in two.regions) == pytest.approx(1.0)


def test_a_searched_ranker_maps_like_an_enumerated_one():
    """Above the enumeration limit the oracle is the ranker's search: same map."""
    inst = random_instance(11, 4)
    rng = np.random.default_rng(11)
    ranges = ranges_for(inst, rng, [0, 2])
    a = Mapper(Ranker(inst), ranges).map()
    b = Mapper(Ranker(inst, method="search"), ranges).map()
    assert [r.cuts for r in a.regions] == [r.cuts for r in b.regions]
    assert [r.share for r in a.regions] == pytest.approx([r.share for r in b.regions])
    # robustness: judged among the partitions near the vertices, and says it is not exact
    ra = Mapper(Ranker(inst), ranges).map(robust_percent=25).robust
    rb = Mapper(Ranker(inst, method="search"), ranges).map(robust_percent=25).robust
    assert ra.exact and not rb.exact and rb.considered <= ra.considered
    assert rb.best.worst_ratio >= ra.best.worst_ratio * (1 - 1e-9)  # never better than all
    judged = {c.cuts: c.worst_ratio for c in ra.within}
    for c in rb.within:  # the same worst case for a partition judged both ways
        assert c.worst_ratio == pytest.approx(judged[c.cuts], rel=1e-9)


def test_bad_ranges_are_refused():
    names = ("a-b", "b-c")
    for values, message in [
        ([], "nothing to map"),
        (["a-b=5"], "not LO:HI"),
        (["a-b=x:9"], "not LO:HI"),
        (["a-b=9:5"], "0 < LO < HI"),
        (["a-b=0:5"], "0 < LO < HI"),
        (["a-b=1:inf"], "not LO:HI"),
        (["a-c=1:5"], "unknown link"),
        (["a-b=1:5", "a-b=2:6"], "given twice"),
    ]:
        with pytest.raises(OmdpError, match=message):
            parse_ranges(values, names)
    assert parse_percent("12.5%") == 12.5
    with pytest.raises(OmdpError, match="percentage"):
        parse_percent("-1%")


# -- a session of a built-in model ---------------------------------------------------------

SPEED = {"glasses": 0.9, "phone": 0.3, "cloud": 0.05}  # ms per position


@pytest.fixture(scope="module")
def zoo_session(tmp_path_factory):
    """SqueezeNet's real cut sizes; every planned segment recorded with a time that grows
    with its length on each device (fixed test data, so brute force can check it)."""
    a = analyze("squeezenet")
    n = a.n
    candidates = sorted({n * k // 9 for k in range(1, 9)} - {0, n})
    path = tmp_path_factory.mktemp("zoo") / "squeezenet.omdp"
    s = measured_session(
        path,
        a,
        candidates,
        timing=lambda device, start, end: SPEED[device] * (end - start) + 0.1,
        builtin="squeezenet",
    )
    for device, speed in SPEED.items():  # per-node times a little off the segments' medians
        times = {p: speed * (1.1 if p % 2 else 0.85) for p in range(n)}
        s.record_node_times(device, times, runtime="onnxruntime", runs=3)
    s.close()
    return path


def test_session_map_agrees_with_rankings_at_every_grid_point(zoo_session):
    """The two-link map of a built-in model's session against a re-ranking through the
    ranker (`rank_session`, as `omdp paths` does) at each point of a grid."""
    options = MapOptions(vary=("glasses-phone=1:1000", "phone-cloud=1:1000"))
    with Session.open(zoo_session) as s:
        bmap = map_session(s, options).map
        assert len(bmap.regions) >= 2
        polys = [[(1 / x, 1 / y) for x, y in r.polygon] for r in bmap.regions]
        for x in map(float, np.geomspace(1, 1000, 13)):
            for y in map(float, np.geomspace(1, 1000, 13)):
                owners = [k for k, p in enumerate(polys) if inside(p, (1 / x, 1 / y), REL)]
                if not owners:
                    continue
                ranked = rank_session(
                    s,
                    RankOptions(k=1, bandwidth=(f"glasses-phone={x!r}", f"phone-cloud={y!r}")),
                ).partitions[0]
                region = bmap.regions[owners[0]]
                assert close(region.choice.ms_at((x, y)), ranked.total_ms), (x, y)


VARIANTS = [
    RankOptions(bandwidth=("phone-cloud=5",), latency=("phone-cloud=50",)),
    RankOptions(sink="glasses"),
    RankOptions(memory=("glasses=2", "phone=4")),  # only phone[0,36)  cloud[36,66) fits
    RankOptions(objective="throughput"),
    RankOptions(cost_model="estimated"),
]


@pytest.mark.parametrize(
    "rank", VARIANTS, ids=["fixed-link", "sink", "memory", "throughput", "estimated"]
)
def test_session_map_honours_the_ranking_options(zoo_session, rank):
    """Each band's partition is what `rank_session` ranks first, with the same options, at
    the band's middle; and its cost at the band's ends is the ranked cost there."""
    with Session.open(zoo_session) as s:
        bmap = map_session(s, MapOptions(vary=("glasses-phone=1:1000",), ranking=rank)).map
        assert bmap.exact  # one link: exact for throughput too
        for b in bmap.bands:
            for x, ms in ((b.middle.mbps[0], b.middle.best_ms), (b.lo, b.ms_at_lo)):
                bw = (f"glasses-phone={x!r}", *rank.bandwidth)
                options = dataclasses.replace(rank, k=1, bandwidth=bw)
                ranked = rank_session(s, options).partitions[0]
                assert close(ranked.total_ms, ms)
            ranked = rank_session(
                s,
                dataclasses.replace(
                    rank, k=1, bandwidth=(f"glasses-phone={b.middle.mbps[0]!r}", *rank.bandwidth)
                ),
            ).partitions[0]
            assert ranked.cuts == b.middle.best


def test_a_link_cannot_be_both_varied_and_fixed(zoo_session):
    with Session.open(zoo_session) as s, pytest.raises(OmdpError, match="both set glasses-phone"):
        options = RankOptions(bandwidth=("glasses-phone=5",))
        map_session(s, MapOptions(vary=("glasses-phone=1:10",), ranking=options))


@pytest.mark.parametrize("scale", ["log", "linear"])
def test_region_areas_cover_the_box_on_either_scale(scale):
    """Shares are areas over the box's area, each computed on its own: they add up."""
    inst = random_instance(5, 3)
    rng = np.random.default_rng(5)
    bmap = Mapper(Ranker(inst), ranges_for(inst, rng, [0, 1])).map(scale)
    assert len(bmap.regions) > 1
    assert sum(r.share for r in bmap.regions) == pytest.approx(1.0, rel=1e-9)


def test_the_tui_view_samples_the_ranker_at_each_cell():
    """`view_map` (what the Map view draws): each cell is the ranker's best at its centre,
    with one link (a two-device chain: a strip) or two."""
    inst = random_instance(21, 3)
    ranker = Ranker(inst)
    names, bw, lat = inst.link_names, list(inst.bandwidth_mbps), list(inst.latency_ms)
    for ranges in (
        [LinkRange(names[0], 0, 0.5, 500)],
        [LinkRange(names[1], 1, 0.5, 500), LinkRange(names[0], 0, 1, 50)],
    ):
        view = view_map(ranker, names, bw, lat, ranges, 30, 9)
        assert len(view.labels) == 9 and all(len(row) == 30 for row in view.labels)
        for row in (0, 4, 8):
            for col in (0, 11, 29):
                point = {ranges[0].index: view.xs[col]}
                if len(ranges) == 2:
                    point[ranges[1].index] = view.ys[row]
                values, best = brute(inst, "latency", point)
                assert close(values[view.keys[view.labels[row][col]]], best)
        if len(ranges) == 1:
            assert all(row == view.labels[0] for row in view.labels)
