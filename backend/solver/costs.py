"""Cost instances for the partition solver: plain dataclasses over numpy arrays.

Two kinds of instance (file format: docs/instance-format.md):

- `SegmentInstance` — what a session produces: candidate positions, cut bytes, a time per
  (device, segment [a, b)) between candidates, link bandwidth/latency. Every transfer cost
  is a function of one cut: link l only ever carries data that depends on p_l (see
  `segment_link_ms`), so ranking stays a chain over the cut vector.
- `LayerInstance` — per-layer compute and an arbitrary transfer matrix, network_butcher
  style; used to check the solver against independent K-shortest-path implementations.

The cost of a partition is defined once here (`segment_costs`, `layer_costs`, both
vectorised over many partitions); every solver recomputes the costs it reports with these
functions, so two solvers never disagree about the last bit of a total.
"""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import numpy as np

from backend.errors import OmdpError

Objective = Literal["latency", "throughput"]
CostModel = Literal["measured", "estimated"]
OBJECTIVES: tuple[str, ...] = ("latency", "throughput")
COST_MODELS: tuple[str, ...] = ("measured", "estimated")


# --------------------------------------------------------------------------------------
# Breakdown of one partition (what the user sees)
# --------------------------------------------------------------------------------------


@dataclass(slots=True)
class Stage:
    """One device's share of a partition: segment [start, end) (empty when start == end)."""

    device: str
    start: int
    end: int
    compute_ms: float  # under the cost model that ranked the partition (0 when empty)
    measured_ms: float | None = None  # None: not measured (or no such table)
    estimated_ms: float | None = None
    memory_bytes: float | None = None  # weights + peak activations, when the instance has them

    @property
    def empty(self) -> bool:
        return self.start == self.end


@dataclass(slots=True)
class Transfer:
    """Data X(position) crossing one link, from device `src` to device `dst`."""

    link: str
    src: str
    dst: str
    position: int
    bytes: float | None  # None for layer-level instances (they give times, not bytes)
    ms: float


# --------------------------------------------------------------------------------------
# Small numeric helpers
# --------------------------------------------------------------------------------------


