"""The device form's text fields → a device, validated by the engine's devices.toml rules.

The form writes the values as one `[[device]]` table and lets `backend.chain` parse it,
so the TUI refuses exactly what devices.toml refuses, in the same words (unknown runtime,
CPUs this machine does not have, options of the other runtime, ...).
"""

from __future__ import annotations

import json

from backend.chain import DeviceSpec, parse_devices
from backend.device.runtimes import ORT_GRAPH_OPT
from backend.errors import OmdpError

GRAPH_OPTS = tuple(reversed(ORT_GRAPH_OPT))  # onnxruntime's default ("all") first
FORM = "device form"


def _toml_value(key: str, text: str) -> str | None:
    """A TOML literal for one field; numbers stay numbers so type errors read naturally."""
    text = text.strip()
    if not text:
        return None
    if key in ("threads", "port") and text.lstrip("-").isdigit():
        return text
    return json.dumps(text)  # cpus too: the engine parses "0,2-3" from a string


def device_from_form(values: dict[str, str], taken: set[str]) -> DeviceSpec:
    """A DeviceSpec, or OmdpError naming the field and the fix (the engine's message)."""
    name = values.get("name", "").strip()
    if name in taken:
        raise OmdpError(f"a device named '{name}' already exists", "give each device its name")
    fields = dict(values)
    if fields.get("graph_opt") == "all" or fields.get("runtime") == "openvino":
        fields.pop("graph_opt", None)  # "all" is the default; openvino has no such option
    if fields.get("kind", "local") != "ssh":
        for key in ("host", "user", "port"):
            fields.pop(key, None)
    lines = ["[[device]]"]
    for key, text in fields.items():
        literal = _toml_value(key, str(text))
        if literal is not None:
            lines.append(f"{key} = {literal}")
    try:
        chain = parse_devices("\n".join(lines) + "\n", FORM)
    except OmdpError as exc:
        # "device form:3: device 'x': threads must be at least 1, not 0" → drop the place
        what = str(exc)
        if what.startswith(f"{FORM}:"):
            what = what.split(": ", 1)[-1]
        raise OmdpError(what) from None
    return chain.devices[0]


def check_form(values: dict[str, str], taken: set[str]) -> str | None:
    try:
        device_from_form(values, taken)
    except OmdpError as exc:
        return str(exc)
    return None
