"""`omdp export-instance SESSION -o FILE [--level segment|layer]`: the session as an
instance file (docs/instance-format.md), to rank with `omdp solve` or other tools."""

from __future__ import annotations

import argparse

from backend.cli.common import add_json_arg, add_link_args
from backend.cli.format import emit_json


def register(sub: argparse._SubParsersAction) -> None:
    from backend.solver.costs import COST_MODEL_HELP, COST_MODELS

    p = sub.add_parser("export-instance", description=__doc__)
    p.add_argument("session", help="session file (see `omdp sessions`)")
    p.add_argument("-o", "--output", required=True, metavar="FILE", help="the JSON file")
    p.add_argument(
        "--level",
        default="segment",
        choices=("segment", "layer"),
        help="segment (candidates and segment times, default) or layer (per-layer times "
        "from the attribution, network_butcher's format; docs/attribution.md)",
    )
    p.add_argument(
        "--model", dest="cost_model", default="measured", choices=COST_MODELS, help=COST_MODEL_HELP
    )
    add_link_args(p)
    p.add_argument("--sink", metavar="DEVICE", help="the output must end on this device")
    add_json_arg(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from backend.profiling.session import Session
    from backend.usecases.instances import InstanceRequest, export_instance

    request = InstanceRequest(
        level=args.level,
        cost_model=args.cost_model,
        bandwidth=tuple(args.bandwidth),
        latency=tuple(args.latency),
        sink=args.sink,
    )
    with Session.open(args.session, readonly=True) as session:
        found = export_instance(session, request, args.output)
    if args.json:
        emit_json(
            {
                "path": str(found.path),
                "level": found.level,
                "residual_ms": found.residual_ms,
                "clamped_moves": found.clamped,
            }
        )
        return 0
    print(f"wrote {found.path}: {found.level}-level instance ({args.cost_model} times)")
    if found.level == "layer":
        worst = max(found.residual_ms.values(), default=0.0)
        print(
            "segment ends charged to the moves; largest miss of a segment time: "
            + ", ".join(f"{d} {ms:.3f} ms" for d, ms in found.residual_ms.items())
            + (" (exact)" if worst < 1e-6 else "")
        )
        if found.clamped:
            print(f"{found.clamped} moves came out below 0 and were written as 0")
    return 0
