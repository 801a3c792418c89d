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


@dataclass
class Ranked:
    """The priced session (with the link values used) and its best partitions."""

    instance: SegmentInstance
    partitions: list[Partition]
    warnings: list[str] = dataclasses.field(default_factory=list)


def throttle_warnings(session: Session, partitions: list[Partition]) -> list[str]:
    """One line per measured segment a ranked partition uses that was timed while its
    device throttled (hot, or its CPU below its maximum frequency): its time is suspect."""
    frame = session.results_frame()
    flagged = frame[frame["status"].eq("ok") & frame["throttled"].notna()]
    suspect = {(r.device, r.start, r.end): r.throttled for r in flagged.itertuples()}
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
                "`omdp profile ... --retry-throttled`"
            )
    return lines


def rank_session(session: Session, options: RankOptions) -> Ranked:
    """The session's instance under the options' link values, and its top K."""
    chain = session.chain()
    names = chain.link_names
    bandwidth = parse_values(options.bandwidth, names, BANDWIDTH)
    latency = parse_values(options.latency, names, LATENCY)
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
    parts = top_k(inst, options.k, options.objective, cost_model=options.cost_model)
    return Ranked(inst, parts, throttle_warnings(session, parts))


def price_session(session: Session) -> SegmentInstance | None:
    """The session priced under its current link values; None while nothing is measured."""
    return instance_from_session(session) if has_measurements(session) else None
