"""`omdp extract MODEL --from P --to P -o FILE`: one segment as a standalone model."""

from __future__ import annotations

import argparse
from pathlib import Path

from backend.cli.common import add_json_arg, add_model_args, load_analysis
from backend.cli.format import emit_json, human_bytes
from backend.errors import OmdpError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("extract", help="write segment [FROM, TO) as an ONNX model")
    add_model_args(p)
    p.add_argument("--from", dest="start", required=True, metavar="P",
                   help="start position (index, or node name: the cut after that node)")
    p.add_argument("--to", dest="end", required=True, metavar="P", help="end position")
    p.add_argument("-o", "--output", required=True, metavar="FILE", help="where to write it")
    add_json_arg(p)
    p.set_defaults(func=run)


def check_output_path(path: Path) -> None:
    if path.is_dir():
        raise OmdpError(f"{path} is a directory", "give a file name, e.g. segment.onnx")
    if not path.parent.exists():
        raise OmdpError(f"folder {path.parent} does not exist", "create it or choose another")


def run(args: argparse.Namespace) -> int:
    out = Path(args.output)
    check_output_path(out)
    a = load_analysis(args)
    start, end = a.resolve(args.start), a.resolve(args.end)
    if start > end:
        raise OmdpError(f"--from {start} is after --to {end}", "swap them: FROM ≤ TO")
    try:
        size = a.index.write_segment(start, end, str(out))
    except ValueError as exc:
        raise OmdpError(str(exc), "extract a shorter range") from exc
    info = {
        "output": str(out), "start": start, "end": end, "bytes": size,
        "nodes": sum(not a.nodes[i].static for i in range(start, end)),
        "inputs": [a.tensors[t].as_dict() for t in a.cuts[start].tensors],
        "outputs": [a.tensors[t].as_dict() for t in a.cuts[end].tensors],
    }
    if args.json:
        emit_json(info)
    else:
        print(f"wrote {out} ({human_bytes(info['bytes'])}): segment [{start}, {end}), "
              f"{info['nodes']} compute nodes")
        print(f"  inputs  {', '.join(i['name'] for i in info['inputs']) or '-'}")
        print(f"  outputs {', '.join(o['name'] for o in info['outputs']) or '-'}")
    return 0
