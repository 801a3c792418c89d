"""`omdp devices check devices.toml [--json]`: can every device of the chain run the agent?

Connects to all devices at once (local ones run the same probe as a subprocess) and shows
reachability, host key, python and package versions, CPU, cores and free disk in the work
dir. Each problem is one line naming the device and the fix; any problem exits 2.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from backend import units
from backend.cli.format import emit_json, table
from backend.errors import OmdpError
from backend.remote.target import LocalTarget, SshTarget, target_from_spec

if TYPE_CHECKING:
    from backend.remote.checks import DeviceCheck

Target = SshTarget | LocalTarget
LinkValues = dict[str, tuple[float | None, float | None]]


@dataclass
class Inventory:
    """What the SSH verbs need from devices.toml: probe targets in chain order, each
    device's runtime name, and the typed links {"a-b": (bandwidth_mbps, latency_ms)}."""

    targets: list[Target]
    runtimes: dict[str, str | None]
    typed_links: LinkValues = field(default_factory=dict)


def load_inventory(path: str | Path) -> Inventory:
    """devices.toml as probe targets (backend.chain reads and validates it)."""
    from backend import chain as devices

    chain = devices.load_devices(path)
    typed: LinkValues = {
        lk.name: (lk.bandwidth_mbps, lk.latency_ms) for lk in chain.links if not lk.default
    }
    return Inventory(
        [target_from_spec(d, chain.source) for d in chain.devices],
        {d.name: d.runtime for d in chain.devices},
        typed,
    )


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("devices")
    sub = p.add_subparsers(dest="devices_verb", metavar="ACTION", required=True)
    c = sub.add_parser(
        "check",
        help="reach every device and report what it has",
        description=__doc__.split("\n\n")[1] if __doc__ else None,
    )
    c.add_argument("inventory", metavar="devices.toml", help="the chain's device inventory")
    c.add_argument(
        "--timeout",
        type=float,
        default=60.0,
        metavar="S",
        help="seconds each device's probe may take before it is stopped (default 60)",
    )
    c.add_argument("--json", action="store_true", help="machine-readable JSON on stdout")
    c.set_defaults(func=run_check)


def _short(text: Any, width: int = 32) -> str:
    s = "-" if text in (None, "") else str(text)
    return s if len(s) <= width else s[: width - 1] + "…"


def format_checks(checks: list[DeviceCheck]) -> str:
    rows = []
    for c in checks:
        f = c.facts
        pk = f.get("packages") or {}
        rows.append(
            [
                c.name,
                c.kind,
                c.address,
                "ok" if c.ok else "PROBLEM",
                c.host_key,
                f.get("python", "-"),
                pk.get("numpy") or "-",
                pk.get("onnx") or "-",
                pk.get("onnxruntime") or "-",
                pk.get("openvino") or "-",
                _short(f.get("cpu")),
                f.get("cores", "-"),
                units.size(f["free_bytes"]) if f.get("free_bytes") else "-",
                f"{c.seconds:.2f}",
            ]
        )
    headers = [
        "device",
        "kind",
        "address",
        "status",
        "host key",
        "python",
        "numpy",
        "onnx",
        "onnxruntime",
        "openvino",
        "cpu",
        "cores",
        "free",
        "s",
    ]
    return table(rows, headers, "lllllllllllrrr")


def run_check(args: argparse.Namespace) -> int:
    from backend.remote.checks import check_all

    if not 0 < args.timeout <= 3600:  # also refuses nan and inf
        raise OmdpError(
            f"--timeout must be in (0, 3600] seconds, got {args.timeout:g}", "e.g. --timeout 60"
        )
    inv = load_inventory(args.inventory)
    targets = [(t, inv.runtimes.get(t.name)) for t in inv.targets]
    checks = asyncio.run(check_all(targets, args.timeout))
    if args.json:
        emit_json([c.to_dict() for c in checks])
    else:
        print(format_checks(checks))
    for c in checks:
        for problem in c.problems:
            print(f"omdp: error: {problem}", file=sys.stderr)
    return 0 if all(c.ok for c in checks) else 2
