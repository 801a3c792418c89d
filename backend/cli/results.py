"""`omdp results FILE`: the measurements of a session, one row per segment × device."""

from __future__ import annotations

import argparse
import json
import math

COLUMNS = [
    "device", "start", "end", "median_ms", "p10_ms", "p90_ms", "samples", "status", "used",
    "throttled",
]  # fmt: skip


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("results", description=__doc__)
    p.add_argument("session", help="session file (.omdp)")
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--csv", action="store_true", help="CSV on stdout")
    fmt.add_argument("--json", action="store_true", help="a JSON list of rows (with messages)")
    p.add_argument(
        "--all-configs",
        action="store_true",
        help="also measurements made with earlier device options",
    )
    p.set_defaults(func=run)


def _clean(value):
    if isinstance(value, float) and math.isnan(value):
        return None
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    return value


MESSAGE_W = 60  # longer messages end with … (--json has them whole)


def run(args: argparse.Namespace) -> int:
    import sys

    from backend.profiling import noise
    from backend.profiling.session import Session

    with Session.open(args.session, check_model=False, readonly=True) as s:
        frame = s.results_frame(all_configs=args.all_configs)
        target = noise.target_of(s.get_meta("timing"))
    frame = noise.annotated(frame, target)
    if args.json:
        keys = [*COLUMNS, "rel_ci", "stop", "noisy", "contradicts", "message"]
        rows = [{k: _clean(r[k]) for k in keys} for r in frame.to_dict("records")]
        print(json.dumps(rows, indent=1))
    elif args.csv:
        frame[[*COLUMNS, "noisy"]].to_csv(sys.stdout, index=False, float_format="%.6g")
    else:
        if frame.empty:
            print("no measurements yet")
            return 0
        print(_text(frame.to_dict("records"), target, args.session))
    return 0


def _text(rows: list[dict], target: float, session: str) -> str:
    """One aligned row per measurement; a noisy one is marked and says why, with the
    command that measures it again under the table."""
    from backend import fit, units
    from backend.cli.format import table
    from backend.profiling import noise

    def ms(v) -> str:
        return "-" if v is None or v != v else units.ms(v)

    lines = []
    for r in rows:
        note = r["message"] if isinstance(r["message"], str) else ""
        if isinstance(r.get("contradicts"), str):
            note = f"{noise.MARK} {r['contradicts']}" + (f"; {note}" if note else "")
        elif r["noisy"]:
            note = f"{noise.MARK} noisy: {noise.why(r, target)}" + (f"; {note}" if note else "")
        throttled = r.get("throttled")
        if isinstance(throttled, str):  # first: the device's state taints the whole number
            note = f"throttled: {throttled}" + (f"; {note}" if note else "")
        lines.append(
            (
                r["device"],
                f"[{r['start']}, {r['end']})",
                ms(r["median_ms"]) + (f" {noise.MARK}" if r["noisy"] else "  "),
                ms(r["p10_ms"]),
                ms(r["p90_ms"]),
                r["samples"],
                r["status"],
                fit.end(note, MESSAGE_W),
            )
        )
    text = table(
        lines,
        ["device", "segment", "median ms", "p10 ms", "p90 ms", "samples", "status", "note"],
        "llrrrrll",
    )
    count = sum(bool(r["noisy"]) for r in rows)
    if count:
        text += (
            f"\n\n{noise.MARK} {units.plural(count, 'noisy measurement')}: the CI missed "
            f"the {target * 100:g}% target, or a segment took over "
            f"{noise.CONTRADICTION:g}× a segment containing it (the machine changed speed "
            f"between the two); `omdp profile --session {session} --remeasure noisy` measures "
            "them again (earlier results stay in the session's history)"
        )
    hot = sum(isinstance(r.get("throttled"), str) for r in rows)
    if hot:
        text += (
            f"\n\n{units.plural(hot, 'measurement')} taken while the device throttled (hot, or "
            "its CPU below 90% of its maximum frequency): "
            f"`omdp profile --session {session} --remeasure throttled` measures them again "
            "(earlier results stay in the session's history)"
        )
    return text
