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

from backend.errors import OmdpError
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
