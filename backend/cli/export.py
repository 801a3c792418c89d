"""`omdp export SESSION --rank R -o FILE`: chosen partitions as a JSON document."""

from __future__ import annotations

import argparse
import os
import re
from pathlib import Path

from backend.cli.paths import add_ranking_args, rank_session, session_analysis
from backend.errors import OmdpError
from backend.export import build_export, check_models_folder, write_export
from backend.files import check_writable
from backend.model.checks import shown
from backend.profiling.session import Session


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="write chosen partitions to JSON (docs/export.md)")
    add_ranking_args(p)
    p.add_argument("--rank", default="1", metavar="R[,R...]",
                   help="which ranked partitions to export (default 1)")
    p.add_argument("-o", "--output", required=True, metavar="FILE", help="the JSON file")
    p.add_argument("--with-models", metavar="DIR", help="also write each segment as ONNX")
    p.set_defaults(func=run)


MAX_RANK = 10_000  # the ranking enumerates every partition up to the highest rank asked


def _ranks(text: str) -> list[int]:
    parts = [r.strip() for r in text.split(",") if r.strip()]
    if not parts or not all(re.fullmatch(r"[0-9]+", r) for r in parts):
        raise OmdpError(f"--rank {shown(text, 40)} is not a list of ranks ≥ 1",
                        "e.g. --rank 1 or 1,2,3")
    ranks = sorted({int(r) if len(r) < 10 else MAX_RANK + 1 for r in parts})
    if ranks[0] < 1 or ranks[-1] > MAX_RANK:
        raise OmdpError(f"--rank {shown(text, 40)} is out of range",
                        f"ranks go from 1 to {MAX_RANK:,}")
    return ranks


def _check_session_writable(path: Path) -> None:
    """Export records the partitions in the session: find out before writing anything."""
    if not path.is_file():
        return  # Session.open says what is wrong
    if not os.access(path, os.W_OK) or not os.access(path.parent, os.W_OK | os.X_OK):
        raise OmdpError(f"session {path} is read-only: export records the chosen partitions "
                        "in it", "make it writable (chmod u+w), or copy it to a writable folder")


def run(args: argparse.Namespace) -> int:
    ranks = _ranks(args.rank)
    out = check_writable(args.output, "partition.json")
    session_path = Path(args.session)
    _check_session_writable(session_path)
    if out.exists() and session_path.exists() and os.path.samefile(out, session_path):
        raise OmdpError(f"cannot write {out}: it is the session file", "write the JSON elsewhere")
    if args.with_models is not None:
        check_models_folder(args.with_models)
    with Session.open(session_path) as session:
        inst, parts = rank_session(session, args, max(ranks))
        chosen = [p for p in parts if p.rank in ranks]
        if len(chosen) < len(ranks):
            raise OmdpError(f"only {len(parts)} feasible partitions, no rank {max(ranks)}",
                            "profile more segments or ask for a lower rank")
        ref = session.model()
        analysis = session_analysis(session)
        chain = session.chain()
        links = [{"name": f"{lk.src}-{lk.dst}", "from": lk.src, "to": lk.dst,
                  "bandwidth_mbps": float(bw), "latency_ms": float(lat)}
                 for lk, bw, lat in zip(chain.links, inst.bandwidth_mbps, inst.latency_ms,
                                        strict=True)]  # the values used, after --bw/--latency
        doc = build_export(analysis, chosen, devices=[d.to_dict() for d in chain.devices],
                           links=links, cost_model=args.cost_model, objective=args.objective,
                           sink=args.sink, model_path=ref.path, sha256=ref.sha256,
                           builtin=ref.builtin)
        written = write_export(doc, out, analysis, args.with_models)
        session.save_partitions([{"name": f"rank {p.rank}", "positions": [0, *p.cuts, ref.nodes],
                                  "cost_ms": p.total_ms, "objective": args.objective,
                                  "cost_model": args.cost_model} for p in chosen])
    print(f"wrote {written[0]}: {len(chosen)} partition(s)"
          + (f" and {len(written) - 1} segment models in {args.with_models}"
             if len(written) > 1 else ""))
    return 0
