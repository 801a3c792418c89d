"""`omdp map SESSION --vary LINK=LO:HI [--vary LINK2=LO:HI]`: where each partition is best.

One varying link prints the exact breakpoints (bands of bandwidth, each with its best
partition, its cost at both ends and the runner-up's margin); two print the regions
(their share of the map, their cost range, the runner-up) and the lines between them.
`--robust P%` adds the partitions within P% of the best everywhere in the box. The map
itself is computed by `backend.usecases.maps`; `--image` draws it (`backend.map_image`).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
from pathlib import Path
from typing import Any

from backend import units
from backend.cli.format import table
from backend.cli.paths import add_ranking_args, ranking_options
from backend.map_image import check_image_path, letter, write_image
from backend.profiling.session import Session
from backend.solver.bandwidth_map import SCALES, BandwidthMap, Reading
from backend.usecases.maps import MapOptions, map_session


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "map",
        description="Map which partition is best while one or two links' bandwidths vary "
        "over a range: exact breakpoints and regions (throughput on two links: a grid, "
        "said so; docs/map.md).",
    )
    add_ranking_args(p)
    p.add_argument(
        "--vary",
        action="append",
        default=[],
        required=True,
        metavar="LINK=LO:HI",
        help="a link whose bandwidth ranges from LO to HI Mbit/s, e.g. glasses-phone=5:100 "
        "(once or twice)",
    )
    p.add_argument(
        "--robust",
        metavar="P%",
        help="also list the partitions within P%% of the best everywhere in the box",
    )
    p.add_argument(
        "--scale", default="log", choices=SCALES, help="axes for area shares and the image"
    )
    out = p.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="machine-readable JSON")
    out.add_argument("--csv", action="store_true", help="one row per band or region, as CSV")
    p.add_argument("--image", metavar="FILE.svg", help="draw the map into an SVG file")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.image:
        check_image_path(args.image)
    options = MapOptions(
        vary=tuple(args.vary),
        ranking=ranking_options(args, 1),
        scale=args.scale,
        robust=args.robust,
    )
    with Session.open(args.session, check_model=False) as session:
        mapped = map_session(session, options)
    bmap = mapped.map
    if args.image:
        title = f"{Path(args.session).name}: best partition by bandwidth"
        now = [float(mapped.instance.bandwidth_mbps[r.index]) for r in bmap.ranges]
        write_image(bmap, args.image, title, now)
    if args.json:
        print(json.dumps(to_dict(bmap), indent=2))
    elif args.csv:
        print(to_csv(bmap), end="")
    else:
        print(to_text(bmap, args.session))
    if args.image and not args.json and not args.csv:
        print(f"\nimage: {args.image}")
    return 0


def percent(share: float) -> str:
    """A share as a percentage, with slivers shown as slivers rather than 0.0%."""
    return f"{100 * share:.2g}%" if 0 < share < 0.001 else f"{100 * share:.1f}%"


def mbps(v: float) -> str:
    return f"{v:,.0f}" if v >= 1000 else f"{v:.4g}"


def _margin(r: Reading, bmap: BandwidthMap) -> tuple[str, str]:
    if r.runner_up is None or r.margin_ms is None:
        return "-", "-"
    return bmap.describe(r.runner_up), f"{r.margin_ms:.3f}"


def _header(bmap: BandwidthMap, name: str) -> str:
    how = "exact breakpoints" if len(bmap.ranges) == 1 else "exact regions"
    if not bmap.exact:
        how = bmap.method + " (throughput is not affine in 1/bw)"
    ranges = "; ".join(f"{r.link} {mbps(r.lo)} to {mbps(r.hi)} Mbit/s" for r in bmap.ranges)
    return f"{name}: {bmap.objective} objective, {bmap.cost_model} times; {ranges}; {how}"


def to_text(bmap: BandwidthMap, name: str) -> str:
    lines = [_header(bmap, name), ""]
    if len(bmap.ranges) == 1:
        link = bmap.ranges[0].link
        for k, b in enumerate(bmap.bands):
            where = (
                f"below {mbps(b.hi)}"
                if k == 0 and len(bmap.bands) > 1
                else f"from {mbps(b.lo)}"
                if k == len(bmap.bands) - 1 and k
                else f"from {mbps(b.lo)} to {mbps(b.hi)}"
            )
            lines.append(f"{where} Mbit/s on {link} the best is {bmap.describe(b.cuts)}")
        lines.append("")
        rows = []
        for b in bmap.bands:
            second, margin = _margin(b.middle, bmap)
            rows.append(
                (
                    f"{mbps(b.lo)}-{mbps(b.hi)}",
                    bmap.describe(b.cuts),
                    f"{b.ms_at_lo:.3f}",
                    f"{b.ms_at_hi:.3f}",
                    second,
                    margin,
                )
            )
        lines.append(
            table(
                rows,
                [f"{link} Mbit/s", "best", "ms at low", "ms at high", "runner-up", "margin ms"],
                "llrrlr",
            )
        )
        lines.append("(runner-up and margin at the middle of each band, on a log scale)")
    else:
        rows = []
        for k, r in enumerate(bmap.regions):
            second, margin = _margin(r.middle, bmap)
            rows.append(
                (
                    letter(k),
                    percent(r.share),
                    bmap.describe(r.cuts),
                    f"{r.ms_min:.3f}-{r.ms_max:.3f}",
                    second,
                    margin,
                )
            )
        lines.append(
            table(
                rows,
                ["", f"share ({bmap.scale})", "best", "ms", "runner-up", "margin ms"],
                "lrllll",
            )
        )
        lines.append(
            "(runner-up and margin at a point inside each region; "
            + ("each region's polygon: --json or --csv)" if bmap.exact else "the grid: --json)")
        )
        if bmap.boundaries:
            keys = {r.cuts: letter(k) for k, r in enumerate(bmap.regions)}
            x, y = (r.link for r in bmap.ranges)
            lines += ["", f"boundaries (straight in 1/bw), as ({x}, {y}) Mbit/s:"]
            for line in bmap.boundaries:
                (x0, y0), (x1, y1) = line.ends
                ends = f"({mbps(x0)}, {mbps(y0)}) to ({mbps(x1)}, {mbps(y1)})"
                lines.append(f"  {keys[line.a]}|{keys[line.b]}  {ends}")
    if bmap.robust is not None:
        lines += ["", *_robust_text(bmap)]
    return "\n".join(lines)


def _robust_text(bmap: BandwidthMap) -> list[str]:
    rb = bmap.robust
    assert rb is not None
    links = ", ".join(r.link for r in bmap.ranges)
    how = (
        "exact: checked at every corner of the map's bands or regions"
        if rb.exact
        else f"judged over {rb.considered} partitions on the map's points"
    )
    out = [f"robust over the whole box ({how}):"]
    if rb.within:
        out.append(
            f"within {rb.percent:g}% of the best everywhere: "
            + units.plural(len(rb.within), "partition")
        )
        out += [
            f"  {bmap.describe(c.cuts)}  worst +{100 * (c.worst_ratio - 1):.2f}% "
            f"({c.worst_regret_ms:.3f} ms)"
            for c in rb.within[:10]
        ]
        if len(rb.within) > 10:
            out.append(f"  … and {len(rb.within) - 10} more (--json lists them all)")
    else:
        out.append(f"no partition stays within {rb.percent:g}% of the best everywhere")
    b = rb.best
    at = ", ".join(mbps(v) for v in b.where)
    out.append(
        f"smallest worst-case regret: {bmap.describe(b.cuts)}, +{100 * (b.worst_ratio - 1):.2f}% "
        f"at worst (at {links} = {at} Mbit/s); at most {b.worst_regret_ms:.3f} ms"
    )
    return out


def _reading(r: Reading) -> dict[str, Any]:
    return {
        "mbps": list(r.mbps),
        "best": list(r.best),
        "best_ms": r.best_ms,
        "runner_up": None if r.runner_up is None else list(r.runner_up),
        "margin_ms": r.margin_ms,
    }


def to_dict(bmap: BandwidthMap) -> dict[str, Any]:
    """The map as JSON: every number at full precision."""
    out: dict[str, Any] = {
        "objective": bmap.objective,
        "cost_model": bmap.cost_model,
        "method": bmap.method,
        "scale": bmap.scale,
        "devices": list(bmap.devices),
        "vary": [{"link": r.link, "lo_mbps": r.lo, "hi_mbps": r.hi} for r in bmap.ranges],
    }
    if len(bmap.ranges) == 1:
        out["breakpoints_mbps"] = [b.hi for b in bmap.bands[:-1]]
        out["bands"] = [
            {
                "lo_mbps": b.lo,
                "hi_mbps": b.hi,
                "cuts": list(b.cuts),
                "partition": bmap.describe(b.cuts),
                "ms_at_lo": b.ms_at_lo,
                "ms_at_hi": b.ms_at_hi,
                "middle": _reading(b.middle),
            }
            for b in bmap.bands
        ]
    else:
        out["regions"] = [
            {
                "key": letter(k),
                "cuts": list(r.cuts),
                "partition": bmap.describe(r.cuts),
                "share": r.share,
                "polygon_mbps": None if r.polygon is None else [list(p) for p in r.polygon],
                "ms_min": r.ms_min,
                "ms_max": r.ms_max,
                "latency_const_ms": r.choice.const_ms,
                "latency_ms_per_inverse_mbps": list(r.choice.slope_ms),
                "middle": _reading(r.middle),
            }
            for k, r in enumerate(bmap.regions)
        ]
        out["boundaries"] = [
            {"between": [list(b.a), list(b.b)], "ends_mbps": [list(e) for e in b.ends]}
            for b in bmap.boundaries
        ]
        if bmap.grid is not None:
            out["grid"] = {
                "x_mbps": list(bmap.grid.xs),
                "y_mbps": list(bmap.grid.ys),
                "labels": bmap.grid.labels.tolist(),
            }
    if bmap.robust is not None:
        rb = bmap.robust

        def choice(c: Any) -> dict[str, Any]:
            return {
                "cuts": list(c.cuts),
                "partition": bmap.describe(c.cuts),
                "worst_ratio": c.worst_ratio,
                "worst_regret_ms": c.worst_regret_ms,
                "worst_at_mbps": list(c.where),
            }

        out["robust"] = {
            "percent": rb.percent,
            "exact": rb.exact,
            "considered": rb.considered,
            "within": [choice(c) for c in rb.within],
            "min_worst_regret": choice(rb.best),
        }
    return out


def to_csv(bmap: BandwidthMap) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    if len(bmap.ranges) == 1:
        w.writerow(
            ["lo_mbps", "hi_mbps", "partition", "cuts", "ms_at_lo", "ms_at_hi", "runner_up",
             "margin_ms"]
        )  # fmt: skip
        for b in bmap.bands:
            m = b.middle
            w.writerow(
                [
                    repr(b.lo),
                    repr(b.hi),
                    bmap.describe(b.cuts),
                    " ".join(map(str, b.cuts)),
                    repr(b.ms_at_lo),
                    repr(b.ms_at_hi),
                    "" if m.runner_up is None else bmap.describe(m.runner_up),
                    "" if m.margin_ms is None else repr(m.margin_ms),
                ]
            )
        return buf.getvalue()
    w.writerow(["key", "partition", "cuts", "share", "ms_min", "ms_max", "polygon_mbps"])
    for k, r in enumerate(bmap.regions):
        poly = "" if r.polygon is None else " ".join(f"{x!r}:{y!r}" for x, y in r.polygon)
        w.writerow(
            [
                letter(k),
                bmap.describe(r.cuts),
                " ".join(map(str, r.cuts)),
                repr(r.share),
                repr(r.ms_min),
                repr(r.ms_max),
                poly,
            ]
        )
    return buf.getvalue()
