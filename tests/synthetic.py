"""A measured session without running anything: each device takes a fixed time per
position, so rankings over it are known exactly (shared by the map and solver tests)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from backend.chain import Chain, DeviceSpec, LinkSpec
from backend.model.analysis import ModelAnalysis
from backend.profiling.plan import build_plan
from backend.profiling.session import Session

SPEED = {"glasses": 4.0, "phone": 2.0, "cloud": 0.5}  # ms per position
LINKS = [LinkSpec("glasses", "phone", 20.0, 5.0), LinkSpec("phone", "cloud", 100.0, 20.0)]


def at_speed(device: str, start: int, end: int) -> float:
    return SPEED[device] * (end - start)


def measured_session(
    path: Path,
    analysis: ModelAnalysis,
    candidates: Sequence[int] = (2, 6),
    timing: Callable[[str, int, int], float] = at_speed,
    builtin: str | None = None,
) -> Session:
    """A session at `path` on the chain glasses → phone → cloud (LINKS) whose whole plan is
    measured: `timing(device, start, end)` ms (SPEED per position by default), five equal
    samples each."""
    chain = Chain([DeviceSpec(n) for n in SPEED], LINKS)
    s = Session.create(path, analysis, chain, list(candidates), builtin=builtin)
    plan = build_plan(analysis.n, list(candidates), chain.names)
    s.save_plan(plan)
    for it in plan.items:
        ms = timing(it.device, it.start, it.end)
        s.record_result(
            it.device,
            (it.start, it.end),
            load_ms=1.0,
            samples=[ms] * 5,
            stats={"median": ms, "p10": ms, "p90": ms, "mean": ms, "std": 0.0, "rel_ci": 0.0},
        )
    return s
