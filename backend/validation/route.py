"""What each device does when a partition runs as a chain: its segment, what it receives
and passes on, and the hops between devices, each with what the ranking predicts for it.

The run follows the cost model (backend/solver/costs.py, `link_stage_ms`): the input is
produced on the first device; each device runs its segment, possibly empty, and sends the
tensors crossing its cut to the next device, an empty device in between relaying them;
the output goes on to the sink when there is one. The devices taking part are the first
one up to the last that computes (or the sink, if it is further on). A sink before the
last computing device would send the output backwards: not run yet.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from backend.errors import OmdpError
from backend.solver.partition import Partition


@dataclass(frozen=True)
class StagePlan:
    """One device of the run."""

    device: str
    segment: tuple[int, int] | None  # None: computes nothing (relays, or only sends)
    receives: int | None  # the position whose cut arrives (None: the first device)
    sends: int  # the position whose cut it passes on (N at the final stage: the output)
    final: bool
    measured_ms: float | None  # the ranking's prediction of its compute time, per model
    estimated_ms: float | None
    ranked_ms: float  # under the cost model that ranked the partition (another, e.g. layer-sum)

    @property
    def role(self) -> str:
        if self.segment is not None:
            return "compute"
        return "source" if self.receives is None else ("sink" if self.final else "relay")


@dataclass(frozen=True)
class Hop:
    """X(position) crossing the link from `src` to `dst`."""

    link: str
    src: str
    dst: str
    position: int
    bytes: float
    predicted_ms: float  # bytes × 8 / bandwidth + latency, the same under both cost models


@dataclass(frozen=True)
class Route:
    partition: Partition
    stages: list[StagePlan]
    hops: list[Hop]
    link_ms: dict[str, list[float]] = field(default_factory=dict)  # per link model, per hop

    @property
    def positions(self) -> list[int]:
        """p_0 .. p_D, the partition's key."""
        return [0, *self.partition.cuts, self.partition.stages[-1].end]


def route_of(partition: Partition, devices: Sequence[str], sink: str | None = None) -> Route:
    """The run of `partition` over the chain `devices` (see the module docstring)."""
    stages = partition.stages
    n = stages[-1].end
    computing = [i for i, s in enumerate(stages) if not s.empty]
    last = computing[-1] if computing else 0
    if sink is not None:
        where = list(devices).index(sink)
        if where < last:
            raise OmdpError(
                f"partition #{partition.rank}: the output would go back from "
                f"'{devices[last]}' to the sink '{sink}'; validating that is not supported",
                "validate without a sink, or rank with the sink at or after the last device",
            )
        last = where
    by_link = {(t.src, t.dst): t for t in partition.transfers}
    plans: list[StagePlan] = []
    hops: list[Hop] = []
    holding = 0  # the position whose cut the chain carries so far
    for i in range(last + 1):
        s = stages[i]
        if not s.empty:
            holding = s.end
        final = i == last
        plans.append(
            StagePlan(
                device=s.device,
                segment=None if s.empty else (s.start, s.end),
                receives=None if i == 0 else hops[-1].position,
                sends=n if final else holding,
                final=final,
                measured_ms=s.measured_ms if not s.empty else 0.0,
                estimated_ms=s.estimated_ms if not s.empty else 0.0,
                ranked_ms=s.compute_ms if not s.empty else 0.0,
            )
        )
        if not final:
            t = by_link.get((s.device, stages[i + 1].device))
            if t is None or t.position != holding:
                raise OmdpError(
                    f"partition #{partition.rank}: the ranking has no transfer of "
                    f"X({holding}) from '{s.device}' to '{stages[i + 1].device}'",
                    "rank the session again before validating",
                )
            hops.append(Hop(t.link, t.src, t.dst, t.position, t.bytes or 0.0, t.ms))
    if len(partition.transfers) != len(hops):
        raise OmdpError(
            f"partition #{partition.rank} moves data the chain run does not (e.g. the output "
            "backwards to a sink)",
            "validate it without a sink",
        )
    return Route(partition, plans, hops)
