"""From a session's measurements to a cost instance the solver can rank.

Measured: the median of each profiled segment on each device, exactly where profiled; a
segment not measured yet (a new candidate's, say) stands in with its estimate, flagged,
until it is profiled. Estimated: the chosen estimator of `backend.solver.estimators`
(fitted per device to its measurements and per-node times), for every segment. Layer-sum:
the sum of a device's per-node times over the segment (the whole-model profiling run).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from backend.errors import OmdpError
from backend.model.analysis import ModelAnalysis
from backend.profiling.session import Session
from backend.solver.costs import Memory, SegmentInstance, check_table_size, link_vector
from backend.solver.estimators import CHOSEN, DeviceTimes, fit


def device_times(session: Session) -> dict[str, DeviceTimes]:
    """Per device with per-node times (current configuration): those times and the
    medians of its ok measurements, at any positions."""
    n = session.model().nodes
    times = session.node_times_frame()
    results = session.results_frame()
    ok = results[(results["status"] == "ok") & (results["end"] > results["start"])]
    out = {}
    for name in session.chain().names:
        frame = times[times["device"] == name]
        if frame.empty:
            continue
        per_node = np.zeros(n)
        per_node[frame["position"].to_numpy()] = frame["ms"].to_numpy()
        mine = ok[ok["device"] == name]
        measured = {
            (int(a), int(b)): float(ms)
            for a, b, ms in zip(mine["start"], mine["end"], mine["median_ms"], strict=True)
        }
        out[name] = DeviceTimes(name, per_node, measured)
    return out


def planned_mask(n_devices: int, m: int) -> np.ndarray:
    """(D, M, M) segments a partition can give each device: prefixes to the first,
    suffixes to the last, any to a middle one (the plan's shape)."""
    mask = np.triu(np.ones((n_devices, m, m), dtype=bool), 1)
    if n_devices > 1:
        mask[0, 1:, :] = False
        mask[-1, :, : m - 1] = False
    return mask


def instance_from_session(
    session: Session,
    *,
    bandwidth_mbps: Mapping[str, float] | None = None,
    latency_ms: Mapping[str, float] | None = None,
    sink: str | None = None,
    extra_candidates: Mapping[int, float | None] | None = None,
) -> SegmentInstance:
    """The session as a segment-level instance over its candidates (0 and N added).

    Link values: the operator's saved ones, overridden by `bandwidth_mbps`/`latency_ms`
    ({link name: value}). `extra_candidates` ({position: cut bytes}) are ranked too
    without being stored. Under the measured model a segment never tried stands in with
    its estimate (flagged in `stand_in`); one that failed is not allowed. The estimated
    and layer-sum tables are present for the devices with per-node times.
    """
    ref = session.model()
    n = ref.nodes
    chain = session.chain()
    names = chain.names
    extra = dict(extra_candidates or {})  # position -> cut bytes: ranked, not stored
    candidates = sorted({0, n, *session.candidates(), *extra})
    index = {p: i for i, p in enumerate(candidates)}
    m, d = len(candidates), len(names)
    check_table_size(d, m, f"session {session.path}")

    compute = np.full((d, m, m), np.nan)
    for k in range(d):
        np.fill_diagonal(compute[k], 0.0)
    results = session.results_frame()
    tried = results[results["status"].isin(["ok", "error"])]
    dev_index = {name: i for i, name in enumerate(names)}
    attempted = np.zeros((d, m, m), dtype=bool)
    for row in tried.itertuples():
        i, j = index.get(row.start), index.get(row.end)
        if i is not None and j is not None and row.device in dev_index:
            attempted[dev_index[row.device], i, j] = True
            if row.status == "ok":
                compute[dev_index[row.device], i, j] = row.median_ms

    estimated = layer_sum = stand_in = None
    per_device = device_times(session)
    if per_device:
        blocks = np.array(candidates)
        estimated = np.full((d, m, m), np.nan)
        layer_sum = np.full((d, m, m), np.nan)
        upper = np.triu_indices(m, 1)
        starts, ends = blocks[upper[0]], blocks[upper[1]]
        for name, times in per_device.items():
            k = dev_index[name]
            layer_sum[k][upper] = times.layer_sum(starts, ends)
            estimated[k][upper] = fit(CHOSEN, times, blocks)(starts, ends)
        stand_in = planned_mask(d, m) & ~attempted & np.isfinite(estimated)
        compute = np.where(stand_in, estimated, compute)

    summary = session.summary()
    cut_bytes = {**extra, **session.candidate_cut_bytes()}
    cut_bytes[0] = sum(t.get("bytes") or 0 for t in summary.get("inputs", []))
    cut_bytes[n] = sum(t.get("bytes") or 0 for t in summary.get("outputs", []))

    links = chain.link_names
    current = session.bandwidths()
    saved = np.array(current, dtype=float).reshape(d - 1, 2)
    bw = link_vector(links, bandwidth_mbps, saved[:, 0], "bandwidth")
    lat = link_vector(links, latency_ms, saved[:, 1], "latency")
    sink_index = None
    if sink is not None:
        if sink not in names:
            raise OmdpError(f"unknown sink device {sink!r}", f"devices: {', '.join(names)}")
        sink_index = names.index(sink)
    return SegmentInstance(
        devices=tuple(names),
        candidates=np.array(candidates),
        cut_bytes=np.array([float(cut_bytes.get(p) or 0) for p in candidates]),
        compute_ms=compute,
        bandwidth_mbps=bw,
        latency_ms=lat,
        sink=sink_index,
        estimated_ms=estimated,
        layer_sum_ms=layer_sum,
        stand_in=stand_in,
    )


def memory_needs(
    analysis: ModelAnalysis, inst: SegmentInstance, limits_mb: Mapping[str, float]
) -> Memory:
    """Per-device limits against each segment's weights plus its largest live cut.

    Weights are counted per node (a weight two nodes share counts twice: an upper bound).
    """
    unknown = [d for d in limits_mb if d not in inst.devices]
    if unknown:
        raise OmdpError(
            f"--memory names unknown device {unknown[0]!r}", f"devices: {', '.join(inst.devices)}"
        )
    inits = analysis.index.initializers
    node_weights = [
        sum(t.bytes or 0 for t in node.inputs if t.name in inits) for node in analysis.nodes
    ]
    live = [cut.bytes for cut in analysis.cuts]
    limits = [limits_mb.get(d, np.inf) * 2**20 for d in inst.devices]
    return Memory.from_positions(limits, inst.candidates, node_weights, live)
