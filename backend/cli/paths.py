"""`omdp paths SESSION`: the K best partitions from a session's measurements."""

from __future__ import annotations

import argparse
import json
import sys

from backend import units
from backend.cli.common import add_link_args
from backend.cli.solve import format_table, parse_k, uses_noisy
from backend.profiling import noise
from backend.profiling.session import Session
from backend.solver.costs import COST_MODEL_HELP, COST_MODELS, OBJECTIVES
from backend.solver.link_models import LINK_MODELS
from backend.usecases.rankings import RankOptions, links_in_use, rank_session


def add_ranking_args(p: argparse.ArgumentParser, link_model: bool = True) -> None:
    """Link values, cost model and objective: shared by paths, trace and export (the
    link model where the verb ranks through `ranking_options`)."""
    p.add_argument("session", help="session file (see `omdp sessions`)")
    add_link_args(p)
    p.add_argument(
        "--model",
        dest="cost_model",
        default="measured",
        choices=COST_MODELS,
        help=COST_MODEL_HELP,
    )
    p.add_argument(
        "--objective",
        default="latency",
        choices=OBJECTIVES,
        help="latency (sum of stages, default) or throughput (slowest stage)",
    )
    p.add_argument(
        "--measured-links",
        action="store_true",
        help="use the measured link values where measured (--bw/--latency still win)",
    )
    p.add_argument("--sink", metavar="DEVICE", help="the output must end on this device")
    if link_model:
        p.add_argument(
            "--link-model",
            default="typed",
            choices=LINK_MODELS,
            help="transfers at the typed link values (default) or fitted to `links measure` "
            "data where the session has it (docs/validation.md)",
        )
    p.add_argument(
        "--memory",
        action="append",
        default=[],
        metavar="DEVICE=MIB",
        help="a device's memory limit: its segment's weights plus its largest "
        "live activation must fit (needs the model file)",
    )


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("paths")
    add_ranking_args(p)
    p.add_argument("-k", default="10", metavar="K", help="how many partitions (default 10)")
    p.add_argument(
        "--save",
        action="store_true",
        help="store the given link values in the session as the current ones",
    )
    p.add_argument(
        "--candidate",
        dest="candidates",
        action="append",
        default=[],
        metavar="POS[,POS...]",
        help="also rank these positions (indices or node names) as candidates, not stored: "
        "their segments stand in with estimates (~) until profiled",
    )
    p.add_argument("--json", action="store_true", help="machine-readable JSON")
    p.set_defaults(func=run)


def ranking_options(args: argparse.Namespace, k: int) -> RankOptions:
    """The ranking the command line asks for (the arguments of `add_ranking_args`)."""
    return RankOptions(
        k=k,
        cost_model=args.cost_model,
        objective=args.objective,
        sink=args.sink,
        bandwidth=tuple(args.bandwidth),
        latency=tuple(args.latency),
        memory=tuple(args.memory),
        save_links=getattr(args, "save", False),
        candidates=tuple(getattr(args, "candidates", ())),
        link_model=args.link_model,
        measured_links=getattr(args, "measured_links", False),
    )


def run(args: argparse.Namespace) -> int:
    k = parse_k(args.k)
    options = ranking_options(args, k)
    with Session.open(args.session, check_model=False) as session:
        links = links_in_use(session, options)
        ranked = rank_session(session, options)
        parts = ranked.partitions
        done, total = session.progress()
        noisy = noise.noisy_keys(session)
    for line in ranked.warnings:
        print(f"omdp: warning: {line}", file=sys.stderr)
    if args.json:
        print(json.dumps([{**p.to_dict(), "noisy": uses_noisy(p, noisy)} for p in parts], indent=2))
        return 0
    print(
        f"{args.session}: {done}/{total} segments measured; {args.cost_model} times, "
        f"{args.objective} objective"
    )
    for link in links:
        print(
            f"link {link.name}: {units.mbps(link.bandwidth_mbps)} ({link.bandwidth_from}), "
            f"{units.ms_unit(link.latency_ms)} ({link.latency_from})"
        )
    if not parts:
        print("no feasible partition yet: profile the session first (`omdp profile`)")
        return 0
    print(format_table(parts, noisy))
    if any(p.has_stand_ins for p in parts):
        print(
            "~ estimate standing in for a segment not measured yet: "
            "`omdp profile` with these candidates measures only what is missing"
        )
    flagged = sorted({c for p in parts for c in uses_noisy(p, noisy)})
    if flagged:
        print(
            f"\n! uses a noisy measurement (CI missed its target, or contradicted by another: "
            f"`omdp results` says which): {', '.join(flagged)}; "
            f"`omdp profile --session {args.session} --remeasure noisy` measures them again"
        )
    return 0
