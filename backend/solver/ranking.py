"""The solver's front door: `top_k` ranks any instance, exactly; callers import from here.

Every partition is one path in a DAG, and every path one partition (no duplicates: a cut
vector p_1..p_{D-1} is the same thing as the per-device segments [p_{i-1}, p_i), because
p_i = number of positions handled by devices 0..i; an empty device has p_{i-1} = p_i).
Where each part lives:

- `partition` — what a ranked partition is (Partition, Stage, Transfer) and the order:
  cost, then (throughput only) end-to-end latency, then the cut vector lexicographically;
- `ksp` — the generic K-shortest-paths search over a DAG (deviations, bottleneck search);
- `segment_ranker` — session-shaped instances, re-ranked cheaply after a bandwidth change;
- `layer_ranker` — layer-level instances (network_butcher style), the run-start DAG;
- `costs` — instances and the canonical cost of a partition; `instance_io` — their files.

Costs are always recomputed by the canonical functions of `backend.solver.costs`, and
near-ties (1e-9 relative) at the K-th place are all collected before the final sort, so
float noise in the search never changes which partitions are returned.
"""

from __future__ import annotations

from typing import Any

from backend.errors import OmdpError
from backend.solver.costs import OBJECTIVES, Instance, LayerInstance, check_choice
from backend.solver.ksp import ENUMERATE_LIMIT, METHODS, DagPath, Method, k_shortest_paths_dag
from backend.solver.layer_ranker import layer_top_k
from backend.solver.partition import Partition, check_k
from backend.solver.segment_ranker import Ranker, Ranking


def top_k(
    instance: Instance,
    k: int,
    objective: str = "latency",
    *,
    cost_model: str = "measured",
    bandwidth_mbps: Any = None,
    latency_ms: Any = None,
    method: Method = "auto",
    enumerate_limit: int = ENUMERATE_LIMIT,
) -> list[Partition]:
    """The exact k best distinct partitions, best first (fewer if fewer are feasible).

    objective: "latency" (sum of compute and transfers) or "throughput" (the slowest
    stage; ties then by latency). cost_model ranks by measured or estimated segment times
    (segment-level only). bandwidth_mbps / latency_ms override the instance's links.
    method forces an algorithm (tests compare them): enumerate, search, dag.
    """
    check_k(k)
    check_choice(objective, OBJECTIVES, "objective")
    check_choice(method, METHODS, "method")
    if isinstance(instance, LayerInstance):
        if cost_model != "measured":
            raise OmdpError("layer-level instances have one cost model", "drop --cost-model")
        if bandwidth_mbps is not None or latency_ms is not None:
            raise OmdpError(
                "layer-level instances give transfer times, not link bandwidths",
                "edit transfer_ms in the instance instead",
            )
        return layer_top_k(instance, k, objective, method, enumerate_limit)
    ranker = Ranker(instance, objective, cost_model, enumerate_limit=enumerate_limit, method=method)
    return ranker.rank(bandwidth_mbps, latency_ms, k).partitions()


__all__ = [
    "ENUMERATE_LIMIT",
    "DagPath",
    "Partition",
    "Ranker",
    "Ranking",
    "k_shortest_paths_dag",
    "top_k",
]
