"""`omdp export SESSION --rank R -o FILE`: chosen partitions as a JSON document."""

from __future__ import annotations

import argparse
import re

from backend.cli.paths import add_ranking_args, ranking_options
from backend.errors import OmdpError
from backend.profiling.session import Session
from backend.text import shown
from backend.usecases.exports import export_ranks


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export")
    add_ranking_args(p)
    p.add_argument(
        "--rank",
        default="1",
        metavar="R[,R...]",
        help="which ranked partitions to export (default 1)",
    )
    p.add_argument("-o", "--output", required=True, metavar="FILE", help="the JSON file")
    p.add_argument("--with-models", metavar="DIR", help="also write each segment as ONNX")
    p.set_defaults(func=run)


MAX_RANK = 10_000  # the ranking enumerates every partition up to the highest rank asked


def _ranks(text: str) -> list[int]:
    parts = [r.strip() for r in text.split(",") if r.strip()]
    if not parts or not all(re.fullmatch(r"[0-9]+", r) for r in parts):
        raise OmdpError(
            f"--rank {shown(text, 40)} is not a list of ranks ≥ 1", "e.g. --rank 1 or 1,2,3"
        )
    ranks = sorted({int(r) if len(r) < 10 else MAX_RANK + 1 for r in parts})
    if ranks[0] < 1 or ranks[-1] > MAX_RANK:
        raise OmdpError(
            f"--rank {shown(text, 40)} is out of range", f"ranks go from 1 to {MAX_RANK:,}"
        )
    return ranks


def run(args: argparse.Namespace) -> int:
    ranks = _ranks(args.rank)
    with Session.open(args.session) as session:
        exported = export_ranks(
            session, ranking_options(args, max(ranks)), ranks, args.output, args.with_models
        )
    written, chosen = exported.written, exported.partitions
    print(
        f"wrote {written[0]}: {len(chosen)} partition(s)"
        + (
            f" and {len(written) - 1} segment models in {args.with_models}"
            if len(written) > 1
            else ""
        )
    )
    return 0
