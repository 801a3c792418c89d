"""`omdp extract MODEL --from P --to P -o FILE`: one segment as a standalone model."""

from __future__ import annotations

import argparse
from typing import Any

from backend import units
from backend.cli.common import add_json_arg, add_model_args, load_analysis
from backend.cli.format import emit_json
from backend.errors import OmdpError
from backend.files import check_writable
from backend.model.segment_files import check_not_source, write_segment


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("extract")
    add_model_args(p)
    p.add_argument(
        "--from",
        dest="start",
        required=True,
        metavar="P",
        help="start position (index, or node name: the cut after that node)",
    )
    p.add_argument("--to", dest="end", required=True, metavar="P", help="end position")
    p.add_argument("-o", "--output", required=True, metavar="FILE", help="where to write it")
    add_json_arg(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    out = check_writable(args.output, "segment.onnx")  # before loading a big model
    a = load_analysis(args)
    check_not_source(out, a.path)
    start, end = a.resolve(args.start), a.resolve(args.end)
    if start > end:
        raise OmdpError(f"--from {start} is after --to {end}", "swap them: FROM ≤ TO")
    size = write_segment(a.index, start, end, out)
    info: dict[str, Any] = {
        "output": str(out),
        "start": start,
        "end": end,
        "bytes": size,
        "nodes": sum(not a.nodes[i].static for i in range(start, end)),
        "inputs": [a.tensors[t].as_dict() for t in a.cuts[start].tensors],
        "outputs": [a.tensors[t].as_dict() for t in a.cuts[end].tensors],
    }
    if args.json:
        emit_json(info)
    else:
        print(
            f"wrote {out} ({units.size(info['bytes'])}): segment [{start}, {end}), "
            f"{info['nodes']} compute nodes"
        )
        print(f"  inputs  {', '.join(i['name'] for i in info['inputs']) or '-'}")
        print(f"  outputs {', '.join(o['name'] for o in info['outputs']) or '-'}")
    return 0
