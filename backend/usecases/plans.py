"""What a plan asks and how long measuring it takes: the one estimator.

The estimate is per device (FLOPs over a speed, times the runs a segment takes, plus its
load time: learnt from this session's measurements, else from the same device's earlier
sessions — `backend.profiling.calibration` — else its configured GFLOP/s and guesses; see
`backend.profiling.plan.estimate`), then as wall time: local devices sharing CPUs measure
one at a time unless `share_cpus`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from backend.chain import Chain
from backend.device.protocol import TimingSettings
from backend.model.analysis import ModelAnalysis
from backend.profiling import calibration, plan
from backend.profiling.jobs import cpu_claims, wall_seconds
from backend.profiling.plan import Plan, PlanItem
from backend.profiling.session import Session


@dataclass
class TimeEstimate:
    """How long measuring some plan items takes."""

    seconds: float  # wall time
    per_device: dict[str, float]  # each device's own time: the profiler's first ETAs
    from_measurements: bool  # some device's rate came from measurements (here or earlier)


def build(analysis: ModelAnalysis, chain: Chain, candidates: Sequence[int]) -> Plan:
    """The segments each device measures for these candidates."""
    return plan.build_plan(analysis.n, candidates, chain.names)


def estimate(
    session: Session,
    analysis: ModelAnalysis,
    chain: Chain,
    items: Sequence[PlanItem],
    timing: TimingSettings,
    share_cpus: bool = False,
) -> TimeEstimate:
    """Seconds to measure `items` on `chain` under `timing`."""
    flops_of = plan.segment_flops([n.flops for n in analysis.nodes])
    return _estimate(session, flops_of, chain, items, timing, share_cpus, True)


def _estimate(
    session: Session,
    flops_of: Callable[[int, int], int],
    chain: Chain,
    items: Sequence[PlanItem],
    timing: TimingSettings,
    share_cpus: bool,
    paced: bool,
) -> TimeEstimate:
    rates = {
        **calibration.remembered(chain),
        **calibration.from_rows(session.results_frame().to_dict("records"), flops_of),
    }
    configured = {d.name: d.gflops for d in chain.devices if d.gflops}
    est = plan.estimate(
        items,
        flops_of,
        timing,
        configured,
        {d: r.gflops for d, r in rates.items()},
        {d: r.runs for d, r in rates.items()},
        {d: r.overhead_s for d, r in rates.items()},
    )
    pace = calibration.pace(chain) if paced else 1.0
    per_device = {d: t * pace for d, t in est.per_device.items()}
    seconds = wall_seconds(per_device, cpu_claims(chain, share_cpus), chain.names)
    return TimeEstimate(seconds, per_device, bool(rates))


def learn(
    session: Session,
    chain: Chain,
    done: Sequence[PlanItem] = (),
    seconds: float = 0.0,
    timing: TimingSettings | None = None,
    share_cpus: bool = False,
) -> None:
    """Keep what this session's measurements say of its devices, for later estimates:
    their rates, and — when a run measured `done` in `seconds` — how the chain's real
    pace compares with what those rates predict (agents starting, machines busy)."""
    flops_of = plan.segment_flops(session.model().node_flops)
    rows = session.results_frame().to_dict("records")
    calibration.remember(chain, calibration.from_rows(rows, flops_of))
    if done and seconds > 0 and timing is not None:
        predicted = _estimate(session, flops_of, chain, done, timing, share_cpus, False)
        if predicted.seconds > 0:
            calibration.remember_pace(chain, seconds / predicted.seconds)


def cpu_waits(chain: Chain, share_cpus: bool = False) -> dict[str, list[str]]:
    """Device → the earlier devices it shares CPUs with: it measures after them (the
    reason the wall time exceeds the slowest device's own time)."""
    claims = cpu_claims(chain, share_cpus)
    names = chain.names
    waits = {n: [m for m in names[:i] if claims[n] & claims[m]] for i, n in enumerate(names)}
    return {n: w for n, w in waits.items() if w}
