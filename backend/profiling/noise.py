"""Which measurements are noisy: their confidence interval missed the timing target.

The agent times a segment until the median's CI half-width falls below the target
(`TimingSettings.target_rel_ci`) or a budget runs out (`stop` = max_runs / max_seconds).
A result stopped by a budget, or whose CI is above the target, is noisy: its median may be
far from the device's real time (a cloud segment at 64 ms in one run, 19 ms in the next),
so every front-end marks it, and the operator can measure it again.

A CI only sees the runs of one measurement: a machine that changes speed between two
measurements (a busy neighbour, a cloud VM's CPU share) leaves each CI tight and their
medians wrong against each other. That shows where a segment takes much longer than a
segment containing it on the same device (which runs all its nodes and more): both are
noisy too (`contradicted`), since which one was timed at the odd moment is not known.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from backend.device.protocol import TimingSettings
from backend.units import ms_unit

if TYPE_CHECKING:
    import pandas as pd

    from backend.profiling.session import Session

MARK = "!"  # beside a noisy value, in every table
BUDGET_STOPS = ("max_runs", "max_seconds")
# A segment may take a little longer than one containing it (its end's tensors are
# materialised, a fusion across that end is lost), never a quarter longer: a cut costs
# copies of tensors, not a quarter of the nodes' work.
CONTRADICTION = 1.25
# ... plus what a session call and the timer add to a tiny segment (tens of µs): below it,
# two sub-millisecond segments cannot contradict each other
CONTRADICTION_MS = 0.1


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
    frame = annotated(session.results_frame() if frame is None else frame, target)
    return {
        (r["device"], int(r["start"]), int(r["end"]))
        for r in frame.to_dict("records")
        if r["noisy"]
    }


def annotated(frame: pd.DataFrame, target_rel_ci: float) -> pd.DataFrame:
    """`frame` (a `results_frame()`) with, per row, `contradicts` (why another
    measurement contradicts it, else None) and `noisy` (its CI missed `target_rel_ci`, a
    budget stopped it, or it is contradicted): the one place that decides what is marked."""
    contra = contradicted(frame)
    rows = frame.to_dict("records")
    keys = [(r["device"], int(r["start"]), int(r["end"])) for r in rows]
    out = frame.copy()
    out["contradicts"] = [contra.get(k) for k in keys]
    out["noisy"] = [
        is_noisy(r, target_rel_ci) or k in contra for r, k in zip(rows, keys, strict=True)
    ]
    return out


def contradicted(frame: pd.DataFrame) -> dict[tuple[str, int, int], str]:
    """(device, start, end) -> why, for ok measurements that contradict another of the same
    device and configuration: a segment timed more than CONTRADICTION × a segment that
    contains it (+ CONTRADICTION_MS), and the fastest such segment. O(P²) per device for
    P distinct positions."""
    out: dict[tuple[str, int, int], str] = {}
    if frame.empty:
        return out
    ok = frame[(frame["status"] == "ok") & (frame["median_ms"] > 0)]
    for (device, _), rows in ok.groupby(["device", "config"], sort=False):
        a = rows["start"].to_numpy(np.int64)
        b = rows["end"].to_numpy(np.int64)
        ms = rows["median_ms"].to_numpy(float)
        pos = np.unique(np.concatenate([a, b]))
        i, j = np.searchsorted(pos, a), np.searchsorted(pos, b)
        grid = np.full((len(pos), len(pos)), np.inf)
        np.minimum.at(grid, (i, j), ms)
        # fastest segment [s, e) with s <= pos[i'] and e >= pos[j'], itself included
        held = np.minimum.accumulate(grid, axis=0)
        held = np.minimum.accumulate(held[:, ::-1], axis=1)[:, ::-1]
        # ... and without itself: starting strictly before, or ending strictly after
        before = np.vstack([np.full((1, len(pos)), np.inf), held[:-1]])
        after = np.hstack([held[:, 1:], np.full((len(pos), 1), np.inf)])
        fastest = np.minimum(before, after)[i, j]
        for k in np.flatnonzero(ms > CONTRADICTION * fastest + CONTRADICTION_MS):
            inside = (a <= a[k]) & (b >= b[k]) & ((a != a[k]) | (b != b[k]))
            sup = int(np.flatnonzero(inside)[np.argmin(np.where(inside, ms, np.inf)[inside])])
            small, big = f"[{a[k]},{b[k]})", f"[{a[sup]},{b[sup]})"
            out[(device, int(a[k]), int(b[k]))] = (
                f"slower than {big} ({ms_unit(ms[sup])}), which contains it"
            )
            out.setdefault(
                (device, int(a[sup]), int(b[sup])),
                f"faster than {small} ({ms_unit(ms[k])}), which it contains",
            )
    return out
