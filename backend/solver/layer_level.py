"""A layer-level instance (network_butcher's format) from a segment-level one and each
device's attributed per-layer times.

A layer instance prices a run [a, b) on device d as the sum of its layers' times, and a
move of X(p) from device a to device b by one number tr[p, a, b]. Segment times are not
sums of layers: what a segment costs beyond its layers' shares is charged to its two
ends, as `into[d, a]` (starting at a) and `out[d, b]` (ending at b), added to the move
at that position. On the first device (it only runs prefixes) and the last (suffixes)
that is exact; a middle device's ends are fitted by least squares over its segments, and
what the fit misses is reported (`residual_ms`). Positions that are not candidates get
the median of the device's candidate ends (no measurement says more there).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from backend.solver.costs import LayerInstance, SegmentInstance, transfer_ms


@dataclass(frozen=True)
class Ends:
    """Per device and candidate: what starting (into) and ending (out) a segment there
    costs beyond its layers' shares; and how far a device's segments are from that model."""

    into: np.ndarray  # (D, M); into[:, 0] = 0
    out: np.ndarray  # (D, M); out[:, M-1] = 0
    residual_ms: np.ndarray  # (D,) largest |segment - (shares + into + out)|


def segment_ends(seg: np.ndarray, shares: np.ndarray, usable: np.ndarray) -> Ends:
    """Fit into/out per device from its segment times `seg` (D, M, M) and the sums of
    its layers' shares `shares` (D, M, M) over the `usable` segments (D, M, M) bool.
    A segment that is not allowed (inf) makes the end that alone defines it inf."""
    d, m, _ = seg.shape
    into, out = np.zeros((d, m)), np.zeros((d, m))
    residual = np.zeros(d)
    for k in range(d):
        rows = np.argwhere(usable[k] & np.isfinite(seg[k]))
        if len(rows):
            # unknowns: into[1..M-1], then out[0..M-2]
            x = np.zeros((len(rows), 2 * (m - 1)))
            for r, (i, j) in enumerate(rows):
                if i > 0:
                    x[r, i - 1] = 1.0
                if j < m - 1:
                    x[r, m - 1 + j] = 1.0
            y = seg[k][rows[:, 0], rows[:, 1]] - shares[k][rows[:, 0], rows[:, 1]]
            coef, *_ = np.linalg.lstsq(x, y, rcond=None)
            into[k, 1:], out[k, :-1] = coef[: m - 1], coef[m - 1 :]
            residual[k] = float(np.abs(x @ coef - y).max())
        for i, j in np.argwhere(usable[k] & ~np.isfinite(seg[k])):
            if i == 0 and j < m - 1 and not (usable[k, 1:, j] & np.isfinite(seg[k, 1:, j])).any():
                out[k, j] = np.inf  # the device ends nowhere else at j: not allowed
            if j == m - 1 and i > 0 and not (usable[k, i, :-1] & np.isfinite(seg[k, i, :-1])).any():
                into[k, i] = np.inf
    return Ends(into, out, residual)


@dataclass(frozen=True)
class LayerLevel:
    instance: LayerInstance
    ends: Ends
    clamped: int  # moves whose ends' credit exceeded the transfer: written as 0


def layer_level(
    inst: SegmentInstance,
    cost_model: str,
    layer_ms: np.ndarray,
    position_bytes: np.ndarray,
    usable: np.ndarray,
) -> LayerLevel:
    """The layer instance of `inst` under `cost_model`, with `layer_ms` (N, D) the
    attributed per-layer times and `position_bytes` (N+1,) the bytes of X(p)."""
    n, d = layer_ms.shape
    cand = inst.candidates
    pre = np.vstack([np.zeros((1, d)), np.cumsum(layer_ms, axis=0)])  # (N+1, D)
    at = pre[cand]  # (M, D)
    shares = np.transpose(at[None, :, :] - at[:, None, :], (2, 0, 1))  # (D, M, M)
    ends = segment_ends(inst.segment_ms(cost_model), shares, usable)

    def spread(values: np.ndarray, keep: slice) -> np.ndarray:
        """(D, N+1): the candidates' values where they are, the median elsewhere."""
        out = np.zeros((d, n + 1))
        for k in range(d):
            inner = values[k, keep]
            finite = inner[np.isfinite(inner)]
            out[k] = float(np.median(finite)) if len(finite) else 0.0
            out[k, cand] = values[k]
        return out

    into = spread(ends.into, slice(1, None))
    out = spread(ends.out, slice(None, -1))
    into[:, 0] = 0.0
    out[:, n] = 0.0
    bytes_ = position_bytes.astype(float).copy()
    bytes_[cand] = inst.cut_bytes  # the very bytes the segment level prices
    tau = transfer_ms(bytes_[:, None], inst.bandwidth_mbps[None, :], inst.latency_ms[None, :])
    links = np.concatenate([np.zeros((n + 1, 1)), np.cumsum(tau, axis=1)], axis=1)  # (N+1, D)
    tr = np.full((n + 1, d, d), np.inf)
    clamped = 0
    for a in range(d):
        for b in range(d):
            if a == b:
                continue
            move = np.abs(links[:, b] - links[:, a])  # the links between a and b
            if a < b:
                cost = move + out[a] + into[b]
                clamped += int((cost < 0).sum())
                tr[:, a, b] = np.maximum(cost, 0.0)
            else:  # backwards: only the input's and the output's moves
                tr[0, a, b], tr[n, a, b] = move[0], move[n]
    layer = LayerInstance(inst.devices, layer_ms, tr, inst.source, inst.sink)
    return LayerLevel(layer, ends, clamped)
