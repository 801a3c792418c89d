"""`omdp cuts MODEL [--top K]`: every position's crossing tensors, or the best candidates."""

from __future__ import annotations

import argparse
from typing import Any

from backend import fit, units
from backend.cli.common import add_json_arg, add_model_args, load_analysis
from backend.cli.format import emit_json, table
from backend.errors import OmdpError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("cuts")
    add_model_args(p)
    p.add_argument(
        "--top", type=int, metavar="K", help="only the K candidate positions the ranking picks"
    )
    add_json_arg(p)
    p.set_defaults(func=run)


TENSORS_W = 60  # the last column: long lists say how many more there are


def tensor_list(names: list[str], width: int = TENSORS_W) -> str:
    """'a, b, c' — or as many whole names as fit, then '… +3 more' (never a cut name);
    `--json` lists them all."""
    text = ", ".join(names)
    if len(text) <= width:
        return text
    shown: list[str] = []
    for i, name in enumerate(names):
        rest = f"… +{len(names) - i} more"
        if len(", ".join([*shown, name])) + 2 + len(f"… +{len(names) - i - 1} more") > width:
            return ", ".join([*shown, rest]) if shown else f"{fit.middle(name, width // 2)} {rest}"
        shown.append(name)
    return ", ".join(shown)


def run(args: argparse.Namespace) -> int:
    a = load_analysis(args)
    if args.top is not None and args.top < 1:
        raise OmdpError(f"--top {args.top} asks for no candidates", "give --top 1 or more")
    positions = a.candidates(args.top) if args.top else list(range(a.n + 1))
    cum = [0]
    for node in a.nodes:
        cum.append(cum[-1] + (node.flops or 0))
    rows: list[dict[str, Any]] = []
    for p in positions:
        cut = a.cuts[p]
        rows.append(
            {
                "position": p,
                "after": a.nodes[p - 1].name if p > 0 else None,
                "before": a.nodes[p].name if p < a.n else None,
                "bytes": cut.bytes,
                "flops_before": cum[p],
                "tensors": [{**a.tensors[t].as_dict()} for t in cut.tensors],
                "unknown_size": list(cut.unknown),
            }
        )
    if args.json:
        emit_json({"nodes": a.n, "flops": a.flops, "positions": rows})
        return 0
    total = cum[-1] or 1
    print(
        table(
            [
                (
                    r["position"],
                    r["after"] or "(input)",
                    units.size(r["bytes"]),
                    f"{100 * r['flops_before'] / total:.0f}%",
                    len(r["tensors"]),
                    tensor_list([t["name"] for t in r["tensors"]]),
                )
                for r in rows
            ],
            ["pos", "after node", "bytes", "FLOPs<", "n", "tensors"],
            "rlrrrl",
        )
    )
    if args.top:
        print(
            f"\n{len(rows)} candidates of {a.n - 1} interior positions "
            f"(model FLOPs {units.count(a.flops)})"
        )
    return 0
