"""`omdp validate SESSION --rank R[,R...] [--top K]`: run ranked partitions as a chain and
set what was measured beside what the ranking predicted (docs/validation.md)."""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys

from backend import units
from backend.cli.common import add_link_args
from backend.cli.solve import parse_k
from backend.errors import OmdpError
from backend.profiling.session import Session
from backend.solver.costs import COST_MODELS, OBJECTIVES
from backend.solver.link_models import LINK_MODELS
from backend.solver.partition import MAX_K
from backend.text import shown
from backend.usecases import validations
from backend.usecases.validations import ValidateOptions, ValidationEvent
from backend.validation.report import Validation


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("validate")
    p.add_argument("session", help="session file (see `omdp sessions`)")
    p.add_argument("--rank", default="", metavar="R[,R...]", help="ranks to run, e.g. 1,3")
    p.add_argument("--top", metavar="K", help="also the K best partitions")
    p.add_argument("--frames", type=int, default=20, help="counted frames (default 20)")
    p.add_argument(
        "--warmup", type=int, default=3, help="warm-up frames, reported, not counted (3)"
    )
    add_link_args(p)
    p.add_argument(
        "--model",
        dest="cost_model",
        default="measured",
        choices=COST_MODELS,
        help="the cost model that ranks (both are reported)",
    )
    p.add_argument(
        "--objective",
        default="latency",
        choices=OBJECTIVES,
        help="latency: one frame at a time (default); throughput: frames back to back",
    )
    p.add_argument("--sink", metavar="DEVICE", help="the output must end on this device")
    p.add_argument(
        "--link-model",
        default="typed",
        choices=LINK_MODELS,
        help="how the ranking prices transfers: typed (default) or fitted to `links measure`",
    )
    p.add_argument("--input-npy", metavar="FILE", help="the model's input (else seeded random)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random input")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds any step may take")
    p.add_argument("--json", action="store_true", help="the validations as JSON")
    p.set_defaults(func=run)


def parse_ranks(text: str) -> tuple[int, ...]:
    """`1,3` → (1, 3); ranks are whole numbers from 1 to MAX_K."""
    ranks = []
    for part in (t.strip() for t in text.split(",")) if text else ():
        if not re.fullmatch(r"[0-9]{1,7}", part) or not 1 <= int(part) <= MAX_K:
            raise OmdpError(
                f"--rank {shown(text, 40)}: {shown(part, 20)} is not a rank from 1 to {MAX_K:,}",
                "e.g. --rank 1,3",
            )
        ranks.append(int(part))
    return tuple(ranks)


def run(args: argparse.Namespace) -> int:
    options = ValidateOptions(
        ranks=parse_ranks(args.rank),
        top=parse_k(args.top) if args.top is not None else None,
        frames=args.frames,
        warmup=args.warmup,
        objective=args.objective,
        cost_model=args.cost_model,
        bandwidth=tuple(args.bandwidth),
        latency=tuple(args.latency),
        sink=args.sink,
        link_model=args.link_model,
        input_npy=args.input_npy,
        seed=args.seed,
        timeout_s=args.timeout,
    )
    if not 0 < options.timeout_s <= 3600:
        raise OmdpError(f"--timeout must be in (0, 3600] s, got {args.timeout}")
    with Session.open(args.session, check_model=False) as session:
        plan = validations.prepare(session, options)
        outcome = asyncio.run(validations.run(plan, None if args.json else _progress))
    if args.json:
        print(
            json.dumps(
                {
                    "validations": [v.to_dict() for v in outcome.validations],
                    "failed": {str(k): v for k, v in outcome.failed.items()},
                },
                indent=2,
            )
        )
    else:
        for v in outcome.validations:
            print(format_validation(v))
        for rank, why in outcome.failed.items():
            print(f"#{rank}: FAILED, nothing stored: {why}")
    return 1 if outcome.failed else 0


def _progress(e: ValidationEvent) -> None:
    if e.phase == "start":
        print(f"#{e.rank}: starting the chain", file=sys.stderr)
    elif e.phase == "solo":
        print(f"#{e.rank}: timing a segment alone", file=sys.stderr)
    elif e.phase == "frames" and (e.done == e.total or e.done % 10 == 0):
        print(f"#{e.rank}: {e.done}/{e.total} frames", file=sys.stderr)


def format_validation(v: Validation) -> str:
    """The partition, its stages and links, measured beside predicted."""
    unit = "frames/s" if v.objective == "throughput" else "ms"
    lines = [
        f"#{v.rank} positions {v.positions}: {v.verdict()}",
        f"  end to end: median {v.latency.median:.2f} ms (p10 {v.latency.p10:.2f}, "
        f"p90 {v.latency.p90:.2f}) over {v.frames} frames; warm-up "
        + ", ".join(f"{x:.1f}" for x in v.warmup_ms)
        + " ms",
        f"  predicted {unit}: measured model {_f(v.predicted['measured'])} "
        f"({_p(v.error_pct['measured'])}), estimated model {_f(v.predicted['estimated'])} "
        f"({_p(v.error_pct['estimated'])})",
        "  link models: "
        + ", ".join(
            f"{m} {_f(x)} ({_p(v.error_by_link_model.get(m))})" for m, x in v.by_link_model.items()
        )
        + f" (ranked with {v.link_model})",
        f"  {'stage':<30} {'measured ms':>11} {'pred. meas.':>11} {'pred. est.':>11} "
        f"{'error':>8} {'alone ms':>9}",
    ]
    for s in v.stages:
        seg = f"[{s.segment[0]}, {s.segment[1]})" if s.segment else s.role
        label = f"{s.device} {seg}"
        meas = f"{s.measured.median:.2f}" if s.measured else "-"
        lines.append(
            f"  {label:<30} {meas:>11} {_f(s.predicted['measured']):>11} "
            f"{_f(s.predicted['estimated']):>11} {_p(s.error_pct[v.cost_model]):>8} "
            f"{_f(s.solo.median if s.solo else None):>9}"
        )
    for h in v.hops:
        label = f"link {h.link}" + (" (loopback)" if h.loopback else "")
        lines.append(
            f"  {label:<30} {h.measured.median:>11.2f} {h.predicted_ms:>11.2f} "
            f"{h.predicted_ms:>11.2f} {_p(h.error_pct):>8}"
        )
    lines.append(f"  {'hand-off':<30} {v.handoff.median:>11.2f} {0.0:>11.2f} {0.0:>11.2f}")
    out = v.output
    lines.append(
        f"  output: max abs {units.fixed(out.max_abs)}, relative "
        f"{units.fixed(out.max_rel * 100, 2, True)}%: "
        + ("matches the full model" if out.ok else "DOES NOT match the full model")
    )
    lines += [f"  note: {n}" for n in v.notes]
    return "\n".join(lines)


def _f(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}"


def _p(v: float | None) -> str:
    return "-" if v is None else f"{v:+.1f}%"
