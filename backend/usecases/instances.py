"""A session written as an instance file (docs/instance-format.md), to rank it again with
`omdp solve` or to compare with other K-shortest-path tools: at the segment level (its
candidates and times), or at the layer level (network_butcher's format) from the
attributed per-layer times (docs/attribution.md)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from backend.errors import OmdpError
from backend.files import atomic_write, check_writable
from backend.profiling.session import Session
from backend.solver.costs import COST_MODELS, Instance, check_choice
from backend.solver.instance_io import instance_to_dict
from backend.solver.layer_level import layer_level
from backend.solver.link_values import BANDWIDTH, LATENCY, parse_values
from backend.solver.pricing import device_times, instance_from_session, planned_mask
from backend.usecases.attribution import attribute_device, session_blocks
from backend.usecases.sessions import session_analysis

LEVELS: tuple[str, ...] = ("segment", "layer")


@dataclass(frozen=True)
class InstanceRequest:
    level: str = "segment"
    cost_model: str = "measured"
    bandwidth: tuple[str, ...] = ()  # LINK=MBPS
    latency: tuple[str, ...] = ()  # LINK=MS
    sink: str | None = None


@dataclass
class WrittenInstance:
    path: Path
    instance: Instance
    level: str
    residual_ms: dict[str, float] = field(default_factory=dict)  # layer level, per device
    clamped: int = 0  # layer level: moves written as 0 (their ends' credit was larger)


def session_instance(session: Session, request: InstanceRequest) -> WrittenInstance:
    """The session's instance at the requested level (written by `export_instance`)."""
    check_choice(request.level, LEVELS, "level")
    check_choice(request.cost_model, COST_MODELS, "cost model")
    names = session.chain().link_names
    seg = instance_from_session(
        session,
        bandwidth_mbps=parse_values(request.bandwidth, names, BANDWIDTH),
        latency_ms=parse_values(request.latency, names, LATENCY),
        sink=request.sink,
    )
    seg.check_cost_model(request.cost_model)
    if request.level == "segment":
        return WrittenInstance(Path(), seg, "segment")
    analysis = session_analysis(session)
    blocks = session_blocks(session)
    times = device_times(session)
    layer_ms = np.zeros((analysis.n, seg.n_devices))
    for k, name in enumerate(seg.devices):
        t = times.get(name)
        if t is None or not t.measured:
            raise OmdpError(
                f"device {name} has no attribution (no per-node times or measurements under "
                "its current configuration)",
                "profile it (per-node times are measured with the plan)",
            )
        shares = np.array([b.share_ms for b in attribute_device(t, blocks).blocks])
        layer_ms[:, k] = layer_shares(t.node_ms, blocks, shares)
    found = layer_level(
        seg,
        request.cost_model,
        layer_ms,
        np.array([c.bytes or 0 for c in analysis.cuts], dtype=float),
        planned_mask(seg.n_devices, seg.n_candidates),
    )
    residual = dict(zip(seg.devices, found.ends.residual_ms.tolist(), strict=True))
    return WrittenInstance(Path(), found.instance, "layer", residual, found.clamped)


def layer_shares(node_ms: np.ndarray, blocks: np.ndarray, shares: np.ndarray) -> np.ndarray:
    """(N,) each block's share spread over its layers by their per-node times (evenly
    where the block's per-node times add up to 0)."""
    out = np.zeros(len(node_ms))
    for k in range(len(blocks) - 1):
        a, b = int(blocks[k]), int(blocks[k + 1])
        part = np.asarray(node_ms[a:b], dtype=float)
        total = part.sum()
        out[a:b] = shares[k] * (part / total if total > 0 else np.full(b - a, 1.0 / (b - a)))
    return out


def export_instance(
    session: Session, request: InstanceRequest, output: str | os.PathLike[str]
) -> WrittenInstance:
    """Write the session's instance to `output` (checked before any work; atomic)."""
    path = check_writable(output, "instance.json")
    if path.exists() and os.path.samefile(path, session.path):
        raise OmdpError(f"cannot write {path}: it is the session file", "write the JSON elsewhere")
    found = session_instance(session, request)
    atomic_write(path, json.dumps(instance_to_dict(found.instance)) + "\n")
    found.path = path
    return found
