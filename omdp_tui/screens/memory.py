"""Per-device memory limits, one MiB field per device (blank: no limit).

A segment then runs on a device only if its weights and largest live cut fit there
(`backend.usecases.rankings.limit_memory`, the same rule as `omdp paths --memory`); the
ranking and the map both follow. Shared by the Partitions screen and the Map view.
"""

from __future__ import annotations

from typing import Any

from backend import fit, units
from omdp_tui.screens.form import Field, FormDialog
from omdp_tui.widgets.step_input import NumberRange
from omdp_tui.widgets.step_input import fmt as number_text
from omdp_tui.workspace import Workspace

MAX_MIB = 1e9


def memory_dialog(ws: Workspace) -> FormDialog:
    fields = [
        Field(
            f"d{i}",
            f"{fit.middle(name, 20)}: ",
            number_text(ws.memory_limits[name]) if name in ws.memory_limits else "",
            validators=[NumberRange(0.001, MAX_MIB, what=f"{name}'s limit (MiB)")],
            placeholder="MiB; blank: no limit",
        )
        for i, name in enumerate(ws.devices)
    ]
    return FormDialog("Memory limits (MiB) — segments that do not fit are not ranked", fields)


def limits_from(ws: Workspace, values: dict[str, Any]) -> dict[str, float]:
    """The dialog's values as device -> MiB (blank fields dropped)."""
    return {name: float(values[f"d{i}"]) for i, name in enumerate(ws.devices) if values[f"d{i}"]}


def memory_note(ws: Workspace) -> str:
    """' · mem glasses ≤ 512 MiB' (one device) or ' · mem limits on 2' (several), else ''."""
    limits = ws.memory_limits
    if not limits:
        return ""
    if len(limits) == 1:
        name, mib = next(iter(limits.items()))
        return f" · mem {fit.middle(name, 10)} ≤ {units.size(mib * 2**20)}"
    return f" · mem limits on {len(limits)}"
