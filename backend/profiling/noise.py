"""Which measurements are noisy: their confidence interval missed the timing target.

The agent times a segment until the median's CI half-width falls below the target
(`TimingSettings.target_rel_ci`) or a budget runs out (`stop` = max_runs / max_seconds).
A result stopped by a budget, or whose CI is above the target, is noisy: its median may be
far from the device's real time (a cloud segment at 64 ms in one run, 19 ms in the next),
so every front-end marks it, and the operator can measure it again.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from backend.device.protocol import TimingSettings

if TYPE_CHECKING:
    import pandas as pd

    from backend.profiling.session import Session

MARK = "!"  # beside a noisy value, in every table
BUDGET_STOPS = ("max_runs", "max_seconds")


def target_of(timing: Mapping[str, Any] | None) -> float:
    """The CI target the session was measured with (its `timing` meta), else the default."""
    value = (timing or {}).get("target_rel_ci")
    if isinstance(value, int | float) and math.isfinite(value) and value >= 0:
        return float(value)
    return TimingSettings().target_rel_ci


def is_noisy(row: Mapping[str, Any], target_rel_ci: float) -> bool:
    """An ok measurement whose CI missed `target_rel_ci` (or that a budget stopped)."""
    if row.get("status") != "ok":
        return False
    if row.get("stop") in BUDGET_STOPS:
        return True
    rel_ci = row.get("rel_ci")
    return isinstance(rel_ci, int | float) and math.isfinite(rel_ci) and rel_ci > target_rel_ci


def why(row: Mapping[str, Any], target_rel_ci: float) -> str:
    """'CI ±40% > 2% target (stopped by max_seconds)'."""
    rel_ci = row.get("rel_ci")
    ci = (
        f"CI ±{rel_ci * 100:.0f}%"
        if isinstance(rel_ci, int | float) and math.isfinite(rel_ci)
        else "CI unknown"
    )
    stop = f" (stopped by {row['stop']})" if row.get("stop") in BUDGET_STOPS else ""
    return f"{ci}, target {target_rel_ci * 100:g}%{stop}"


def throttled(
    session: Session, frame: pd.DataFrame | None = None
) -> dict[tuple[str, int, int], str]:
    """(device, start, end) -> why, for the session's measurements timed while their
    device throttled (hot, or its CPU below its maximum frequency; current configurations).
    `frame`: the session's `results_frame()` when the caller has read it already."""
    frame = session.results_frame() if frame is None else frame
    return {
        (r["device"], int(r["start"]), int(r["end"])): r["throttled"]
        for r in frame.to_dict("records")
        if r["status"] == "ok" and isinstance(r.get("throttled"), str)
    }


def noisy_keys(session: Session, frame: pd.DataFrame | None = None) -> set[tuple[str, int, int]]:
    """(device, start, end) of the session's noisy measurements (current configurations).
    `frame`: the session's `results_frame()` when the caller has read it already."""
    target = target_of(session.get_meta("timing"))
    frame = session.results_frame() if frame is None else frame
    return {
        (r["device"], int(r["start"]), int(r["end"]))
        for r in frame.to_dict("records")
        if is_noisy(r, target)
    }
