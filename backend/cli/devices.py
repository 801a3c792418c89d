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
from typing import TYPE_CHECKING

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
    c.add_argument(
        "--model",
        metavar="MODEL",
        help="also check that each runtime reads this model's opset and IR version "
        "(an ONNX file, a session, or a built-in model)",
    )
    c.add_argument("--json", action="store_true", help="machine-readable JSON on stdout")
    c.set_defaults(func=run_check)


PACKAGES = ("numpy", "onnx", "onnxruntime", "openvino")


def _detail(c: DeviceCheck) -> list[str]:
    """What a device has and how the agent will use it, in a few lines under its name."""
    f = c.facts
    if not f:
        return []
    pk = f.get("packages") or {}
    lines = [
        f"{c.name}: python {f.get('python', '-')} ({f.get('executable', '-')}) · "
        + " · ".join(
            f"{k} {pk.get(k) or '-'}" for k in ("numpy", "onnx", "onnxruntime", "openvino")
        )
    ]
    if f.get("mode"):
        lines.append(f"  mode      {f['mode']}: {f.get('mode_reason', '')}")
    for runtime, names in (f.get("accelerators") or {}).items():
        kind = "providers" if runtime == "onnxruntime" else "devices"
        lines.append(f"  {kind:<9} {runtime}: {', '.join(names) or 'none'}")
    temp = f.get("temp_c")
    lines.append(
        f"  cpu       {f.get('cpu', '-')} · {f.get('cores', '-')} cores · governor "
        f"{f.get('governor') or '-'} · {f'{temp:g} °C' if temp is not None else 'no temperature'}"
    )
    free = units.size(f["free_bytes"]) if f.get("free_bytes") is not None else "-"
    lines.append(f"  free      {free} in {f.get('workdir', '-')}")
    risks = f.get("flag_risks") or []
    lines.append(f"  flagged   {'; '.join(risks) if risks else 'no reason seen now'}")
    return lines


def format_checks(checks: list[DeviceCheck]) -> str:
    rows = []
    for c in checks:
        f = c.facts
        pk = f.get("packages") or {}
        runtime = c.runtime or "-"
        rows.append(
            [
                c.name,
                c.kind,
                c.address,
                "ok" if c.ok else "PROBLEM",
                c.host_key,
                f.get("python", "-"),
                f.get("mode", "-"),
                f"{runtime} {pk.get(runtime) or '-'}" if c.runtime else "-",
                units.size(f["free_bytes"]) if f.get("free_bytes") else "-",
                f"{c.seconds:.2f}",
            ]
        )
    headers = [
        "device", "kind", "address", "status", "host key", "python", "mode", "runtime", "free",
        "took s",
    ]  # fmt: skip
    details = [line for c in checks for line in _detail(c)]
    return "\n".join([table(rows, headers, "llllllllrr"), "", *details])


def run_check(args: argparse.Namespace) -> int:
    from backend import chain as devices
    from backend.usecases.devices import check_chain, model_versions

    if not 0 < args.timeout <= 3600:  # also refuses nan and inf
        raise OmdpError(
            f"--timeout must be in (0, 3600] seconds, got {args.timeout:g}", "e.g. --timeout 60"
        )
    chain = devices.load_devices(args.inventory)
    model = model_versions(args.model) if args.model else None
    checks = asyncio.run(check_chain(chain, args.timeout, model))
    if args.json:
        emit_json([c.to_dict() for c in checks])
    else:
        print(format_checks(checks))
    for c in checks:
        for note in c.notes:
            print(f"omdp: warning: {note}", file=sys.stderr)
        for problem in c.problems:
            print(f"omdp: error: {problem}", file=sys.stderr)
    return 0 if all(c.ok for c in checks) else 2