def transfer_ms(nbytes: Any, bandwidth_mbps: Any, latency_ms: Any) -> np.ndarray:
    """Time to send `nbytes` over one link: bits / rate + latency. 0 Mbit/s = link down (inf)."""
    nbytes = np.asarray(nbytes, dtype=float)
    bw = np.asarray(bandwidth_mbps, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = nbytes * 8.0 / (bw * 1000.0) + latency_ms
    return np.where(bw > 0, t, np.inf)


def _clean_segment_table(table: Any, n_devices: int, m: int, name: str) -> np.ndarray:
    """(D, M, M) float table: NaN -> inf (not allowed), diagonal 0 (empty), lower half inf."""
    t = np.array(table, dtype=float)
    if t.shape == (m, m):
        t = np.broadcast_to(t, (n_devices, m, m)).copy()
    if t.shape != (n_devices, m, m):
        raise OmdpError(
            f"{name} has shape {t.shape}, expected ({n_devices}, {m}, {m})",
            "give one (candidates x candidates) table per device",
        )
    t[np.isnan(t)] = np.inf
    upper = np.triu(np.ones((m, m), dtype=bool), 1)
    if np.any(t[:, upper] < 0):
        raise OmdpError(f"{name} has negative entries", "times and sizes must be >= 0")
    t[:, ~upper] = np.inf
    idx = np.arange(m)
    t[:, idx, idx] = 0.0
    return t


def _nondecreasing_rows(
    m: int, n_free: int, allowed: np.ndarray | None = None, last: int | None = None
) -> np.ndarray:
    """All rows 0 = r_0 <= r_1 <= ... <= r_n_free <= r_last = m-1, in lexicographic order.

    `allowed[d]` (M x M bool) prunes step d (r_d -> r_{d+1}) while expanding, so infeasible
    prefixes never multiply. Returns an (P, n_free + 2) int array.
    """
    rows = np.zeros((1, 1), dtype=np.int32)
    for d in range(n_free):
        lastcol = rows[:, -1]
        counts = m - lastcol
        rep = np.repeat(np.arange(len(rows)), counts)
        starts = np.cumsum(counts) - counts
        newcol = (np.arange(int(counts.sum())) - np.repeat(starts, counts) + lastcol[rep]).astype(
            np.int32
        )
        rows = np.concatenate([rows[rep], newcol[:, None]], axis=1)
        if allowed is not None:
            rows = rows[allowed[d][rows[:, -2], rows[:, -1]]]
    end = np.full((len(rows), 1), m - 1 if last is None else last, dtype=np.int32)
    rows = np.concatenate([rows, end], axis=1)
    if allowed is not None:
        rows = rows[allowed[n_free][rows[:, -2], rows[:, -1]]]
    return rows


# --------------------------------------------------------------------------------------
# Memory limits
# --------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Memory:
    """Per-device memory limits and per-segment needs: a segment fits on a device iff
    weight_bytes + activation_bytes <= limit_bytes. Arrays are (D,), (D, M, M), (D, M, M);
    limit inf = no limit. Empty segments always fit."""

    limit_bytes: np.ndarray
    weight_bytes: np.ndarray
    activation_bytes: np.ndarray

    @classmethod
    def from_positions(
        cls,
        limit_bytes: Any,
        candidates: Any,
        node_weight_bytes: Any,
        position_activation_bytes: Any,
    ) -> Memory:
        """Derive segment needs from per-node weights (N,) and per-position live bytes (N+1,).

        weights([a, b)) = sum of node weights in it (shared weights counted per node);
        peak activations([a, b)) = max live bytes over positions a..b (inputs and outputs
        of the segment are live at its ends, anything crossing an inner position at it).
        """
        limit = np.asarray(limit_bytes, dtype=float)
        c = np.asarray(candidates, dtype=int)
        w = np.asarray(node_weight_bytes, dtype=float)
        act = np.asarray(position_activation_bytes, dtype=float)
        n = int(c[-1])
        if w.shape != (n,) or act.shape != (n + 1,):
            raise OmdpError(
                f"memory: node_weight_bytes has {w.shape[0] if w.ndim else 0} values and "
                f"position_activation_bytes {act.shape[0] if act.ndim else 0}, "
                f"expected {n} and {n + 1}",
                "give one weight size per node and one live size per position 0..N",
            )
        if np.any(w < 0) or np.any(act < 0):
            raise OmdpError("memory: negative byte counts", "byte counts must be >= 0")
        cw = np.concatenate([[0.0], np.cumsum(w)])
        m = len(c)
        weight = np.zeros((m, m))
        peak = np.zeros((m, m))
        for i in range(m):
            run_max = np.maximum.accumulate(act[c[i] :])
            weight[i, i:] = cw[c[i:]] - cw[c[i]]
            peak[i, i:] = run_max[c[i:] - c[i]]
        d = len(limit)
        return cls(
            limit_bytes=limit,
            weight_bytes=np.broadcast_to(weight, (d, m, m)).copy(),
            activation_bytes=np.broadcast_to(peak, (d, m, m)).copy(),
        )

    @property
    def required_bytes(self) -> np.ndarray:
        return self.weight_bytes + self.activation_bytes

    def feasible(self) -> np.ndarray:
        """(D, M, M) bool: does segment [i, j) fit on device d (empty segments always do)."""
        ok = self.required_bytes <= self.limit_bytes[:, None, None]
        m = ok.shape[1]
        ok[:, np.arange(m), np.arange(m)] = True
        return ok


# --------------------------------------------------------------------------------------
# Segment-level instances
# --------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class SegmentInstance:
    """A chain of D devices and M candidate positions (0 and N included).

    compute_ms[d, i, j] is the time of segment [candidates[i], candidates[j]) on device d,
    NaN/inf where not allowed or not measured (OMDP's plan only measures prefixes on the
    first device and suffixes on the last: everything else is simply not allowed).
    Links are numbered 0..D-2 (link l joins devices l and l+1) and are symmetric.
    """

    devices: tuple[str, ...]
    candidates: np.ndarray  # (M,) int, strictly increasing, 0 .. N
    cut_bytes: np.ndarray  # (M,) bytes of X(candidate)
    compute_ms: np.ndarray  # (D, M, M)
    bandwidth_mbps: np.ndarray  # (D-1,) > 0 (0 only at run time: link down)
    latency_ms: np.ndarray  # (D-1,) >= 0
    source: int = 0  # device where the input X(0) is produced
    sink: int | None = None  # device that must end up with the output X(N), if any
    estimated_ms: np.ndarray | None = None  # (D, M, M), same convention
    memory: Memory | None = None

    def __post_init__(self) -> None:
        devices = tuple(str(d) for d in self.devices)
        if not devices:
            raise OmdpError("the instance has no devices", "list at least one device")
        if len(set(devices)) != len(devices):
            raise OmdpError(f"device names repeat: {list(devices)}", "give each device its name")
        c = np.asarray(self.candidates, dtype=np.int64)
        if c.ndim != 1 or len(c) < 2 or c[0] != 0 or np.any(np.diff(c) <= 0):
            raise OmdpError(
                f"candidates must increase strictly from 0 to N, got {c.tolist()}",
                "list the candidate positions sorted, including 0 and N",
            )
        m, d = len(c), len(devices)
        cut = np.asarray(self.cut_bytes, dtype=float)
        if cut.shape != (m,) or np.any(~np.isfinite(cut)) or np.any(cut < 0):
            raise OmdpError(
                f"cut_bytes must be {m} finite numbers >= 0 (one per candidate)",
                "give the bytes crossing each candidate position",
            )
        bw = np.asarray(self.bandwidth_mbps, dtype=float).reshape(-1)
        lat = np.asarray(self.latency_ms, dtype=float).reshape(-1)
        if bw.shape != (d - 1,) or lat.shape != (d - 1,):
            raise OmdpError(
                f"{d} devices need {d - 1} links, got {bw.shape[0]} bandwidths and "
                f"{lat.shape[0]} latencies",
                "give one bandwidth and latency per consecutive pair of devices",
            )
        if np.any(~(bw >= 0)) or np.any(~(lat >= 0)) or np.any(~np.isfinite(lat)):
            raise OmdpError("bandwidths and latencies must be >= 0", "fix the link numbers")
        for name, dev in (("source", self.source), ("sink", self.sink)):
            if dev is not None and not 0 <= int(dev) < d:
                raise OmdpError(f"{name} device index {dev} is out of range 0..{d - 1}")
        set_ = object.__setattr__
        set_(self, "devices", devices)
        set_(self, "candidates", c)
        set_(self, "cut_bytes", cut)
        set_(self, "bandwidth_mbps", bw)
        set_(self, "latency_ms", lat)
        set_(self, "source", int(self.source))
        set_(self, "sink", None if self.sink is None else int(self.sink))
        set_(self, "compute_ms", _clean_segment_table(self.compute_ms, d, m, "compute_ms"))
        if self.estimated_ms is not None:
            est = _clean_segment_table(self.estimated_ms, d, m, "estimated_ms")
            set_(self, "estimated_ms", est)
        if self.memory is not None:
            mem = self.memory
            lim = np.asarray(mem.limit_bytes, dtype=float)
            if lim.shape != (d,):
                raise OmdpError(f"memory limits: expected {d} values, got {lim.shape}")
            lim = np.where(np.isnan(lim), np.inf, lim)
            wb = _clean_segment_table(mem.weight_bytes, d, m, "memory weight_bytes")
            ab = _clean_segment_table(mem.activation_bytes, d, m, "memory activation_bytes")
            set_(self, "memory", Memory(lim, wb, ab))

    # -- shape ------------------------------------------------------------------------
    @property
    def n_devices(self) -> int:
        return len(self.devices)

    @property
    def n_candidates(self) -> int:
        return len(self.candidates)

    @property
    def n_positions(self) -> int:
        """N: the last position (number of nodes of the model)."""
        return int(self.candidates[-1])

    @property
    def link_names(self) -> tuple[str, ...]:
        return link_names(self.devices)

    # -- tables -----------------------------------------------------------------------
    def segment_ms(self, cost_model: CostModel = "measured") -> np.ndarray:
        """(D, M, M) time of each allowed segment, inf where not allowed or does not fit."""
        return self._tables[cost_model]

    @cached_property
    def _tables(self) -> dict[str, np.ndarray]:
        tables = {"measured": self.compute_ms}
        if self.estimated_ms is not None:
            tables["estimated"] = self.estimated_ms
        if self.memory is not None:
            fits = self.memory.feasible()
            tables = {k: np.where(fits, v, np.inf) for k, v in tables.items()}
        return _ReadOnlyTables(tables)

    @cached_property
    def flow_masks(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(main, input, output) flow masks per link and cut, see `segment_flow_masks`."""
        masks = segment_flow_masks(self)
        for mask in masks:
            mask.setflags(write=False)
        return masks

    def check_cost_model(self, cost_model: str) -> None:
        if cost_model not in COST_MODELS:
            raise OmdpError(f"unknown cost model {cost_model!r}", "use measured or estimated")
        if cost_model == "estimated" and self.estimated_ms is None:
            raise OmdpError(
                "this instance has no estimated times",
                "add estimated_ms or estimated_node_ms, or rank by the measured model",
            )

    def link_arrays(
        self, bandwidth_mbps: Any = None, latency_ms: Any = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Bandwidth and latency vectors: instance values, overridden by a sequence or a
        {link name: value} mapping (missing names keep the instance value)."""
        return (
            _link_vector(self, bandwidth_mbps, self.bandwidth_mbps, "bandwidth"),
            _link_vector(self, latency_ms, self.latency_ms, "latency"),
        )


class _ReadOnlyTables(dict):
    """Cached tables are shared by every solver: hand them out read-only."""

    def __init__(self, tables: dict[str, np.ndarray]):
        super().__init__()
        for k, v in tables.items():
            v = np.array(v)
            v.setflags(write=False)
            self[k] = v

    def __missing__(self, key: str) -> np.ndarray:
        raise OmdpError(f"no {key} times in this instance", "rank by the measured model")


def link_names(devices: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """Links are named "a-b" after the two devices they join, in chain order."""
    return tuple(f"{a}-{b}" for a, b in itertools.pairwise(devices))


def _link_vector(inst: SegmentInstance, value: Any, default: np.ndarray, what: str) -> np.ndarray:
    if value is None:
        return default
    if isinstance(value, dict):
        out = default.copy()
        names = inst.link_names
        for name, v in value.items():
            if name not in names:
                raise OmdpError(
                    f"unknown link {name!r}", f"valid links: {', '.join(names) or '(none)'}"
                )
            out[names.index(name)] = float(v)
        return out
    out = np.asarray(value, dtype=float).reshape(-1)
    if out.shape != default.shape:
        raise OmdpError(f"expected {len(default)} {what} values (one per link), got {len(out)}")
    return out


def segment_link_ms(
    inst: SegmentInstance, bandwidth_mbps: np.ndarray, latency_ms: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Per-link stage time as a function of that link's cut, and the per-transfer times.

    Returns (link_ms (L, M), tau (L, M)): tau[l, i] = time to send X(candidate i) over link
    l; link_ms[l, i] = total time link l is busy when p_l = candidate i. Link l carries
      - X(p_l) forward when 0 < p_l < N (some device <= l and some device > l compute);
      - X(0) from the source to the first computing device j0 = min{i: p_i > 0}:
        forward if source <= l < j0 (p_l == 0), backward if j0 <= l < source (p_l > 0);
      - X(N) from the last computing device j1 = min{i: p_i = N} to the sink, if any:
        forward if j1 <= l < sink (p_l == N), backward if sink <= l < j1 (p_l < N).
    Each flow is one transfer (pays the latency once); a link's stage time is their sum.
    """
    tau = transfer_ms(inst.cut_bytes[None, :], bandwidth_mbps[:, None], latency_ms[:, None])
    flows = inst.flow_masks
    m = inst.n_candidates
    link = np.zeros((inst.n_devices - 1, m))
    main, inp, out = flows
    for mask, col in (
        (inp, np.zeros(m, dtype=int)),
        (main, np.arange(m)),
        (out, np.full(m, m - 1)),
    ):  # the order transfers happen in: input, between devices, output
        link = link + np.where(mask, tau[:, col], 0.0)
    return link, tau


def segment_flow_masks(inst: SegmentInstance) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(main, input, output) masks of shape (L, M): does link l carry that flow when
    p_l = candidate i (see `segment_link_ms`)."""
    n_links, m = inst.n_devices - 1, inst.n_candidates
    lidx = np.arange(n_links)[:, None]
    i = np.arange(m)[None, :]
    inner = (i > 0) & (i < m - 1)
    main = np.broadcast_to(inner, (n_links, m)).copy()
    src = inst.source
    inp = ((lidx >= src) & (i == 0)) | ((lidx < src) & (i > 0))
    if inst.sink is None:
        out = np.zeros((n_links, m), dtype=bool)
    else:
        out = ((lidx < inst.sink) & (i == m - 1)) | ((lidx >= inst.sink) & (i < m - 1))
    return main, inp, out


def compute_sum(seg: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sum (device order) and max of the compute stages of candidate-index rows (P, D+1)."""
    total = np.zeros(len(rows))
    worst = np.zeros(len(rows))
    for d in range(seg.shape[0]):
        c = seg[d, rows[:, d], rows[:, d + 1]]
        total = total + c
        worst = np.maximum(worst, c)
    return total, worst


def segment_costs(
    seg: np.ndarray, link_ms: np.ndarray, rows: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Canonical (latency, bottleneck) of partitions given as candidate-index rows (P, D+1).

    latency = sum of compute stages (device order) then link stages (link order);
    bottleneck = max over the same stages. Every solver reports costs from here.
    """
    latency, worst = compute_sum(seg, rows)
    return add_links(latency, worst, link_ms, rows)


def add_links(
    latency: np.ndarray, worst: np.ndarray, link_ms: np.ndarray, rows: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Add the link stages to precomputed compute sums (kept apart for fast re-ranking)."""
    for link in range(link_ms.shape[0]):
        f = link_ms[link, rows[:, link + 1]]
        latency = latency + f
        worst = np.maximum(worst, f)
    return latency, worst


Breakdown = tuple[list[Stage], list[Transfer], str, float]  # + bottleneck name and time


def segment_breakdowns(
    inst: SegmentInstance,
    rows: np.ndarray,
    cost_model: CostModel,
    link_ms: np.ndarray,
    tau: np.ndarray,
) -> list[Breakdown]:
    """Stages, transfers (in time order) and the bottleneck of partitions given as
    candidate-index rows: numbers gathered column-wise with numpy, then plain objects."""
    n_dev, m = inst.n_devices, inst.n_candidates
    cols = [rows[:, d] for d in range(n_dev + 1)]
    pos = [inst.candidates[col].tolist() for col in cols]
    measured = inst.segment_ms("measured")
    est = inst.segment_ms("estimated") if inst.estimated_ms is not None else None
    mem = inst.memory.required_bytes if inst.memory is not None else None
    seg = inst.segment_ms(cost_model)
    stage_ms = []  # per stage (devices, then links): time, -inf when the stage is absent
    by_dev = []
    for d, dev in enumerate(inst.devices):
        a, b = cols[d], cols[d + 1]
        comp = seg[d, a, b]
        stage_ms.append(np.where(a < b, comp, -np.inf))
        meas = _none_if_not_finite(measured[d, a, b])
        estv = [None] * len(rows) if est is None else _none_if_not_finite(est[d, a, b])
        memv = [None] * len(rows) if mem is None else np.where(a < b, mem[d, a, b], np.nan)
        memv = memv if mem is None else _none_if_not_finite(memv)
        by_dev.append(
            [
                Stage(dev, s, e, c, me, es, mb)
                for s, e, c, me, es, mb in zip(
                    pos[d], pos[d + 1], comp.tolist(), meas, estv, memv, strict=True
                )
            ]
        )
    moves_by_row: list[list] = [[] for _ in range(len(rows))]
    main, inp, out = inst.flow_masks
    names, devs = inst.link_names, inst.devices
    cand, cut, tau_l = inst.candidates.tolist(), inst.cut_bytes.tolist(), tau.tolist()
    sink_side = inst.sink if inst.sink is not None else 0
    for lk in range(n_dev - 1):
        col = cols[lk + 1]
        col_l = col.tolist()
        fwd, bwd = (devs[lk], devs[lk + 1]), (devs[lk + 1], devs[lk])
        f_in, f_main, f_out = inp[lk, col], main[lk, col], out[lk, col]
        stage_ms.append(np.where(f_in | f_main | f_out, link_ms[lk, col], -np.inf))
        # input first, hop by hop away from the source; output last, towards the sink
        flows = (
            (f_in, (0, abs(lk + 0.5 - inst.source)), 0),
            (f_main, (1, lk), 1),
            (f_out, (2, -abs(lk + 0.5 - sink_side)), 2),
        )
        for mask, key, kind in flows:
            for r in np.flatnonzero(mask).tolist():
                c = col_l[r]
                i = 0 if kind == 0 else c if kind == 1 else m - 1  # which X(.) moves
                src, dst = fwd if kind == 1 or c == i else bwd  # X(0)/X(N) may go backwards
                t = Transfer(names[lk], src, dst, cand[i], cut[i], tau_l[lk][i])
                moves_by_row[r].append((key, t))
    stage_ms_arr = np.stack(stage_ms, axis=1)
    worst = np.argmax(stage_ms_arr, axis=1).tolist()
    worst_ms = stage_ms_arr.max(axis=1).tolist()
    stage_names = [f"compute {d}" for d in devs] + [f"link {n}" for n in names]
    result = []
    for r, moves in enumerate(moves_by_row):
        moves.sort(key=lambda x: x[0])
        ok = worst_ms[r] > -np.inf
        result.append(
            (
                [stages[r] for stages in by_dev],
                [t for _, t in moves],
                stage_names[worst[r]] if ok else "none",
                worst_ms[r] if ok else 0.0,
            )
        )
    return result


def _none_if_not_finite(values: np.ndarray) -> list[float | None]:
    return [v if math.isfinite(v) else None for v in values.tolist()]


# --------------------------------------------------------------------------------------
# Layer-level instances
# --------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class LayerInstance:
    """network_butcher-style instance: compute_ms[l, d] runs layer l (positions l -> l+1)
    on device d (inf = not allowed there); transfer_ms[p, a, b] moves X(p) from device a to
    device b (inf = impossible; the diagonal is ignored). Devices are used in chain order;
    X(0) starts on `source`, and X(N) must end on `sink` when one is given (entries with
    a > b are only used at p = 0 and p = N, for those two moves)."""

    devices: tuple[str, ...]
    compute_ms: np.ndarray  # (N, D)
    transfer_ms: np.ndarray  # (N+1, D, D)
    source: int = 0
    sink: int | None = None

    def __post_init__(self) -> None:
        devices = tuple(str(d) for d in self.devices)
        if not devices or len(set(devices)) != len(devices):
            raise OmdpError(f"devices must be unique and not empty, got {list(devices)}")
        comp = np.array(self.compute_ms, dtype=float)
        n, d = comp.shape[0] if comp.ndim == 2 else 0, len(devices)
        if comp.ndim != 2 or comp.shape[1] != d or n < 1:
            raise OmdpError(
                f"compute_ms has shape {comp.shape}, expected (N >= 1, {d})",
                "give one row per layer with one time per device",
            )
        tr = np.array(self.transfer_ms, dtype=float)
        if tr.shape != (n + 1, d, d):
            raise OmdpError(
                f"transfer_ms has shape {tr.shape}, expected ({n + 1}, {d}, {d})",
                "give one device x device matrix per position 0..N",
            )
        comp[np.isnan(comp)] = np.inf
        tr[np.isnan(tr)] = np.inf
        if np.any(comp < 0) or np.any(tr < 0):
            raise OmdpError("layer instance has negative times", "times must be >= 0")
        tr[:, np.arange(d), np.arange(d)] = 0.0
        for name, dev in (("source", self.source), ("sink", self.sink)):
            if dev is not None and not 0 <= int(dev) < d:
                raise OmdpError(f"{name} device index {dev} is out of range 0..{d - 1}")
        comp.setflags(write=False)
        tr.setflags(write=False)
        set_ = object.__setattr__
        set_(self, "devices", devices)
        set_(self, "compute_ms", comp)
        set_(self, "transfer_ms", tr)
        set_(self, "source", int(self.source))
        set_(self, "sink", None if self.sink is None else int(self.sink))

    @property
    def n_devices(self) -> int:
        return len(self.devices)

    @property
    def n_positions(self) -> int:
        return self.compute_ms.shape[0]

    @cached_property
    def prefix_ms(self) -> np.ndarray:
        """(D, N+1) prefix sums of allowed layer times: a run [a, b) costs P[b] - P[a]."""
        finite = np.where(np.isfinite(self.compute_ms), self.compute_ms, 0.0)
        out = np.zeros((self.n_devices, self.n_positions + 1))
        out[:, 1:] = np.cumsum(finite.T, axis=1)
        return out

    @cached_property
    def forbidden_prefix(self) -> np.ndarray:
        """(D, N+1) prefix counts of not-allowed layers: a run is allowed iff none inside."""
        bad = ~np.isfinite(self.compute_ms)
        out = np.zeros((self.n_devices, self.n_positions + 1), dtype=np.int64)
        out[:, 1:] = np.cumsum(bad.T, axis=1)
        return out

    @cached_property
    def sink_ms(self) -> np.ndarray:
        """(D,) time to bring X(N) from each device to the sink (0 without a sink)."""
        if self.sink is None:
            return np.zeros(self.n_devices)
        return self.transfer_ms[self.n_positions, :, self.sink].copy()

    def run_ms(self, d: int, a: Any, b: Any) -> np.ndarray:
        """Compute time of layers [a, b) on device d (inf if one is not allowed there)."""
        ok = self.forbidden_prefix[d, b] == self.forbidden_prefix[d, a]
        return np.where(ok, self.prefix_ms[d, b] - self.prefix_ms[d, a], np.inf)


def layer_stage_arrays(
    inst: LayerInstance, cuts: np.ndarray
) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray], np.ndarray]:
    """Stage arrays of partitions given as position rows (P, D+1): compute per device,
    transfer into each device when it starts, the holder before it, and the sink move."""
    p = len(cuts)
    holder = np.full(p, inst.source)
    computes, transfers, holders = [], [], []
    for d in range(inst.n_devices):
        a, b = cuts[:, d], cuts[:, d + 1]
        works = a < b
        computes.append(np.where(works, inst.run_ms(d, a, b), 0.0))
        transfers.append(np.where(works, inst.transfer_ms[a, holder, d], 0.0))
        holders.append(holder)
        holder = np.where(works, d, holder)
    sink = inst.sink_ms[holder]
    return computes, transfers, holders, sink


def layer_costs(inst: LayerInstance, cuts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Canonical (latency, bottleneck) of partitions given as position rows (P, D+1).

    latency = compute runs (device order) + transfers (device order) + the sink move; a
    run costs prefix[b] - prefix[a], which equals the layer sum up to float rounding.
    Every transfer is its own stage for the bottleneck.
    """
    computes, transfers, _, sink = layer_stage_arrays(inst, cuts)
    latency = np.zeros(len(cuts))
    worst = np.zeros(len(cuts))
    for x in [*computes, *transfers, sink]:
        latency = latency + x
        worst = np.maximum(worst, x)
    return latency, worst


def layer_breakdowns(inst: LayerInstance, rows: np.ndarray) -> list[Breakdown]:
    """Stages, transfers and the bottleneck of partitions given as position rows."""
    computes, moves, holders, sink = layer_stage_arrays(inst, rows)
    comp = [x.tolist() for x in computes]
    mv = [x.tolist() for x in moves]
    hold = [x.tolist() for x in holders]
    snk = sink.tolist()
    devs, n = inst.devices, inst.n_positions
    result = []
    for r, p in enumerate(rows.tolist()):
        stages, transfers, named = [], [], []
        holder = inst.source
        for d, dev in enumerate(devs):
            a, b = p[d], p[d + 1]
            ms = comp[d][r]
            stages.append(Stage(dev, a, b, ms, ms))
            if a < b:
                named.append((f"compute {dev}", ms))
                h = hold[d][r]
                if h != d:
                    link = f"{devs[h]}-{dev}"
                    transfers.append(Transfer(link, devs[h], dev, a, None, mv[d][r]))
                    named.append((f"link {link}", mv[d][r]))
                holder = d
        if inst.sink is not None and holder != inst.sink:
            link = f"{devs[holder]}-{devs[inst.sink]}"
            transfers.append(Transfer(link, devs[holder], devs[inst.sink], n, None, snk[r]))
            named.append((f"link {link}", snk[r]))
        name, worst = named[0] if named else ("none", 0.0)
        for nm, ms in named[1:]:
            if ms > worst:
                name, worst = nm, ms
        result.append((stages, transfers, name, worst))
    return result


def layer_rows(inst: LayerInstance) -> np.ndarray:
    """All partitions of a layer instance as position rows (P, D+1), lexicographic order,
    without runs over a not-allowed layer."""
    n, d = inst.n_positions, inst.n_devices
    pos = np.arange(n + 1)
    allowed = (
        np.stack(
            [
                inst.forbidden_prefix[k][None, :] == inst.forbidden_prefix[k][:, None]
                for k in range(d)
            ]
        )
        & (pos[None, :] >= pos[:, None])[None]
    )
    return _nondecreasing_rows(n + 1, d - 1, allowed)


def segment_rows(seg: np.ndarray) -> np.ndarray:
    """All partitions with every compute stage finite, as candidate-index rows (P, D+1)."""
    d, m, _ = seg.shape
    return _nondecreasing_rows(m, d - 1, np.isfinite(seg))


def count_partitions(n_choices: int, n_devices: int) -> int:
    """Number of cut vectors 0 <= p_1 <= ... <= p_{D-1} <= last over n_choices values."""
    return math.comb(n_choices + n_devices - 2, n_devices - 1)


# --------------------------------------------------------------------------------------
# JSON instance files (docs/instance-format.md)
# --------------------------------------------------------------------------------------

Instance = SegmentInstance | LayerInstance


def load_instance(path: str | Path) -> Instance:
    """Read an instance file; every problem is an OmdpError naming the file and the field."""
    p = Path(path)
    if not p.is_file():
        raise OmdpError(f"instance file {p} not found", "check the path (a JSON instance file)")
    try:
        data = json.loads(p.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        line = getattr(exc, "lineno", None)
        where = f"{p}:{line}" if line else str(p)
        raise OmdpError(f"{where}: not valid JSON ({exc})", "see docs/instance-format.md") from None
    return instance_from_dict(data, where=str(p))


def instance_from_dict(data: Any, where: str = "instance") -> Instance:
    """Build an instance from the documented JSON structure."""
    r = _Reader(where)
    if not isinstance(data, dict):
        raise r.error("", "the file must hold a JSON object", "see docs/instance-format.md")
    kind = data.get("kind")
    if kind is None:
        kind = "segment" if "candidates" in data else "layer" if "transfer_ms" in data else None
    if kind == "segment":
        return _segment_from_dict(data, r)
    if kind == "layer":
        return _layer_from_dict(data, r)
    raise r.error("kind", f"must be 'segment' or 'layer', got {kind!r}", 'set "kind"')


class _Reader:
    """Field readers that turn every mistake into one OmdpError naming file and field."""

    def __init__(self, where: str):
        self.where = where

    def error(self, field: str, problem: str, fix: str | None = None) -> OmdpError:
        at = f"{self.where}: field '{field}'" if field else self.where
        return OmdpError(f"{at} {problem}", fix or "see docs/instance-format.md")

    def get(self, data: dict, field: str, path: str | None = None) -> Any:
        if field not in data:
            raise self.error(path or field, "is missing", "see docs/instance-format.md")
        return data[field]

    def number(self, value: Any, field: str, *, positive: bool = False, allow_null: bool = False):
        if value is None and allow_null:
            return math.inf
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not ok or not math.isfinite(value) or value < 0 or (positive and value == 0):
            need = "a number > 0" if positive else "a number >= 0"
            fix = f"write {need}" + (" or null" if allow_null else "")
            raise self.error(field, f"must be {need}, got {value!r}", fix)
        return float(value)

    def numbers(self, value: Any, field: str, length: int | None = None, allow_null: bool = False):
        if not isinstance(value, list):
            raise self.error(field, f"must be a list of numbers, got {type(value).__name__}")
        if length is not None and len(value) != length:
            raise self.error(field, f"must have {length} values, got {len(value)}")
        return np.array(
            [self.number(v, f"{field}[{i}]", allow_null=allow_null) for i, v in enumerate(value)]
        )

    def device(self, value: Any, devices: tuple[str, ...], field: str) -> int:
        if value not in devices:
            raise self.error(
                field, f"names unknown device {value!r}", f"use one of {list(devices)}"
            )
        return devices.index(value)

    def devices(self, data: dict) -> tuple[str, ...]:
        devs = self.get(data, "devices")
        if (
            not isinstance(devs, list)
            or not devs
            or not all(isinstance(d, str) and d for d in devs)
        ):
            raise self.error("devices", "must be a non-empty list of device names")
        if len(set(devs)) != len(devs):
            raise self.error("devices", f"repeats a name: {devs}")
        names = link_names(devs)
        if len(set(names)) != len(names):
            raise self.error("devices", f"gives ambiguous link names {list(names)}")
        return tuple(devs)

    def segment_table(self, value: Any, field: str, cand: np.ndarray, devices: tuple[str, ...]):
        """A (D, M, M) table from per-device tables, or one table shared by all devices."""
        if isinstance(value, dict) and value and all(k in devices for k in value):
            out = np.full((len(devices), len(cand), len(cand)), np.inf)
            for k, v in value.items():
                out[devices.index(k)] = self.one_table(v, f"{field}.{k}", cand)
            return out
        return self.one_table(value, field, cand)

    def one_table(self, value: Any, field: str, cand: np.ndarray) -> np.ndarray:
        m = len(cand)
        out = np.full((m, m), np.inf)
        index = {int(c): i for i, c in enumerate(cand)}
        if isinstance(value, list):
            if len(value) != m or not all(isinstance(row, list) and len(row) == m for row in value):
                raise self.error(field, f"must be a {m} x {m} matrix (candidates x candidates)")
            for i, row in enumerate(value):
                for j, v in enumerate(row):
                    if j > i:
                        out[i, j] = self.number(v, f"{field}[{i}][{j}]", allow_null=True)
            return out
        if not isinstance(value, dict):
            raise self.error(field, 'must be a matrix or an object {"a:b": value}')
        for key, v in value.items():
            parts = key.split(":") if isinstance(key, str) else []
            try:
                a, b = (int(x) for x in parts)
            except ValueError:
                raise self.error(f"{field}.{key}", "is not a segment key 'a:b'") from None
            if a not in index or b not in index or a >= b:
                raise self.error(
                    f"{field}.{key}",
                    "is not a segment [a, b) between candidate positions with a < b",
                    f"candidates are {cand.tolist()}",
                )
            out[index[a], index[b]] = self.number(v, f"{field}.{key}", allow_null=True)
        return out


def _segment_from_dict(data: dict, r: _Reader) -> SegmentInstance:
    devices = r.devices(data)
    d = len(devices)
    raw_c = r.get(data, "candidates")
    if not isinstance(raw_c, list) or len(raw_c) < 2:
        raise r.error("candidates", "must be a list of at least two positions (0 and N)")
    for i, v in enumerate(raw_c):
        if not isinstance(v, int) or isinstance(v, bool) or v < 0:
            raise r.error(f"candidates[{i}]", f"must be a position (integer >= 0), got {v!r}")
    cand = np.array(raw_c, dtype=np.int64)
    if cand[0] != 0 or np.any(np.diff(cand) <= 0):
        raise r.error("candidates", "must increase strictly and start at 0 (the last one is N)")
    cut = r.numbers(r.get(data, "cut_bytes"), "cut_bytes", len(cand))
    links = data.get("links", {})
    names = link_names(devices)
    if not isinstance(links, dict):
        raise r.error("links", 'must be an object {"a-b": {"bandwidth_mbps": ...}}')
    for name in links:
        if name not in names:
            raise r.error(
                f"links.{name}", "is not a link of this chain", f"valid links: {', '.join(names)}"
            )
    bw, lat = np.zeros(d - 1), np.zeros(d - 1)
    for i, name in enumerate(names):
        spec = r.get(links, name, f"links.{name}")
        if not isinstance(spec, dict):
            raise r.error(f"links.{name}", "must be an object with bandwidth_mbps and latency_ms")
        bw[i] = r.number(
            r.get(spec, "bandwidth_mbps", f"links.{name}.bandwidth_mbps"),
            f"links.{name}.bandwidth_mbps",
            positive=True,
        )
        lat[i] = r.number(spec.get("latency_ms", 0.0), f"links.{name}.latency_ms")
    source = r.device(data.get("source", devices[0]), devices, "source")
    sink = data.get("sink")
    sink = None if sink is None else r.device(sink, devices, "sink")
    compute = r.get(data, "compute_ms")
    if not isinstance(compute, dict):
        raise r.error("compute_ms", "must be an object {device: table}")
    table = np.full((d, len(cand), len(cand)), np.inf)
    for k, v in compute.items():
        table[r.device(k, devices, f"compute_ms.{k}")] = r.one_table(v, f"compute_ms.{k}", cand)
    est = None
    for field in ("estimated_ms", "estimated_node_ms"):
        if field in data and not isinstance(data[field], dict):
            raise r.error(field, "must be an object {device: ...}")
    if "estimated_ms" in data:
        est = np.full_like(table, np.inf)
        for k, v in data["estimated_ms"].items():
            est[r.device(k, devices, f"estimated_ms.{k}")] = r.one_table(
                v, f"estimated_ms.{k}", cand
            )
    elif "estimated_node_ms" in data:
        est = np.full_like(table, np.inf)
        n = int(cand[-1])
        for k, v in data["estimated_node_ms"].items():
            times = r.numbers(v, f"estimated_node_ms.{k}", n)
            pre = np.concatenate([[0.0], np.cumsum(times)])[cand]
            est[r.device(k, devices, f"estimated_node_ms.{k}")] = pre[None, :] - pre[:, None]
    memory = _memory_from_dict(data["memory"], r, cand, devices) if "memory" in data else None
    return SegmentInstance(devices, cand, cut, table, bw, lat, source, sink, est, memory)


def _memory_from_dict(mem: Any, r: _Reader, cand: np.ndarray, devices: tuple[str, ...]) -> Memory:
    if not isinstance(mem, dict):
        raise r.error("memory", "must be an object")
    limits = r.get(mem, "limit_bytes", "memory.limit_bytes")
    if not isinstance(limits, dict):
        raise r.error("memory.limit_bytes", "must be an object {device: bytes or null}")
    lim = np.full(len(devices), np.inf)
    for k, v in limits.items():
        lim[r.device(k, devices, f"memory.limit_bytes.{k}")] = r.number(
            v, f"memory.limit_bytes.{k}", allow_null=True
        )
    if "node_weight_bytes" in mem or "position_activation_bytes" in mem:
        n = int(cand[-1])
        w = r.numbers(
            r.get(mem, "node_weight_bytes", "memory.node_weight_bytes"),
            "memory.node_weight_bytes",
            n,
        )
        act = r.numbers(
            r.get(mem, "position_activation_bytes", "memory.position_activation_bytes"),
            "memory.position_activation_bytes",
            n + 1,
        )
        return Memory.from_positions(lim, cand, w, act)
    wb = r.segment_table(
        r.get(mem, "weight_bytes", "memory.weight_bytes"), "memory.weight_bytes", cand, devices
    )
    ab = r.segment_table(
        r.get(mem, "peak_activation_bytes", "memory.peak_activation_bytes"),
        "memory.peak_activation_bytes",
        cand,
        devices,
    )
    return Memory(lim, wb, ab)


def _layer_from_dict(data: dict, r: _Reader) -> LayerInstance:
    devices = r.devices(data)
    d = len(devices)
    comp_raw = r.get(data, "compute_ms")
    if not isinstance(comp_raw, list) or not comp_raw:
        raise r.error("compute_ms", "must be a list with one row of device times per layer")
    comp = np.array(
        [r.numbers(row, f"compute_ms[{i}]", d, allow_null=True) for i, row in enumerate(comp_raw)]
    )
    n = len(comp)
    tr_raw = r.get(data, "transfer_ms")
    if not isinstance(tr_raw, list) or len(tr_raw) != n + 1:
        raise r.error("transfer_ms", f"must hold {n + 1} device x device matrices (positions 0..N)")
    tr = np.zeros((n + 1, d, d))
    for p, mat in enumerate(tr_raw):
        if not isinstance(mat, list) or len(mat) != d:
            raise r.error(f"transfer_ms[{p}]", f"must be a {d} x {d} matrix")
        for a, row in enumerate(mat):
            tr[p, a] = r.numbers(row, f"transfer_ms[{p}][{a}]", d, allow_null=True)
    source = r.device(data.get("source", devices[0]), devices, "source")
    sink = data.get("sink")
    sink = None if sink is None else r.device(sink, devices, "sink")
    return LayerInstance(devices, comp, tr, source, sink)


def instance_to_dict(inst: Instance) -> dict[str, Any]:
    """The JSON structure of an instance (matrix form), e.g. to save a generated one."""

    def table(t: np.ndarray) -> list:
        return [[None if not math.isfinite(v) else float(v) for v in row] for row in t]

    if isinstance(inst, LayerInstance):
        return {
            "kind": "layer",
            "devices": list(inst.devices),
            "compute_ms": table(inst.compute_ms),
            "transfer_ms": [table(m) for m in inst.transfer_ms],
            "source": inst.devices[inst.source],
            "sink": None if inst.sink is None else inst.devices[inst.sink],
        }
    out: dict[str, Any] = {
        "kind": "segment",
        "devices": list(inst.devices),
        "candidates": inst.candidates.tolist(),
        "cut_bytes": inst.cut_bytes.tolist(),
        "links": {
            name: {"bandwidth_mbps": float(b), "latency_ms": float(lat)}
            for name, b, lat in zip(
                inst.link_names, inst.bandwidth_mbps, inst.latency_ms, strict=True
            )
        },
        "source": inst.devices[inst.source],
        "sink": None if inst.sink is None else inst.devices[inst.sink],
        "compute_ms": {dev: table(inst.compute_ms[d]) for d, dev in enumerate(inst.devices)},
    }
    if inst.estimated_ms is not None:
        out["estimated_ms"] = {
            dev: table(inst.estimated_ms[d]) for d, dev in enumerate(inst.devices)
        }
    if inst.memory is not None:
        mem = inst.memory
        out["memory"] = {
            "limit_bytes": {
                dev: None if not math.isfinite(v) else float(v)
                for dev, v in zip(inst.devices, mem.limit_bytes, strict=True)
            },
            "weight_bytes": {dev: table(mem.weight_bytes[d]) for d, dev in enumerate(inst.devices)},
            "peak_activation_bytes": {
                dev: table(mem.activation_bytes[d]) for d, dev in enumerate(inst.devices)
            },
        }
    return out
