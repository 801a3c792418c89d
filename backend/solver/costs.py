"""Cost instances for the partition solver: plain dataclasses over numpy arrays.

Two kinds of instance (file format: docs/instance-format.md):

- `SegmentInstance` — what a session produces: candidate positions, cut bytes, a time per
  (device, segment [a, b)) between candidates, link bandwidth/latency. Every transfer cost
  is a function of one cut: link l only ever carries data that depends on p_l (see
  `link_stage_ms`), so ranking stays a chain over the cut vector.
- `LayerInstance` — per-layer compute and an arbitrary transfer matrix, network_butcher
  style; used to check the solver against independent K-shortest-path implementations.

The cost of a partition is defined once here (`segment_costs`, `layer_costs`, both
vectorised over many partitions); every solver recomputes the costs it reports with these
functions, so two solvers never disagree about the last bit of a total. Reading and
writing instance files: `backend.solver.instance_io`; what a ranked partition looks like:
`backend.solver.partition`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

from backend.chain import link_names
from backend.errors import OmdpError

OBJECTIVES: tuple[str, ...] = ("latency", "throughput")
COST_MODELS: tuple[str, ...] = ("measured", "estimated", "layer-sum")
COST_MODEL_HELP = (
    "segment times: measured (default; segments not measured yet stand in as estimates, "
    "flagged), estimated (the fitted estimator of docs/attribution.md) or layer-sum (sums "
    "of per-node times)"
)


MAX_TABLE_CELLS = 1 << 22  # per table (4M cells, 32 MiB of float64): solvers copy a few


def check_table_size(n_devices: int, n_candidates: int, where: str = "the instance") -> None:
    """Refuse, before allocating, tables of more than MAX_TABLE_CELLS (devices x
    candidates x candidates), saying how big they would be and what the limit is."""
    cells = n_devices * n_candidates * n_candidates
    if cells > MAX_TABLE_CELLS:
        fit = math.isqrt(MAX_TABLE_CELLS // max(n_devices, 1))
        raise OmdpError(
            f"{where} has {n_candidates:,} candidates x {n_devices:,} devices: its segment "
            f"tables would need {cells * 8 / 2**30:.1f} GiB each; the limit is "
            f"{MAX_TABLE_CELLS:,} table cells ({fit:,} candidates for {n_devices} devices)",
            "choose fewer candidate positions",
        )


def check_layer_size(n_layers: int, n_devices: int, where: str = "the instance") -> None:
    """Refuse, before allocating, a layer instance whose transfer tables ((N+1) x D x D)
    would hold more than MAX_TABLE_CELLS numbers."""
    cells = (n_layers + 1) * n_devices * n_devices
    if cells > MAX_TABLE_CELLS:
        fit = MAX_TABLE_CELLS // max(n_devices * n_devices, 1) - 1
        raise OmdpError(
            f"{where} has {n_layers:,} layers x {n_devices:,} devices: its transfer tables "
            f"would hold {cells:,} numbers; the limit is {MAX_TABLE_CELLS:,} "
            f"({fit:,} layers for {n_devices} devices)",
            "merge layers or use a segment-level instance",
        )


def check_choice(value: str, options: tuple[str, ...], what: str) -> None:
    """`value` is one of `options` (an objective, a cost model, a method)."""
    if value not in options:
        raise OmdpError(f"unknown {what} {value!r}", f"use one of: {', '.join(options)}")


# --------------------------------------------------------------------------------------
# Small numeric helpers
# --------------------------------------------------------------------------------------


def transfer_ms(nbytes: Any, bandwidth_mbps: Any, latency_ms: Any) -> np.ndarray:
    """Time to send `nbytes` over one link: bits / rate + latency. 0 Mbit/s = link down (inf)."""
    bw = np.asarray(bandwidth_mbps, dtype=float)
    up = bw > 0
    t = np.asarray(nbytes, dtype=float) * 8.0 / np.where(up, bw * 1000.0, 1.0) + latency_ms
    if not up.all():
        t = np.where(up, t, np.inf)
    return t


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
        # the live peak between consecutive candidates (both ends included), then prefix
        # maxima over those: O(N + M^2) instead of a pass over the positions per candidate
        between = np.array([act[c[t] : c[t + 1] + 1].max() for t in range(m - 1)])
        for i in range(m):
            weight[i, i:] = cw[c[i:]] - cw[c[i]]
            peak[i, i] = act[c[i]]
            peak[i, i + 1 :] = np.maximum.accumulate(between[i:])
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
    layer_sum_ms: np.ndarray | None = None  # (D, M, M): sums of per-node times
    stand_in: np.ndarray | None = None  # (D, M, M) bool: compute_ms entries that are
    # estimates standing in for segments not measured yet (flagged wherever shown)

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
        check_table_size(d, m)
        link_names(devices)  # two links with one name would make link values ambiguous
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
        if self.layer_sum_ms is not None:
            layer = _clean_segment_table(self.layer_sum_ms, d, m, "layer_sum_ms")
            set_(self, "layer_sum_ms", layer)
        if self.stand_in is not None:
            mask = np.array(self.stand_in, dtype=bool)
            if mask.shape != (d, m, m):
                raise OmdpError(f"stand_in has shape {mask.shape}, expected ({d}, {m}, {m})")
            set_(self, "stand_in", mask & np.isfinite(self.compute_ms))
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

    @cached_property
    def link_names(self) -> tuple[str, ...]:
        """ "a-b" per link, in chain order (see `backend.chain.link_names`)."""
        return link_names(self.devices)

    # -- tables -----------------------------------------------------------------------
    def segment_ms(self, cost_model: str = "measured") -> np.ndarray:
        """(D, M, M) time of each allowed segment, inf where not allowed or does not fit."""
        return self._tables[cost_model]

    @cached_property
    def _tables(self) -> dict[str, np.ndarray]:
        tables = {"measured": self.compute_ms}
        if self.estimated_ms is not None:
            tables["estimated"] = self.estimated_ms
        if self.layer_sum_ms is not None:
            tables["layer-sum"] = self.layer_sum_ms
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

    def has_cost_model(self, cost_model: str) -> bool:
        return cost_model in self._tables

    def check_cost_model(self, cost_model: str) -> None:
        check_choice(cost_model, COST_MODELS, "cost model")
        if not self.has_cost_model(cost_model):
            raise OmdpError(
                f"this instance has no {cost_model} times",
                "add estimated_ms or estimated_node_ms, or rank by the measured model",
            )

    @property
    def has_stand_ins(self) -> bool:
        return self.stand_in is not None and bool(self.stand_in.any())

    def link_arrays(
        self, bandwidth_mbps: Any = None, latency_ms: Any = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Bandwidth and latency vectors: the instance's values, overridden by a sequence in
        link order or a {link name: value} mapping (links not named keep their value)."""
        names = self.link_names
        return (
            link_vector(names, bandwidth_mbps, self.bandwidth_mbps, "bandwidth"),
            link_vector(names, latency_ms, self.latency_ms, "latency"),
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


def link_vector(names: tuple[str, ...], value: Any, default: np.ndarray, what: str) -> np.ndarray:
    """`default` (one value per link, in chain order) overridden by `value`: a sequence in
    link order or a {link name: value} mapping. Bandwidths are >= 0 (0 = link down),
    latencies finite and >= 0."""
    if value is None:
        return default
    if isinstance(value, Mapping):
        out = np.array(default, dtype=float)
        for name, v in value.items():
            if name not in names:
                raise OmdpError(
                    f"unknown link {name!r}", f"valid links: {', '.join(names) or '(none)'}"
                )
            out[names.index(name)] = float(v)
    else:
        out = np.asarray(value, dtype=float).reshape(-1)
        if out.shape != default.shape:
            raise OmdpError(f"expected {len(default)} {what} values (one per link), got {len(out)}")
    ok = out >= 0 if what == "bandwidth" else (out >= 0) & np.isfinite(out)
    if not ok.all():
        bad = ~ok
        name = names[int(np.flatnonzero(bad)[0])]
        raise OmdpError(
            f"the {what} of link {name} must be a number >= 0, got {out[bad][0]}",
            "give Mbit/s (0 = link down)" if what == "bandwidth" else "give ms",
        )
    return out


def link_stage_ms(
    inst: SegmentInstance, bandwidth_mbps: Any = None, latency_ms: Any = None
) -> tuple[np.ndarray, np.ndarray]:
    """Per-link stage time as a function of that link's cut, and the per-transfer times,
    under these link values (see `SegmentInstance.link_arrays`; None: the instance's).

    Returns (link_ms (L, M), tau (L, M)): tau[l, i] = time to send X(candidate i) over link
    l; link_ms[l, i] = total time link l is busy when p_l = candidate i. Link l carries
      - X(p_l) forward when 0 < p_l < N (some device <= l and some device > l compute);
      - X(0) from the source to the first computing device j0 = min{i: p_i > 0}:
        forward if source <= l < j0 (p_l == 0), backward if j0 <= l < source (p_l > 0);
      - X(N) from the last computing device j1 = min{i: p_i = N} to the sink, if any:
        forward if j1 <= l < sink (p_l == N), backward if sink <= l < j1 (p_l < N).
    Each flow is one transfer (pays the latency once); a link's stage time is their sum.
    """
    bw, lat = inst.link_arrays(bandwidth_mbps, latency_ms)
    tau = transfer_ms(inst.cut_bytes[None, :], bw[:, None], lat[:, None])
    main, inp, out = inst.flow_masks
    # summed in the order transfers happen: the input, between devices, the output
    link = np.where(inp, tau[:, :1], 0.0)
    link += np.where(main, tau, 0.0)
    link += np.where(out, tau[:, -1:], 0.0)
    return link, tau


def segment_flow_masks(inst: SegmentInstance) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(main, input, output) masks of shape (L, M): does link l carry that flow when
    p_l = candidate i (see `link_stage_ms`)."""
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
        check_layer_size(n, d)
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


Instance = SegmentInstance | LayerInstance
