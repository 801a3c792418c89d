"""The `devices.toml` a lab writes: the same chain, every device now `kind = "ssh"`.

Everything after `omdp lab up` (devices check, profile, links measure, the TUI) reads this
file and nothing else about the lab: the host and port of each device's sshd on the
management network, the lab's key and known_hosts, an empty ssh_config (so the user's own
~/.ssh/config cannot redirect the lab's addresses), the interpreter, a work dir per device,
and `address`, where the upstream device reaches it over their shaped link.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

from backend.chain import SSH_ONLY, parse_devices
from backend.lab.layout import SSH_PORT, Layout
from backend.lab.spec import LabSpec

# Fields of the source chain that describe how to reach a real device: the lab replaces them.
REPLACED = (*SSH_ONLY, "kind")


def _value(v: Any) -> str:
    """A TOML value: JSON's strings, numbers and arrays are valid TOML for these fields."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return repr(v)
    return json.dumps(v, ensure_ascii=False)


def render(spec: LabSpec, lay: Layout, folder: Path, user: str, pythons: list[str]) -> str:
    """The devices file for the lab in `folder` (checked by backend.chain before it is
    returned, so `omdp` reads back exactly what was meant)."""
    out = [
        f"# Written by `omdp lab up`: the chain of {json.dumps(spec.source)} as an emulated lab.",
        f"# Status: omdp lab status {shlex.quote(str(folder))}",
        "",
    ]
    for device, slot, python in zip(spec.devices, lay.devices, pythons, strict=True):
        fields: dict[str, Any] = {"name": device.name, "kind": "ssh"}
        fields |= {k: v for k, v in device.to_dict().items() if k not in (*REPLACED, "name")}
        fields |= {
            "host": slot.host,
            "port": SSH_PORT,
            "user": user,
            "identity": str(folder / "lab_key"),
            "known_hosts": str(folder / "known_hosts"),
            "ssh_config": str(folder / "ssh_config"),
            "python": shlex.quote(python),
            "workdir": str(folder / "devices" / slot.folder / "work"),
        }
        if slot.address:
            fields["address"] = slot.address
        out.append("[[device]]")
        out += [f"{k} = {_value(v)}" for k, v in fields.items()]
        out.append("")
    for link in spec.chain.links:
        out += [
            "[[link]]",
            f"from = {_value(link.src)}",
            f"to = {_value(link.dst)}",
            f"bandwidth_mbps = {_value(float(link.bandwidth_mbps))}",
            f"latency_ms = {_value(float(link.latency_ms))}",
            "",
        ]
    text = "\n".join(out)
    parse_devices(text, str(folder / "devices.toml"))
    return text
