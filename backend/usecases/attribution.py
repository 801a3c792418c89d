"""Why a segment costs what it does: each block's Shapley share of a device's measured
times beside its layer sum, the overhead of cutting at each candidate, and how well each
estimator predicts a measured segment from the others (docs/attribution.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from backend.errors import OmdpError
from backend.profiling.session import Session
from backend.solver.attribution import shapley
from backend.solver.estimators import (
    CHOSEN,
    ESTIMATORS,
    DeviceTimes,
    Evaluation,
    choose,
    cut_overheads,
    fit,
    leave_one_out,
    run_values,
)
from backend.solver.pricing import device_times

NODE_COVER = (0.5, 2.0)  # per-node times' sum / whole-model time where layer sums mean something


@dataclass(frozen=True)
class Block:
    """One block [start, end) between consecutive candidates on one device."""

    start: int
    end: int
    share_ms: float  # Shapley value
    error_ms: float | None  # sampled: half-width at 99.9% confidence; None: exact
    layer_sum_ms: float
    cut_overhead_ms: float | None  # what cutting the whole model at `end` adds (None at N)
    cut_estimated: bool  # that overhead uses an estimated run


@dataclass(frozen=True)
class DeviceAttribution:
    device: str
    blocks: list[Block]
    whole_ms: float  # the whole model's value: the shares add up to it
    whole_measured: bool
    exact: bool
    samples: int
    runs: int  # runs of consecutive blocks
    runs_measured: int  # ... with a measurement (the others: the `estimator`'s value)
    estimator: str = CHOSEN  # the approach that valued the runs not measured
    node_cover: float | None = None  # per-node times' sum / the whole model's value

    @property
    def layer_sums_meaningful(self) -> bool:
        """False where the per-node times miss most of the time (kernels the runtime's
        profiler could not map to nodes) or far exceed it: layer sums say little there."""
        return self.node_cover is None or bool(NODE_COVER[0] <= self.node_cover <= NODE_COVER[1])

    def to_dict(self) -> dict[str, Any]:
        return {
            "device": self.device,
            "whole_ms": self.whole_ms,
            "whole_measured": self.whole_measured,
            "exact": self.exact,
            "samples": self.samples,
            "runs": self.runs,
            "runs_measured": self.runs_measured,
            "estimator": self.estimator,
            "node_cover": self.node_cover,
            "layer_sums_meaningful": self.layer_sums_meaningful,
            "blocks": [
                {
                    "start": b.start,
                    "end": b.end,
                    "share_ms": b.share_ms,
                    "error_ms": b.error_ms,
                    "layer_sum_ms": b.layer_sum_ms,
                    "cut_overhead_ms": b.cut_overhead_ms,
                    "cut_estimated": b.cut_estimated,
                }
                for b in self.blocks
            ],
        }


@dataclass(frozen=True)
class SessionAttribution:
    candidates: list[int]  # 0 and N included: the blocks' bounds
    devices: list[DeviceAttribution]
    skipped: dict[str, str]  # device -> why it has no attribution

    def to_dict(self) -> dict[str, Any]:
        return {
            "candidates": self.candidates,
            "devices": [d.to_dict() for d in self.devices],
            "skipped": self.skipped,
        }


def session_blocks(session: Session) -> np.ndarray:
    """The candidates with 0 and N: block k is [blocks[k], blocks[k+1])."""
    n = session.model().nodes
    return np.array(sorted({0, n, *session.candidates()}), dtype=np.int64)


def attribute_device(times: DeviceTimes, blocks: np.ndarray) -> DeviceAttribution:
    """Shapley shares of one device's run game (measured runs, the others valued by the
    approach `auto` picks for the device)."""
    approach = choose(times, blocks)
    values, estimated = run_values(times, blocks, fit(approach, times, blocks))
    shares = shapley(values)
    overhead = cut_overheads(values)
    m = len(blocks)
    runs = m * (m - 1) // 2
    layer = times.layer_sum(blocks[:-1], blocks[1:])
    out = []
    for k in range(m - 1):
        inner = k + 1 < m - 1
        out.append(
            Block(
                start=int(blocks[k]),
                end=int(blocks[k + 1]),
                share_ms=float(shares.values[k]),
                error_ms=None if shares.error is None else float(shares.error[k]),
                layer_sum_ms=float(layer[k]),
                cut_overhead_ms=float(overhead[k + 1]) if inner else None,
                cut_estimated=inner
                and bool(estimated[0, k + 1] or estimated[k + 1, m - 1] or estimated[0, m - 1]),
            )
        )
    return DeviceAttribution(
        device=times.device,
        blocks=out,
        whole_ms=float(values[0, m - 1]),
        whole_measured=not bool(estimated[0, m - 1]),
        exact=shares.exact,
        samples=shares.samples,
        runs=runs,
        runs_measured=runs - int(estimated[np.triu_indices(m, 1)].sum()),
        estimator=approach,
        node_cover=float(times.node_ms.sum() / values[0, m - 1]) if values[0, m - 1] > 0 else None,
    )


def _times(session: Session, device: str | None) -> tuple[dict[str, DeviceTimes], dict[str, str]]:
    names = session.chain().names
    if device is not None and device not in names:
        raise OmdpError(f"unknown device {device!r}", f"devices: {', '.join(names)}")
    wanted = [device] if device is not None else names
    found = device_times(session)
    skipped = {}
    for name in wanted:
        if name not in found:
            skipped[name] = "no per-node times under its current configuration (profile it)"
        elif not found[name].measured:
            skipped[name] = "nothing measured under its current configuration (profile it)"
    return {n: found[n] for n in wanted if n not in skipped}, skipped


def attribute_session(session: Session, device: str | None = None) -> SessionAttribution:
    """Every device's attribution (or one device's)."""
    blocks = session_blocks(session)
    times, skipped = _times(session, device)
    return SessionAttribution(
        [int(p) for p in blocks], [attribute_device(t, blocks) for t in times.values()], skipped
    )


def evaluate_session(session: Session, device: str | None = None) -> list[Evaluation]:
    """Leave-one-out of every approach, and of the per-device choice (`auto`, nested),
    on every device's measured segments."""
    blocks = session_blocks(session)
    times, _ = _times(session, device)
    return [leave_one_out(a, t, blocks) for t in times.values() for a in ESTIMATORS]


def evaluation_dict(e: Evaluation) -> dict[str, Any]:
    return {
        "device": e.device,
        "approach": e.approach,
        "segments": e.count,
        "median_abs_pct": e.median_abs_pct,
        "p90_abs_pct": e.p90_abs_pct,
        "median_pct": e.median_pct,
        "chosen": e.approach == CHOSEN,
        "picked": e.picked,
        "picks": dict(e.picks),
    }
