"""Per-node times: the whole model profiled by its runtime, each kernel mapped back to the
node position it belongs to. They feed the *estimated* cost model, beside the measured one.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import time
from dataclasses import dataclass

import numpy as np

try:
    import onnx
except ImportError:  # segments mode: the lab renames the nodes; profiling needs no onnx
    onnx = None  # type: ignore[assignment]

if __package__:
    from .runtimes import OrtRunner, OvRunner, RuntimeConfig
else:  # plain files side by side on a device
    from runtimes import OrtRunner, OvRunner, RuntimeConfig  # type: ignore[no-redef]


NODE_PREFIX = "omdp_n"


def renamed_for_profiling(model: onnx.ModelProto, positions: list[int]) -> onnx.ModelProto:
    """A copy whose node k is named `omdp_n<position>`: kernel names map back exactly."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    if len(positions) != len(m.graph.node):
        raise ValueError(f"{len(positions)} positions for {len(m.graph.node)} nodes")
    for node, pos in zip(m.graph.node, positions):
        node.name = f"{NODE_PREFIX}{pos}"
    return m


def attribute(name: str, producers: dict[str, int]) -> int | None:
    """The position a profiled kernel belongs to: our node name, else a tensor it produces
    (runtimes name fused/layout kernels after outputs, e.g. `r1_nchwc`), trimming `_x`
    suffixes until something matches."""
    m = re.match(rf"{NODE_PREFIX}(\d+)", name)
    if m:
        return int(m.group(1))
    probe = name
    while probe:
        if probe in producers:
            return producers[probe]
        if "_" not in probe:
            break
        probe = probe.rsplit("_", 1)[0]
    return None


@dataclass
class NodeProfile:
    """Per-kernel times (ms, median over runs) by the names the runtime reports."""

    runtime: str
    runs: int
    kernels: dict[str, float]  # runtime's node name -> median ms per run
    ops: dict[str, str]  # runtime's node name -> its op/kernel type
    total_ms: float  # median whole-run latency during profiling


def profile_nodes(
    model: bytes, feeds: dict[str, np.ndarray], config: RuntimeConfig, runs: int = 5
) -> NodeProfile:
    """Run the whole model `runs` times (after one warm-up) with the runtime's own
    profiler on; the per-node numbers feed the *estimated* cost model."""
    if config.name == "onnxruntime":
        return _profile_ort(model, feeds, config, runs)
    return _profile_ov(model, feeds, config, runs)


def _profile_ort(model: bytes, feeds, config: RuntimeConfig, runs: int) -> NodeProfile:
    with tempfile.TemporaryDirectory(prefix="omdp-prof-") as tmp:
        runner = OrtRunner(model, config, profile_prefix=os.path.join(tmp, "ort"))
        for _ in range(runs + 1):
            runner.run(feeds)
        path = runner.end_profiling()
        runner.close()
        with open(path) as f:
            events = json.load(f)
    run_spans = sorted(
        (e["ts"], e["ts"] + e["dur"])
        for e in events
        if e.get("cat") == "Session" and e.get("name") == "model_run"
    )
    per_run: list[dict[str, float]] = [{} for _ in run_spans]
    ops: dict[str, str] = {}
    for e in events:
        if e.get("cat") != "Node" or not e.get("name", "").endswith("_kernel_time"):
            continue
        name = e["name"][: -len("_kernel_time")]
        ops[name] = e.get("args", {}).get("op_name", "")
        for i, (lo, hi) in enumerate(run_spans):
            if lo <= e["ts"] <= hi:
                per_run[i][name] = per_run[i].get(name, 0.0) + e["dur"] / 1e3
                break
    per_run = per_run[1:]  # the first run is the warm-up
    totals = [(hi - lo) / 1e3 for lo, hi in run_spans[1:]]
    return NodeProfile(
        "onnxruntime",
        len(per_run),
        _median_per_key(per_run),
        ops,
        float(np.median(totals)) if totals else 0.0,
    )


def _profile_ov(model: bytes, feeds, config: RuntimeConfig, runs: int) -> NodeProfile:
    runner = OvRunner(model, config, perf_count=True)
    original = _ov_original_names(runner.compiled)
    runner.run(feeds)
    per_run: list[dict[str, float]] = []
    totals: list[float] = []
    ops: dict[str, str] = {}
    for _ in range(runs):
        t0 = time.perf_counter()
        runner.run(feeds)
        totals.append((time.perf_counter() - t0) * 1e3)
        times: dict[str, float] = {}
        for info in runner.request.get_profiling_info():
            if str(info.status).endswith("EXECUTED") and "NOT" not in str(info.status):
                ms = info.real_time.total_seconds() * 1e3
                name = original.get(info.node_name, info.node_name)
                times[name] = times.get(name, 0.0) + ms
                ops[name] = info.node_type
        per_run.append(times)
    runner.close()
    return NodeProfile("openvino", runs, _median_per_key(per_run), ops, float(np.median(totals)))


def _ov_original_names(compiled) -> dict[str, str]:
    """Executed node -> the name to attribute it by: OpenVINO's transformations rename
    what they fuse or rewrite (a convolution with its batch norm becomes `Multiply_123`),
    but the runtime model lists the source nodes each executed node came from
    (`originalLayersNames`); the first of ours among them (`omdp_n<position>`, lowest
    position) names it. Empty when this OpenVINO cannot say (the executed names are then
    tried as they are)."""
    found: dict[str, str] = {}
    try:
        ops = compiled.get_runtime_model().get_ordered_ops()
    except Exception:  # an older OpenVINO, or a plugin without a runtime model
        return found
    for op in ops:
        rt = op.get_rt_info()
        if "originalLayersNames" not in rt:
            continue
        value = rt["originalLayersNames"]
        text = value.astype(str) if hasattr(value, "astype") else str(value)
        ours = [n.strip() for n in str(text).split(",")]
        ours = [n for n in ours if re.match(rf"{NODE_PREFIX}\d+$", n)]
        if ours:
            found[op.get_friendly_name()] = min(ours, key=lambda n: int(n[len(NODE_PREFIX) :]))
    return found


def _median_per_key(per_run: list[dict[str, float]]) -> dict[str, float]:
    keys = {k for r in per_run for k in r}
    return {k: float(np.median([r.get(k, 0.0) for r in per_run])) for k in sorted(keys)}
