"""`omdp attribute SESSION`: each block's share of a device's measured times beside its
layer sum and the overhead of cutting at each candidate; `--evaluate` tests the
estimators by leave-one-out (docs/attribution.md)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import TYPE_CHECKING

from backend.cli.common import add_json_arg
from backend.cli.format import emit_json, table

if TYPE_CHECKING:  # loaded only when the verb runs (numpy, the session)
    from backend.solver.estimators import Evaluation
    from backend.usecases.attribution import DeviceAttribution


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("attribute", description=__doc__)
    p.add_argument("session", help="session file (see `omdp sessions`)")
    p.add_argument("--device", metavar="DEVICE", help="only this device")
    p.add_argument(
        "--evaluate",
        action="store_true",
        help="leave-one-out error of each estimator on every measured segment",
    )
    add_json_arg(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from backend.profiling.session import Session
    from backend.usecases.attribution import attribute_session, evaluate_session, evaluation_dict

    with Session.open(args.session, check_model=False, readonly=True) as session:
        found = attribute_session(session, args.device)
        evaluations = evaluate_session(session, args.device) if args.evaluate else None
    if args.json:
        doc = found.to_dict()
        if evaluations is not None:
            doc["evaluation"] = [evaluation_dict(e) for e in evaluations]
        emit_json(doc)
        return 0
    for name, why in found.skipped.items():
        print(f"{name}: {why}")
    for dev in found.devices:
        print(format_device(dev))
    if evaluations is not None:
        print(format_evaluation(evaluations))
    return 0


def format_device(dev: DeviceAttribution) -> str:
    how = "exact" if dev.exact else f"sampled over {dev.samples} orderings, ± at 99.9%"
    whole = "measured" if dev.whole_measured else "estimated"
    head = (
        f"\n{dev.device}: Shapley shares ({how}) of the whole model's {dev.whole_ms:.3f} ms "
        f"({whole}); {dev.runs_measured} of {dev.runs} runs of blocks measured"
    )
    if dev.runs_measured < dev.runs:
        head += f", the others estimated ({dev.estimator}, picked for this device)"
    if dev.node_cover is not None:
        head += f"\nper-node times add up to {100 * dev.node_cover:.0f}% of the whole model"
        if not dev.layer_sums_meaningful:
            head += (
                ": layer sums are not meaningful on this device (its profiler's kernels did "
                "not map to the nodes, or it was profiled under other load); profile it again"
            )
    rows = []
    for b in dev.blocks:
        share = f"{b.share_ms:.3f}" + (f" ±{b.error_ms:.3f}" if b.error_ms is not None else "")
        cut = "-"
        if b.cut_overhead_ms is not None:
            cut = f"{b.cut_overhead_ms:+.3f}" + (" ~" if b.cut_estimated else "")
        rows.append(
            (
                f"[{b.start}, {b.end})",
                share,
                f"{b.layer_sum_ms:.3f}",
                f"{b.share_ms - b.layer_sum_ms:+.3f}",
                cut,
            )
        )
    body = table(
        rows,
        ["block", "share ms", "layer-sum ms", "share-sum", "cut overhead ms"],
        "lrrrr",
    )
    note = "~: the overhead uses an estimated run (not measured on this device)"
    marked = any(b.cut_estimated for b in dev.blocks)
    return f"{head}\n{body}" + (f"\n{note}" if marked else "")


def format_evaluation(evaluations: Sequence[Evaluation]) -> str:
    from backend.solver.estimators import CHOSEN

    rows = [
        (
            e.device,
            e.approach + (f" * ({e.picked})" if e.approach == CHOSEN else ""),
            e.count,
            f"{e.median_abs_pct:.2f}",
            f"{e.p90_abs_pct:.2f}",
            f"{e.median_pct:+.2f}",
        )
        for e in evaluations
    ]
    body = table(
        rows,
        ["device", "estimator", "segments", "median |err| %", "p90 |err| %", "median err %"],
        "llrrrr",
    )
    return (
        "\nleave-one-out: each measured segment estimated from the others\n"
        f"* {CHOSEN}: the estimated cost model, per device the approach picked there (in\n"
        "  brackets); its own row picks again without each held-out segment\n" + body
    )
