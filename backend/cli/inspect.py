"""`omdp inspect MODEL`: the model as the tool sees it."""

from __future__ import annotations

import argparse

from backend import units
from backend.cli.common import add_json_arg, add_model_args, load_analysis
from backend.cli.format import emit_json, table


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("inspect")
    add_model_args(p)
    add_json_arg(p)
    p.add_argument("--nodes", action="store_true", help="also print the node table")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    a = load_analysis(args)
    frame = a.node_table()
    if args.json:
        data = a.summary()
        rows = frame.astype(object).where(frame.notna(), None).to_dict("records")
        for row, node in zip(rows, a.nodes, strict=True):
            row["inputs"] = [t.as_dict() for t in node.inputs]
            row["outputs"] = [t.as_dict() for t in node.outputs]
        data["node_table"] = rows
        emit_json(data)
        return 0
    s = a.summary()
    print(f"model       {s['path'] or args.model}")
    print(f"nodes       {s['nodes']}  (positions 0..{s['nodes']})")
    print(f"parameters  {s['parameters']:,} ({units.count(s['parameters'])})")
    print(f"FLOPs       {s['flops']:,} ({units.count(s['flops'])})")
    if s["flops_uncounted"]:
        ops = ", ".join(f"{op}×{c}" for op, c in s["flops_uncounted"].items())
        print(f"            not counted: {ops}")
    print(
        f"opsets      {', '.join(f'{k} {v}' for k, v in s['opsets'].items())}  "
        f"(IR {s['ir_version']})"
    )
    for kind in ("inputs", "outputs"):
        for t in s[kind]:
            print(
                f"{kind[:-1]:<11} {t['name']}  {t['shape']}  {t['dtype']}  {units.size(t['bytes'])}"
            )
    top = list(s["ops"].items())[:12]
    print("ops         " + ", ".join(f"{op} {c}" for op, c in top))
    if args.nodes:
        rows = [
            (
                r.index,
                r.name,
                r.op,
                r.output_shape,
                units.size(r.output_bytes),
                units.count(r.flops),
                units.count(r.params),
                units.size(r.cut_bytes),
            )
            for r in frame.itertuples()
        ]
        print()
        print(
            table(
                rows,
                ["#", "name", "op", "output shape", "out bytes", "FLOPs", "params", "cut after"],
                "rllllrrr",
            )
        )
    return 0
