"""`omdp export SESSION --rank R -o FILE`: chosen partitions as a JSON document."""

from __future__ import annotations

import argparse

from backend.cli.paths import add_ranking_args, rank_session, session_analysis
from backend.errors import OmdpError
from backend.export import build_export, write_export
from backend.profiling.session import Session


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
        written = write_export(doc, args.output, analysis, args.with_models)
        session.save_partitions([{"name": f"rank {p.rank}", "positions": [0, *p.cuts, ref.nodes],
                                  "cost_ms": p.total_ms, "objective": args.objective,
                                  "cost_model": args.cost_model} for p in chosen])
    print(f"wrote {written[0]}: {len(chosen)} partition(s)"
          + (f" and {len(written) - 1} segment models in {args.with_models}"
             if len(written) > 1 else ""))
    return 0
