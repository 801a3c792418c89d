"""`omdp paths SESSION`: the K best partitions from a session's measurements."""

from __future__ import annotations

import argparse
import dataclasses
import json

from backend.cli.link_values import BANDWIDTH, LATENCY, MEMORY, parse_values
from backend.cli.solve import format_table, parse_k
from backend.errors import OmdpError
from backend.model.analysis import ModelAnalysis, analyze
from backend.profiling.session import Session
from backend.solver.costs import COST_MODELS, OBJECTIVES, SegmentInstance
from backend.solver.pricing import instance_from_session, memory_needs
from backend.solver.ranking import Partition, top_k


def add_ranking_args(p: argparse.ArgumentParser) -> None:
    """Link values, cost model and objective: shared by paths, trace and export."""
    p.add_argument("session", help="session file (see `omdp sessions`)")
    p.add_argument("--bw", "--bandwidth", dest="bandwidth", action="append", default=[],
                   metavar="LINK=MBPS", help="a link's bandwidth, e.g. glasses-phone=20")
    p.add_argument("--latency", action="append", default=[], metavar="LINK=MS",
                   help="a link's latency in ms, e.g. glasses-phone=5")
    p.add_argument("--model", dest="cost_model", default="measured", choices=COST_MODELS,
                   help="segment times: measured (default) or estimated from per-node times")
    p.add_argument("--objective", default="latency", choices=OBJECTIVES,
                   help="latency (sum of stages, default) or throughput (slowest stage)")
    p.add_argument("--sink", metavar="DEVICE", help="the output must end on this device")
    p.add_argument("--memory", action="append", default=[], metavar="DEVICE=MIB",
                   help="a device's memory limit: its segment's weights plus its largest "
                        "live activation must fit (needs the model file)")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("paths", help="the K best partitions for given link bandwidths")
    add_ranking_args(p)
    p.add_argument("-k", default="10", metavar="K", help="how many partitions (default 10)")
    p.add_argument("--save", action="store_true",
                   help="store the given link values in the session as the current ones")
    p.add_argument("--json", action="store_true", help="machine-readable JSON")
    p.set_defaults(func=run)


def rank_session(session: Session, args: argparse.Namespace,
                 k: int) -> tuple[SegmentInstance, list[Partition]]:
    """The session's instance under the command line's link values, and its top K."""
    chain = session.chain()
    names = chain.link_names
    bandwidth = parse_values(args.bandwidth, names, BANDWIDTH)
    latency = parse_values(args.latency, names, LATENCY)
    inst = instance_from_session(session, bandwidth_mbps=bandwidth, latency_ms=latency,
                                 sink=args.sink)
    if args.cost_model == "estimated" and inst.estimated_ms is None:
        raise OmdpError(f"session {session.path} has no per-node times for the estimated model",
                        "profile it again (per-node times are measured with the plan) or use "
                        "--model measured")
    if args.memory:
        limits = parse_values(args.memory, chain.names, MEMORY, "device")
        inst = dataclasses.replace(
            inst, memory=memory_needs(session_analysis(session), inst, limits))
    if getattr(args, "save", False) and (bandwidth or latency):
        current = session.bandwidths()
        session.set_bandwidths({i: (bandwidth.get(n, current[i][0]), latency.get(n, current[i][1]))
                                for i, n in enumerate(names)})
    return inst, top_k(inst, k, args.objective, cost_model=args.cost_model)


def session_analysis(session: Session) -> ModelAnalysis:
    """The session's model, analysed again (it must still be the file that was measured)."""
    ref = session.model()
    source = ref.path or ref.builtin
    if source is None:
        raise OmdpError("the session does not say where its model is", "start a new one")
    analysis = analyze(source, ref.input_shapes)
    if analysis.sha256 != ref.sha256:
        raise OmdpError(f"the model at {source} is not the one this session measured",
                        "restore the original model file")
    return analysis


def run(args: argparse.Namespace) -> int:
    k = parse_k(args.k)
    with Session.open(args.session, check_model=False) as session:
        _, parts = rank_session(session, args, k)
        done, total = session.progress()
    if args.json:
        print(json.dumps([p.to_dict() for p in parts], indent=2))
        return 0
    print(f"{args.session}: {done}/{total} segments measured; {args.cost_model} times, "
          f"{args.objective} objective")
    if not parts:
        print("no feasible partition yet: profile the session first (`omdp profile`)")
        return 0
    print(format_table(parts))
    return 0
