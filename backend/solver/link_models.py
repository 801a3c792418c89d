"""Link models: how a link's typed values become the bandwidth and latency transfers are
priced with (`bytes × 8 / bandwidth + latency`, backend/solver/costs.py).

- `typed`: the values as given — the model every ranking used first, kept for comparison.
- `fitted`: each link as `omdp links measure --session` found it, relative to what the
  chain says it is. Chained validation showed the typed line predicting transfers short
  by a steady fraction: TCP carries the payload at the goodput, not the line rate (95.6 %
  of it on Ethernet framing), and a message pays more than the echo's one-way latency. So
  a link measured at goodput G against its configured rate R, and latency M against its
  configured latency C, is priced at bandwidth typed × G / R and latency typed + (M − C):
  at the configured values that is the measurement itself, and a what-if bandwidth keeps
  the measured efficiency. Links never measured stay typed.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from backend.errors import OmdpError
from backend.profiling.session import Session

LINK_MODELS: tuple[str, ...] = ("typed", "fitted")


def check_link_model(name: str) -> None:
    if name not in LINK_MODELS:
        raise OmdpError(f"unknown link model {name!r}", f"use one of: {', '.join(LINK_MODELS)}")


def effective_links(
    model: str,
    bandwidth_mbps: Sequence[float] | np.ndarray,
    latency_ms: Sequence[float] | np.ndarray,
    configured: Sequence[tuple[float, float]],
    measured: Sequence[tuple[float | None, float | None]],
) -> tuple[np.ndarray, np.ndarray]:
    """The (bandwidth, latency) vectors transfers are priced with under `model`, from the
    typed values, each link's configured (Mbit/s, ms) and its measured ones (None: not
    measured)."""
    check_link_model(model)
    bw = np.array(bandwidth_mbps, dtype=float)
    lat = np.array(latency_ms, dtype=float)
    if model == "typed":
        return bw, lat
    for i, ((c_bw, c_lat), (m_bw, m_lat)) in enumerate(zip(configured, measured, strict=True)):
        if m_bw is not None and m_bw > 0 and c_bw > 0:
            bw[i] *= m_bw / c_bw
        if m_lat is not None and m_lat >= 0:
            lat[i] = max(0.0, lat[i] + m_lat - c_lat)
    return bw, lat


def session_links(
    session: Session,
    model: str,
    bandwidth_mbps: Sequence[float] | np.ndarray,
    latency_ms: Sequence[float] | np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """`effective_links` with the session's configured and measured link values."""
    frame = session.links_frame()
    configured = list(
        zip(frame["bandwidth_mbps"].tolist(), frame["latency_ms"].tolist(), strict=True)
    )
    measured = [
        (_num(b), _num(m))
        for b, m in zip(
            frame["measured_bandwidth_mbps"].tolist(),
            frame["measured_latency_ms"].tolist(),
            strict=True,
        )
    ]
    return effective_links(model, bandwidth_mbps, latency_ms, configured, measured)


def _num(v: object) -> float | None:
    return float(v) if isinstance(v, int | float) and v == v else None
