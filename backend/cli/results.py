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


def run(args: argparse.Namespace) -> int:
    import sys

    from backend.profiling.session import Session

    with Session.open(args.session, check_model=False, readonly=True) as s:
        frame = s.results_frame(all_configs=args.all_configs)
    if args.json:
        rows = [{k: _clean(r[k]) for k in [*COLUMNS, "message"]} for r in frame.to_dict("records")]
        print(json.dumps(rows, indent=1))
    elif args.csv:
        frame[COLUMNS].to_csv(sys.stdout, index=False, float_format="%.6g")
    else:
        if frame.empty:
            print("no measurements yet")
            return 0
        shown = frame[[*COLUMNS, "message"]].copy()
        # a throttled measurement is flagged, its reason shown where an error would be
        flagged = shown["throttled"].notna() & shown["message"].isna()
        shown.loc[flagged, "message"] = shown.loc[flagged, "throttled"]
        shown["throttled"] = shown["throttled"].notna().map({True: "FLAG", False: ""})
        shown = shown.rename(columns={"throttled": "flag"})
        shown["message"] = shown["message"].fillna("").str.slice(0, 60)
        print(shown.to_string(index=False, na_rep="-", float_format=lambda v: f"{v:.3f}"))
    return 0
