"""`omdp trace SESSION --trace LINK=FILE`: replay recorded bandwidths over the partitions."""

from __future__ import annotations

import argparse
import json

import numpy as np

from backend.cli.format import table
from backend.cli.paths import add_ranking_args
from backend.errors import OmdpError
from backend.profiling.session import Session
from backend.solver.link_values import LATENCY, parse_values, split_pairs
from backend.usecases.traces import replay_session


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("trace")
    add_ranking_args(p, link_model=False)
    p.add_argument(
        "--trace",
        action="append",
        default=[],
        required=True,
        metavar="LINK=FILE",
        help="a trace file (`<seconds> <Mbit/s>` per line) for a link (repeatable)",
    )
    p.add_argument("--json", action="store_true", help="machine-readable JSON")
    p.set_defaults(func=run)


def _segments(inst, cuts) -> str:
    bounds = [0, *cuts, int(inst.candidates[-1])]
    return "  ".join(
        f"{d}[{a},{b})" for d, a, b in zip(inst.devices, bounds, bounds[1:], strict=False) if a < b
    )


def run(args: argparse.Namespace) -> int:
    with Session.open(args.session, check_model=False) as session:
        names = session.chain().link_names
        files = split_pairs(args.trace, names, "--trace", "FILE")
        if args.bandwidth:
            raise OmdpError(
                "--bw and --trace together are ambiguous",
                "links without a trace keep the session's bandwidth; drop --bw",
            )
        latency = parse_values(args.latency, names, LATENCY)
        replay = replay_session(
            session,
            files,
            latency_ms=latency,
            sink=args.sink,
            objective=args.objective,
            cost_model=args.cost_model,
        )
    inst, timeline, result = replay.instance, replay.timeline, replay.analysis
    finite = result.optimal_ms[np.isfinite(result.optimal_ms)]
    choices = {"best_mean": result.best_mean, "best_p95": result.best_p95}
    if args.json:
        print(
            json.dumps(
                {
                    "steps": len(timeline),
                    "objective": result.objective,
                    "optimal_ms": [
                        None if not np.isfinite(v) else float(v) for v in result.optimal_ms
                    ],
                    "optimal_cuts": [list(c) if c else None for c in result.optimal_cuts],
                    "shares": [{"cuts": list(c), "share": s} for c, s in result.shares],
                    **{
                        key: None
                        if c is None
                        else {
                            "cuts": list(c.cuts),
                            "mean_ms": c.mean_ms,
                            "p95_ms": c.p95_ms,
                            "mean_regret_ms": c.mean_regret_ms,
                            "max_regret_ms": c.max_regret_ms,
                            "share_optimal": c.share_optimal,
                        }
                        for key, c in choices.items()
                    },
                },
                indent=2,
            )
        )
        return 0
    span = timeline.start_s[-1] + timeline.duration_s[-1] - timeline.start_s[0]
    print(
        f"{len(timeline)} steps over {span:.0f} s; best {args.objective} per step: "
        f"median {np.median(finite):.2f} ms, worst {finite.max():.2f} ms"
        if len(finite)
        else "no step has a usable partition"
    )
    print("\noptimal partitions by share of time:")
    print(
        table(
            [(f"{100 * s:.1f}%", _segments(inst, c)) for c, s in result.shares[:8]],
            ["time", "partition"],
            "rl",
        )
    )
    print("\nrobust choices:")
    print(
        table(
            [
                (
                    key.replace("_", " "),
                    _segments(inst, c.cuts),
                    f"{c.mean_ms:.2f}",
                    f"{c.p95_ms:.2f}",
                    f"{c.mean_regret_ms:.2f}",
                    f"{c.max_regret_ms:.2f}",
                )
                for key, c in choices.items()
                if c is not None
            ],
            ["choice", "partition", "mean ms", "p95 ms", "mean regret", "max regret"],
            "llrrrr",
        )
    )
    return 0
