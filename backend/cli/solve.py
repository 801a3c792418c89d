"""`omdp solve INSTANCE.json -k K`: the K best partitions of an instance file.

The instance format is documented in docs/instance-format.md. Link bandwidths can be
overridden with `--bw LINK=MBPS` (repeatable, parsed by `backend.solver.link_values` like
every other NAME=VALUE argument). The table printer and `parse_k` are shared with the
session-level verbs.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Set as AbstractSet

from backend import units
from backend.cli.common import add_bandwidth_arg
from backend.errors import OmdpError
from backend.solver.costs import COST_MODELS, OBJECTIVES, Instance, LayerInstance, check_choice
from backend.solver.instance_io import load_instance
from backend.solver.link_values import BANDWIDTH, parse_values
from backend.solver.partition import MAX_K, Partition, Transfer
from backend.solver.ranking import top_k


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "solve",
        description="Rank the K best partitions of a segment- or layer-level instance "
        "(format: docs/instance-format.md).",
    )
    p.add_argument("instance", help="instance JSON file")
    p.add_argument("-k", default="10", metavar="K", help="how many partitions (default 10)")
    p.add_argument("--objective", default="latency", help="latency (default) or throughput")
    p.add_argument(
        "--cost-model",
        default="measured",
        help="measured (default), estimated, or layer-sum (from estimated_node_ms) segment times",
    )
    add_bandwidth_arg(p)
    p.add_argument("--json", action="store_true", help="print the partitions as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    k = parse_k(args.k)
    check_choice(args.objective, OBJECTIVES, "objective")
    check_choice(args.cost_model, COST_MODELS, "cost model")
    inst = load_instance(args.instance)
    bandwidth = None
    if args.bandwidth:
        if isinstance(inst, LayerInstance):
            raise OmdpError(
                "--bw does not apply to a layer-level instance (it gives transfer times)",
                "drop --bw or edit transfer_ms",
            )
        bandwidth = parse_values(args.bandwidth, inst.link_names, BANDWIDTH)
    parts = top_k(inst, k, args.objective, cost_model=args.cost_model, bandwidth_mbps=bandwidth)
    if args.json:
        print(json.dumps([p.to_dict() for p in parts], indent=2))
        return 0
    print(describe_instance(args.instance, inst, args.objective, args.cost_model, bandwidth))
    if not parts:
        print("no feasible partition (every split needs a segment that is not allowed)")
        return 0
    print(format_table(parts))
    return 0


def parse_k(value: str | int) -> int:
    """K from the command line: a whole number from 1 to MAX_K."""
    try:
        k = int(value)
    except (TypeError, ValueError):
        k = 0
    if not 1 <= k <= MAX_K:
        raise OmdpError(
            f"K must be a whole number from 1 to {MAX_K:,}, got {str(value)[:40]!r}",
            "e.g. -k 10",
        )
    return k


def describe_instance(
    path: str, inst: Instance, objective: str, cost_model: str, bandwidth: dict | None
) -> str:
    """One header line: what was ranked, under which conditions."""
    chain = " -> ".join(inst.devices)
    if isinstance(inst, LayerInstance):
        what = f"layer-level, N = {inst.n_positions} layers"
        links = ""
    else:
        what = f"segment-level, {inst.n_candidates} candidates, N = {inst.n_positions}"
        bw, lat = inst.link_arrays(bandwidth, None)
        links = "; " + ", ".join(
            f"{n} {b:g} Mbit/s {la:g} ms" for n, b, la in zip(inst.link_names, bw, lat, strict=True)
        )
    return f"{path}: {what}, chain {chain}{links}; objective {objective} ({cost_model})"


def uses_noisy(p: Partition, noisy: AbstractSet[tuple[str, int, int]]) -> list[str]:
    """The stages of `p` whose time comes from a noisy measurement ('phone [2, 5)')."""
    if p.cost_model != "measured":
        return []
    return [
        f"{s.device} [{s.start}, {s.end})"
        for s in p.stages
        if not s.empty and (s.device, s.start, s.end) in noisy
    ]


def format_table(
    parts: list[Partition], noisy: AbstractSet[tuple[str, int, int]] = frozenset()
) -> str:
    """Aligned table: rank, total, [latency], one column per device, transfers. A rank
    marked ! uses a noisy measurement (its segment is marked too)."""
    throughput = parts[0].objective == "throughput"
    header = ["rank", "total ms"]
    if throughput:
        header += ["latency ms", "bottleneck"]
    header += [s.device for s in parts[0].stages] + ["transfers"]
    rows = []
    for p in parts:
        flagged = bool(uses_noisy(p, noisy))
        row = [
            f"{p.rank}{'!' if flagged else ' '}",
            ("~" if p.has_stand_ins else "") + f"{p.total_ms:.3f}",
        ]
        if throughput:
            row += [f"{p.latency_ms:.3f}", p.bottleneck]
        row += [
            "-"
            if s.empty
            else f"[{s.start}, {s.end})"
            + ("~" if s.stand_in else "")
            + ("!" if flagged and (s.device, s.start, s.end) in noisy else "")
            for s in p.stages
        ]
        row.append("; ".join(_transfer_text(t) for t in p.transfers) or "-")
        rows.append(row)
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    numeric = {0, 1, 2} if throughput else {0, 1}

    def fmt(row: list[str]) -> str:
        cells = [
            c.rjust(w) if i in numeric else c.ljust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        return "  ".join(cells).rstrip()

    return "\n".join([fmt(header), *(fmt(r) for r in rows)])


def _transfer_text(t: Transfer) -> str:
    size = "" if t.bytes is None else f" {units.size(t.bytes)}"
    return f"{t.src}->{t.dst} @{t.position}{size} {t.ms:.2f} ms"
