"""`omdp links measure devices.toml [--json]`: measure the chain's links for real.

Lab machine → each ssh device over its SSH channel, then each link between consecutive
devices helper to helper over TCP (one connection, one-time token, bounded). Shows the
measured bandwidth and latency beside the typed ones from devices.toml.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from backend.chain import link_name
from backend.cli.devices import load_inventory
from backend.cli.format import emit_json, table
from backend.errors import OmdpError
from backend.remote.links import ChainLinks, LinkMeasurement


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("links")
    sub = p.add_subparsers(dest="links_verb", metavar="ACTION", required=True)
    m = sub.add_parser(
        "measure",
        help="measure lab → device and device → device links",
        description=__doc__.split("\n\n")[1] if __doc__ else None,
    )
    m.add_argument("inventory", metavar="devices.toml", help="the chain's device inventory")
    m.add_argument(
        "--max-mib",
        type=float,
        default=16.0,
        metavar="MIB",
        help="largest payload per transfer (default 16 MiB)",
    )
    m.add_argument(
        "--no-lab", action="store_true", help="skip the lab machine → device measurements"
    )
    m.add_argument(
        "--session",
        metavar="FILE",
        help="also store the measured chain links in this session (beside the typed values)",
    )
    m.add_argument("--json", action="store_true", help="machine-readable JSON on stdout")
    m.set_defaults(func=run_measure)


def _fmt(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def format_links(found: ChainLinks, typed: dict[str, tuple[float | None, float | None]]) -> str:
    rows = []
    for m in [*found.lab, *found.chain]:
        name = link_name(m.src, m.dst)
        bw, lat = typed.get(name, (None, None)) if m.src != "lab" else (None, None)
        rows.append(
            [
                name,
                m.via,
                _fmt(m.bandwidth_mbps, 1),
                _fmt(m.latency_ms, 3),
                _fmt(m.rtt_ms, 3),
                _fmt(bw, 1),
                _fmt(lat, 3),
                _fmt(m.r2, 3),
            ]
        )
    headers = ["link", "via", "Mbit/s", "latency ms", "rtt ms", "typed Mbit/s", "typed ms", "r2"]
    return table(rows, headers, "llrrrrrr")


def store_in_session(path: str, found: ChainLinks) -> list[str]:
    """Write each measured chain link into the session's link slot (matched by its two
    devices); one line per measured link the session does not have."""
    from backend.profiling.session import Session
    from backend.usecases.devices import store_link_measurements

    with Session.open(path, check_model=False) as session:
        return store_link_measurements(session, found)


def run_measure(args: argparse.Namespace) -> int:
    if not 0.0625 <= args.max_mib <= 1024:
        raise OmdpError(
            f"--max-mib must be in 0.0625..1024, got {args.max_mib:g}", "e.g. --max-mib 16"
        )
    inv = load_inventory(args.inventory)
    if args.session:  # fail before measuring, not after
        from backend.profiling.session import Session

        with Session.open(args.session, check_model=False) as session:
            session.require_writable("store the measured links")
    from backend.usecases.devices import measure_links

    found = asyncio.run(
        measure_links(
            inv.targets, max_bytes=int(args.max_mib * (1 << 20)), lab_links=not args.no_lab
        )
    )
    if args.session:
        found.failures += store_in_session(args.session, found)
    if args.json:
        typed = {
            k: {"bandwidth_mbps": v[0], "latency_ms": v[1]} for k, v in inv.typed_links.items()
        }
        emit_json({**found.to_dict(), "typed": typed})
    else:
        print(format_links(found, inv.typed_links))
    for problem in found.failures:
        print(f"omdp: error: {problem}", file=sys.stderr)
    return 2 if found.failures else 0


__all__ = ["LinkMeasurement", "format_links", "register", "run_measure", "store_in_session"]
