"""Replaying a recorded bandwidth trace for one link over a session's ranking.

Every step of the trace is ranked and every partition priced over the whole trace (the
best per step, how often each is best, the robust choices). Slow enough for a worker
thread; it touches no session (the ranker was built from one beforehand).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

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
