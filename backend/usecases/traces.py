"""Replaying a recorded bandwidth trace for one link over a session's ranking.

Every step of the trace is ranked and every partition priced over the whole trace (the
best per step, how often each is best, the robust choices). Slow enough for a worker
thread; it touches no session (the ranker was built from one beforehand).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from backend.profiling.session import Session
from backend.solver.costs import SegmentInstance
from backend.solver.pricing import instance_from_session
from backend.solver.ranking import Ranker
from backend.solver.traces import Timeline, TraceAnalysis, align_traces, analyse_trace, load_trace


@dataclass
class TraceReplay:
    """One link's trace aligned into a timeline, and the engine's analysis of it."""

    path: str
    link: str
    link_index: int
    timeline: Timeline
    analysis: TraceAnalysis


def replay_trace(
    ranker: Ranker,
    names: Sequence[str],
    bandwidths: Sequence[float],
    latencies: Sequence[float],
    path: str,
    link: str,
) -> TraceReplay:
    """Read the trace at `path` for `link`; the other links keep `bandwidths`."""
    trace = load_trace(path, link)
    timeline = align_traces({link: trace}, names, bandwidths)
    analysis = analyse_trace(ranker, timeline, latency_ms=latencies)
    return TraceReplay(
        path=str(path),
        link=link,
        link_index=list(names).index(link),
        timeline=timeline,
        analysis=analysis,
    )


@dataclass
class SessionReplay:
    """Several links' traces over a session: the instance priced, the timeline, the
    analysis."""

    instance: SegmentInstance
    timeline: Timeline
    analysis: TraceAnalysis


def replay_session(
    session: Session,
    files: Mapping[str, str],
    *,
    latency_ms: Mapping[str, float] | None = None,
    sink: str | None = None,
    objective: str = "latency",
    cost_model: str = "measured",
) -> SessionReplay:
    """Replay a trace file per link (`files`: link name → path) over the session's
    ranking; links without a trace keep the session's bandwidth."""
    names = session.chain().link_names
    traces = {link: load_trace(path, link) for link, path in files.items()}
    inst = instance_from_session(session, latency_ms=dict(latency_ms or {}), sink=sink)
    timeline = align_traces(traces, names, list(inst.bandwidth_mbps))
    analysis = analyse_trace(Ranker(inst, objective, cost_model), timeline)
    return SessionReplay(inst, timeline, analysis)
