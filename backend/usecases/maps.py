"""Mapping a session: which partition is best while one or two links range over a box.

`map_session` is what `omdp map` runs: the session priced under the options (fixed links,
sink, memory limits, cost model), a ranker over it, and the map of the varying links
(`backend.solver.bandwidth_map`). The TUI keeps a `Mapper` instead (`mapper_for`) so its
cursor can read the map at any point without pricing the session again.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from backend.errors import OmdpError
from backend.map_image import write_image
from backend.profiling.session import Session
from backend.solver.bandwidth_map import BandwidthMap, LinkRange, Mapper
from backend.solver.costs import SegmentInstance
from backend.solver.link_values import split_pairs
from backend.solver.segment_ranker import Ranker
from backend.usecases.rankings import RankOptions, priced_session
from backend.usecases.sessions import has_measurements


@dataclass(frozen=True)
class MapOptions:
    """What to map: `LINK=LO:HI` texts as typed (one or two), the ranking options for
    everything else, the scale of the area shares, and `--robust` as typed (`10%`)."""

    vary: tuple[str, ...]
    ranking: RankOptions = field(default_factory=RankOptions)
    scale: str = "log"
    robust: str | None = None


@dataclass
class SessionMap:
    instance: SegmentInstance
    map: BandwidthMap


def parse_ranges(values: Sequence[str], names: Sequence[str]) -> list[LinkRange]:
    """["a-b=5:100", ...] → link ranges (Mbit/s), one or two, each link once."""
    if not values:
        raise OmdpError("nothing to map", f"give --vary LINK=LO:HI, e.g. {names[0]}=5:100")
    pairs = split_pairs(values, names, "--vary", "LO:HI")
    if len(pairs) > 2:
        raise OmdpError(
            f"--vary is given for {len(pairs)} links; a map shows one or two",
            "keep two --vary and fix the others with --bw",
        )
    out = []
    for name, text in pairs.items():
        lo_text, sep, hi_text = text.partition(":")
        try:
            lo, hi = float(lo_text), float(hi_text)
        except ValueError:
            lo = hi = math.nan
        if not sep or not (math.isfinite(lo) and math.isfinite(hi)):
            raise OmdpError(
                f"the range of {name} is not LO:HI in Mbit/s: {text!r}",
                f"e.g. --vary {name}=5:100",
            )
        out.append(LinkRange(name, list(names).index(name), lo, hi))
    return out


def parse_percent(text: str) -> float:
    """`10%` or `10` → 10.0 (a finite percentage ≥ 0)."""
    raw = text.strip().removesuffix("%")
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and 0 <= value <= 1000):
        raise OmdpError(
            f"--robust must be a percentage from 0 to 1000, got {text!r}", "e.g. --robust 10%"
        )
    return value


def mapper_for(
    inst: SegmentInstance, ranges: Sequence[LinkRange], objective: str, cost_model: str
) -> Mapper:
    """A mapper over a priced instance (its link values fix the links that do not vary)."""
    return Mapper(Ranker(inst, objective, cost_model), ranges)


def map_session(session: Session, options: MapOptions) -> SessionMap:
    """The map the options ask for, over the session's measurements."""
    names = session.chain().link_names
    if not names:
        raise OmdpError("the chain has one device and no link", "add a device to map a link")
    ranges = parse_ranges(options.vary, names)
    robust = None if options.robust is None else parse_percent(options.robust)
    fixed = {text.partition("=")[0].strip() for text in options.ranking.bandwidth}
    both = [r.link for r in ranges if r.link in fixed]
    if both:
        raise OmdpError(
            f"--bw and --vary both set {both[0]}", "vary it, or fix it with --bw, not both"
        )
    if not has_measurements(session):
        raise OmdpError(
            f"session {session.path} has no measurements yet", "profile it first (`omdp profile`)"
        )
    inst = priced_session(session, options.ranking)
    rank = options.ranking
    mapper = mapper_for(inst, ranges, rank.objective, rank.cost_model)
    return SessionMap(inst, mapper.map(options.scale, robust))


@dataclass
class MapView:
    """What the TUI draws: the map, a label per character cell (rows top to bottom = high
    to low bandwidth on the second link), the partitions those labels index (the map's
    regions first, in their order), and the mapper to read any point."""

    mapper: Mapper
    map: BandwidthMap
    xs: list[float]  # Mbit/s at each column's centre, log-spaced
    ys: list[float]  # Mbit/s at each row's centre, top row first
    labels: list[list[int]]
    keys: list[tuple[int, ...]]


def view_map(
    ranker: Ranker,
    names: Sequence[str],
    bandwidths: Sequence[float],
    latencies: Sequence[float],
    ranges: Sequence[LinkRange],
    cols: int,
    rows: int,
) -> MapView:
    """The map of one or two links over a ranker already built (the TUI's), the other
    links at `bandwidths`/`latencies`, sampled at the centres of a cols x rows character
    grid (exact at each centre: the ranker's best there)."""
    mapper = Mapper(
        ranker,
        ranges,
        dict(zip(names, bandwidths, strict=True)),
        dict(zip(names, latencies, strict=True)),
    )
    bmap = mapper.map()
    rx = ranges[0]
    xs = [rx.lo * (rx.hi / rx.lo) ** ((i + 0.5) / cols) for i in range(cols)]
    if len(ranges) == 2:
        ry = ranges[1]
        ys = [ry.lo * (ry.hi / ry.lo) ** ((j + 0.5) / rows) for j in reversed(range(rows))]
        grid, found, _ = mapper.winners(xs, ys)
        keys = [r.cuts for r in bmap.regions]
    else:  # one link (a two-device chain): one strip, repeated down the rows
        best = [mapper.read((x,)).best for x in xs]
        found = list(dict.fromkeys(best))
        grid = np.array([[found.index(b) for b in best]] * rows)
        ys = []
        keys = [b.cuts for b in bmap.bands]
    keys = list(dict.fromkeys(keys))
    keys += [k for k in found if k not in keys]  # a sliver the grid sees first
    index = [keys.index(k) for k in found]
    labels = [[index[v] if v >= 0 else -1 for v in row] for row in grid.tolist()]
    return MapView(mapper, bmap, xs, ys, labels, keys)


def default_image_path(session_path: str | Path | None, links: Sequence[str]) -> Path:
    """`<session>-map-<links>.svg` next to the session (or in the working folder)."""
    tail = "-".join(links)
    if session_path is None:
        return Path(f"map-{tail}.svg")
    p = Path(session_path)
    return p.with_name(f"{p.stem}-map-{tail}.svg")


def export_image(
    bmap: BandwidthMap, path: str | Path, title: str, point: Sequence[float] | None = None
) -> Path:
    """Write the map as an SVG image (whole or not at all), `point` marked as now."""
    write_image(bmap, str(path), title, point)
    return Path(path)
