"""Ranking a session: its measurements priced under given link values, the K best.

`rank_session` is the one-shot ranking the CLI verbs share (link values as the user typed
them, a sink, memory limits). The TUI re-ranks on every keystroke instead: it prices the
session once with `price_session` and keeps a `Ranker` over it (~1 ms a ranking).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass

from backend.errors import OmdpError
from backend.model.analysis import ModelAnalysis
from backend.profiling import noise
from backend.profiling.session import Session
from backend.solver.costs import SegmentInstance
from backend.solver.link_models import session_links
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
    candidates: tuple[str, ...] = ()  # positions or node names ranked too, not stored
    save_links: bool = False  # store the given link values as the session's current ones
    link_model: str = "typed"  # how link values become transfer times (solver.link_models)
    measured_links: bool = False  # measured link values where a link has them


@dataclass
class Ranked:
    """The priced session (with the link values used) and its best partitions."""

    instance: SegmentInstance
    partitions: list[Partition]
    warnings: list[str] = dataclasses.field(default_factory=list)


def throttle_warnings(session: Session, partitions: list[Partition]) -> list[str]:
    """One line per measured segment a ranked partition uses that was timed while its
    device throttled (hot, or its CPU below its maximum frequency): its time is suspect."""
    suspect = noise.throttled(session)
    lines = []
    for (device, a, b), reason in suspect.items():
        ranks = [
            p.rank
            for p in partitions
            if any((s.device, s.start, s.end) == (device, a, b) for s in p.stages)
        ]
        if ranks:
            lines.append(
                f"{device} [{a}, {b}) was timed while throttled ({reason}); used by "
                f"partition(s) {', '.join(f'#{r}' for r in ranks)}: re-measure it with "
                f"`omdp profile --session {session.path} --remeasure throttled`"
            )
    return lines


def limit_memory(
    analysis: ModelAnalysis, inst: SegmentInstance, limits_mib: Mapping[str, float]
) -> SegmentInstance:
    """`inst` where a segment runs on a device only if its weights and largest live cut fit
    the device's limit (MiB; a device not named has none)."""
    limits = {d: v for d, v in limits_mib.items() if d in inst.devices}
    if not limits:
        return dataclasses.replace(inst, memory=None)
    return dataclasses.replace(inst, memory=memory_needs(analysis, inst, limits))


def rank_session(session: Session, options: RankOptions) -> Ranked:
    """The session's instance under the options' link values, and its top K."""
    inst = priced_session(session, options)
    parts = top_k(inst, options.k, options.objective, cost_model=options.cost_model)
    return Ranked(inst, parts, throttle_warnings(session, parts))


def priced_session(session: Session, options: RankOptions) -> SegmentInstance:
    """The session priced under the options' link values, sink and memory limits (the
    link values become the session's current ones when the options say so)."""
    chain = session.chain()
    names = chain.link_names
    bandwidth = parse_values(options.bandwidth, names, BANDWIDTH)
    latency = parse_values(options.latency, names, LATENCY)
    extra = extra_candidates(session, options.candidates) if options.candidates else None
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
        session,
        bandwidth_mbps=bandwidth,
        latency_ms=latency,
        sink=options.sink,
        extra_candidates=extra,
    )
    if options.cost_model != "measured" and not inst.has_cost_model(options.cost_model):
        raise OmdpError(
            f"session {session.path} has no per-node times for the {options.cost_model} model",
            "profile it again (per-node times are measured with the plan) or use --model measured",
        )
    if options.link_model != "typed":
        bw, lat = session_links(session, options.link_model, inst.bandwidth_mbps, inst.latency_ms)
        inst = dataclasses.replace(inst, bandwidth_mbps=bw, latency_ms=lat)
    if options.memory:
        limits = parse_values(options.memory, chain.names, MEMORY, "device")
        inst = limit_memory(session_analysis(session), inst, limits)
    if options.save_links and (bandwidth or latency):
        current = session.bandwidths()
        session.set_bandwidths(
            {
                i: (bandwidth.get(n, current[i][0]), latency.get(n, current[i][1]))
                for i, n in enumerate(names)
            }
        )
    return inst


def extra_candidates(session: Session, specs: tuple[str, ...]) -> dict[int, float | None]:
    """{position: cut bytes} of candidates named for one ranking (indices or node names),
    from the session's model (analysed again: the cut bytes of a new position)."""
    analysis = session_analysis(session)
    out: dict[int, float | None] = {}
    for spec in specs:
        for part in (x.strip() for x in spec.split(",")):
            p = analysis.resolve(part)
            if not 0 < p < analysis.n:
                raise OmdpError(
                    f"candidate {p} is not inside the model",
                    f"give a position from 1 to {analysis.n - 1}",
                )
            out[p] = analysis.cuts[p].bytes
    return out


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
