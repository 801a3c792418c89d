"""`omdp lab up|status|down`: the chain as an emulated lab on this machine (docs/lab.md).

`up devices.toml --dir DIR` builds one network namespace per device with its own sshd and
limits, shaped links between them, and writes DIR/devices.toml for every other verb;
`status DIR` shows what is in force; `down DIR` removes everything the lab made.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from backend.cli.format import emit_json, table


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("lab", description=__doc__.split("\n\n")[0] if __doc__ else None)
    sub = p.add_subparsers(dest="lab_verb", metavar="ACTION", required=True)
    u = sub.add_parser("up", help="bring the chain of devices.toml up as a lab in DIR")
    u.add_argument("devices", metavar="devices.toml", help="the chain to emulate")
    u.add_argument(
        "--dir",
        required=True,
        metavar="DIR",
        help="the lab's folder: keys, logs, state and the lab's devices.toml",
    )
    u.add_argument("--json", action="store_true", help="machine-readable JSON on stdout")
    u.set_defaults(func=run_up)
    s = sub.add_parser("status", help="devices up, shaping in force, addresses")
    s.add_argument("dir", metavar="DIR")
    s.add_argument("--json", action="store_true", help="machine-readable JSON on stdout")
    s.set_defaults(func=run_status)
    d = sub.add_parser("down", help="remove everything the lab in DIR made")
    d.add_argument("dir", metavar="DIR")
    d.add_argument("--json", action="store_true", help="machine-readable JSON on stdout")
    d.set_defaults(func=run_down)


def _limits(d: dict[str, Any]) -> str:
    lim = d.get("limits", {})
    parts = []
    if "cpu" in lim:
        parts.append(f"cpu {lim['cpu']:g}")
    if "cpus" in lim:
        parts.append(f"cpus {lim['cpus']}")
    if "memory_mib" in lim:
        parts.append(f"{lim['memory_mib']} MiB")
    return ", ".join(parts) or "-"


def format_status(report: dict[str, Any]) -> str:
    devices = [
        [
            d["name"],
            f"{d['host']}:{d['port']}",
            d.get("address") or "-",
            _limits(d),
            "up" if d["sshd"]["listening"] else "DOWN",
        ]
        for d in report.get("devices", [])
    ]
    links = [
        [
            f"{lk['from']} → {lk['to']}",
            f"{lk['bandwidth_mbps']:g}",
            f"{lk['latency_ms']:g}",
            lk["latency_method"],
            "yes"
            if all(lk["shaped"].values()) and lk.get("relay", {}).get("running", True)
            else "NO",
        ]
        for lk in report.get("links", [])
    ]
    lines = [
        f"lab {report['folder']}: {report['state']}"
        + (f" ({report['action']})" if report.get("action") else "")
    ]
    if devices:
        lines += ["", table(devices, ["device", "ssh", "address", "limits", "sshd"])]
    if links:
        lines += [
            "",
            table(links, ["link", "Mbit/s", "latency ms", "latency by", "in force"], "lrrll"),
        ]
    if report.get("devices_file"):
        lines += [
            "",
            f"devices file: {report['devices_file']} "
            f"(try: omdp devices check {report['devices_file']})",
        ]
    return "\n".join(lines)


def _emit(report: Any, as_json: bool) -> int:
    data = report.to_dict()
    if as_json:
        emit_json(data)
    else:
        print(format_status(data))
    for problem in report.problems:
        print(f"omdp: error: {problem}", file=sys.stderr)
    return 2 if report.problems else 0


def run_up(args: argparse.Namespace) -> int:
    from backend.lab import lifecycle

    report = lifecycle.up(args.devices, args.dir)
    for warning in report.warnings:
        print(f"omdp: warning: {warning}", file=sys.stderr)
    return _emit(report, args.json)


def run_status(args: argparse.Namespace) -> int:
    from backend.lab import lifecycle

    return _emit(lifecycle.status(args.dir), args.json)


def run_down(args: argparse.Namespace) -> int:
    from backend.lab import lifecycle

    report = lifecycle.down(args.dir)
    if args.json:
        emit_json(report.to_dict())
    elif report.action == "nothing":
        print(f"no lab in {report.folder}: nothing to take down")
    else:
        print(f"lab {report.folder}: down")
    for problem in report.problems:
        print(f"omdp: error: {problem}", file=sys.stderr)
    return 2 if report.problems else 0
