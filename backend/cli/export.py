"""`omdp export SESSION --rank R -o FILE`: chosen partitions as a JSON document."""

from __future__ import annotations

import argparse

from backend.cli.paths import add_ranking_args, ranking_options
from backend.errors import OmdpError
from backend.profiling.session import Session
from backend.usecases.exports import export_ranks


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="write chosen partitions to JSON (docs/export.md)")
    add_ranking_args(p)
    p.add_argument("--rank", default="1", metavar="R[,R...]",
                   help="which ranked partitions to export (default 1)")
    p.add_argument("-o", "--output", required=True, metavar="FILE", help="the JSON file")
    p.add_argument("--with-models", metavar="DIR", help="also write each segment as ONNX")
    p.set_defaults(func=run)


def _ranks(text: str) -> list[int]:
    try:
        ranks = sorted({int(r) for r in text.split(",") if r.strip()})
    except ValueError:
        ranks = []
    if not ranks or ranks[0] < 1:
        raise OmdpError(f"--rank {text!r} is not a list of ranks ≥ 1", "e.g. --rank 1 or 1,2,3")
    return ranks


def run(args: argparse.Namespace) -> int:
    ranks = _ranks(args.rank)
    with Session.open(args.session) as session:
        exported = export_ranks(session, ranking_options(args, max(ranks)), ranks, args.output,
                                args.with_models)
    written, chosen = exported.written, exported.partitions
    print(f"wrote {written[0]}: {len(chosen)} partition(s)"
          + (f" and {len(written) - 1} segment models in {args.with_models}"
             if len(written) > 1 else ""))
    return 0
