"""Ranking a session: its measurements priced under given link values, the K best.

`rank_session` is the one-shot ranking the CLI verbs share (link values as the user typed
them, a sink, memory limits). The TUI re-ranks on every keystroke instead: it prices the
session once with `price_session` and keeps a `Ranker` over it (~1 ms a ranking).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from backend.errors import OmdpError
from backend.profiling.session import Session
from backend.solver.costs import SegmentInstance
from backend.solver.link_values import BANDWIDTH, LATENCY, MEMORY, parse_values
from backend.solver.pricing import instance_from_session, memory_needs
from backend.solver.ranking import Partition, top_k
from backend.usecases.sessions import has_measurements, session_analysis


@dataclass(frozen=True)
class RankOptions:
    """How to rank. Link values and memory limits are `NAME=VALUE` texts as the user
    typed them (checked against the session's links and devices here)."""

    k: int = 10
    cost_model: str = "measured"
    objective: str = "latency"
    sink: str | None = None  # the device the output must end on
    bandwidth: tuple[str, ...] = ()  # LINK=MBPS
    latency: tuple[str, ...] = ()  # LINK=MS
    memory: tuple[str, ...] = ()  # DEVICE=MIB
    save_links: bool = False  # store the given link values as the session's current ones
    measured_links: bool = False  # measured link values where a link has them


@dataclass
class Ranked:
    """The priced session (with the link values used) and its best partitions."""

    instance: SegmentInstance
    partitions: list[Partition]


def rank_session(session: Session, options: RankOptions) -> Ranked:
    """The session's instance under the options' link values, and its top K."""
    chain = session.chain()
    names = chain.link_names
    bandwidth = parse_values(options.bandwidth, names, BANDWIDTH)
    latency = parse_values(options.latency, names, LATENCY)
    if options.measured_links:
        measured_bw, measured_lat = measured_link_values(session)
        if not measured_bw and not measured_lat:
            raise OmdpError(
                f"session {session.path} has no measured links",
                "measure them first (`omdp links measure`, or l on the TUI's devices screen)",
            )
        bandwidth = {**measured_bw, **bandwidth}  # what is typed on the command line wins
        latency = {**measured_lat, **latency}
    inst = instance_from_session(
        session, bandwidth_mbps=bandwidth, latency_ms=latency, sink=options.sink
    )
    if options.cost_model == "estimated" and inst.estimated_ms is None:
        raise OmdpError(
            f"session {session.path} has no per-node times for the estimated model",
            "profile it again (per-node times are measured with the plan) or use --model measured",
        )
    if options.memory:
        limits = parse_values(options.memory, chain.names, MEMORY, "device")
        inst = dataclasses.replace(
            inst, memory=memory_needs(session_analysis(session), inst, limits)
        )
    if options.save_links and (bandwidth or latency):
        current = session.bandwidths()
        session.set_bandwidths(
            {
                i: (bandwidth.get(n, current[i][0]), latency.get(n, current[i][1]))
                for i, n in enumerate(names)
            }
        )
    return Ranked(inst, top_k(inst, options.k, options.objective, cost_model=options.cost_model))


def measured_link_values(session: Session) -> tuple[dict[str, float], dict[str, float]]:
    """Link name → measured bandwidth (Mbit/s) and latency (ms), for links measured."""
    names = session.chain().link_names
    bandwidth, latency = {}, {}
    for i, row in enumerate(session.links_frame().to_dict("records")):
        if i >= len(names):
            break
        bw, lat = row.get("measured_bandwidth_mbps"), row.get("measured_latency_ms")
        if isinstance(bw, int | float) and bw == bw and bw > 0:
            bandwidth[names[i]] = float(bw)
        if isinstance(lat, int | float) and lat == lat and lat >= 0:
            latency[names[i]] = float(lat)
    return bandwidth, latency


@dataclass(frozen=True)
class LinkInUse:
    """The values a ranking uses for one link, and where each came from."""

    name: str
    bandwidth_mbps: float
    latency_ms: float
    bandwidth_from: str  # "typed" (the session's current values) | "given" | "measured"
    latency_from: str


def links_in_use(session: Session, options: RankOptions) -> list[LinkInUse]:
    """What `rank_session` uses for each link under `options`, said per value."""
    names = session.chain().link_names
    given_bw = parse_values(options.bandwidth, names, BANDWIDTH)
    given_lat = parse_values(options.latency, names, LATENCY)
    measured_bw, measured_lat = (
        measured_link_values(session) if options.measured_links else ({}, {})
    )
    out = []
    for name, (bw, lat) in zip(names, session.bandwidths(), strict=False):
        b_from = "given" if name in given_bw else "measured" if name in measured_bw else "typed"
        l_from = "given" if name in given_lat else "measured" if name in measured_lat else "typed"
        out.append(
            LinkInUse(
                name,
                given_bw.get(name, measured_bw.get(name, bw)),
                given_lat.get(name, measured_lat.get(name, lat)),
                b_from,
                l_from,
            )
        )
    return out


def adopt_measured_links(session: Session) -> list[str]:
    """Make the measured link values the session's current ones (where measured);
    returns the links changed."""
    measured_bw, measured_lat = measured_link_values(session)
    names = session.chain().link_names
    current = session.bandwidths()
    values = {
        i: (measured_bw.get(n, current[i][0]), measured_lat.get(n, current[i][1]))
        for i, n in enumerate(names)
    }
    changed = [n for i, n in enumerate(names) if values[i] != tuple(current[i])]
    if changed:
        session.set_bandwidths(values)
    return changed


def price_session(session: Session) -> SegmentInstance | None:
    """The session priced under its current link values; None while nothing is measured."""
    return instance_from_session(session) if has_measurements(session) else None
