"""The devices screen: the chain in order, its links, and whether each device answers.

Devices are edited in a validated modal form (the engine's SSH and runtime checks);
`c` checks every device at once in a worker — for a local device that means starting the
agent and showing its hello. Links show what the operator typed next to what was
measured (empty until measured), since the gap between the two is worth seeing.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from typing import Any, ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Label, Static

from backend import fit, units
from backend.chain import KINDS, DeviceSpec, format_cpus
from backend.device.runtimes import RUNTIMES
from backend.errors import OmdpError
from omdp_tui.devices_form import GRAPH_OPTS, check_form, device_from_form
from omdp_tui.messages import ConnectionChecked, LinksMeasured
from omdp_tui.screens.base import WorkspaceScreen
from omdp_tui.screens.dialogs import ErrorDialog
from omdp_tui.screens.form import Field, FormDialog
from omdp_tui.widgets.step_input import fmt


def _where(spec: dict[str, Any]) -> str:
    if spec.get("kind") != "ssh":
        return "local"
    user = f"{spec['user']}@" if spec.get("user") else ""
    return f"{user}{spec.get('host', '?')}"


def _runtime(spec: dict[str, Any]) -> str:
    name = spec.get("runtime", "onnxruntime")
    opt = spec.get("graph_opt")
    return f"ort opt={opt}" if opt and opt != "all" else name


def _opt(value: float | None, ms: bool = False) -> Text:
    text = units.ms(value) if ms else units.fixed(value, 3, True) if value is not None else "–"
    return Text(text, justify="right")


TABLE_ROOM = 78  # 80 columns − the vertical scrollbar
WHERE_W = 14
RUNTIME_W = 13
LINK_NUMBERS_W = 12 + 8 + 15 + 11 + 2 * 4  # typed and measured columns


def device_widths(names: list[str]) -> dict[str, int]:
    """Names get the room their longest needs (up to 21 cells), the status the rest; a
    link shows both devices' names, abbreviated the same way as on other screens."""
    name_w = min(21, max([4, *map(len, names)]))
    fixed = name_w + WHERE_W + RUNTIME_W + 3 + 4 + 2 * 6
    longest_link = max((len(a) + len(b) + 1 for a, b in itertools.pairwise(names)), default=4)
    link_w = min(longest_link, TABLE_ROOM - LINK_NUMBERS_W - 2)
    return {"name": name_w, "status": max(8, TABLE_ROOM - fixed), "link": link_w}


def link_label(name: str, devices: list[str], width: int) -> str:
    """'glasses→phone', or both ends abbreviated to fit `width`."""
    for a, b in itertools.pairwise(devices):
        if name == f"{a}-{b}":
            if len(a) + len(b) + 1 <= width:
                return f"{a}→{b}"
            short = fit.abbreviations(devices, (width - 1) // 2)
            return f"{short[a]}→{short[b]}"
    return fit.middle(name, width)


class DevicesScreen(WorkspaceScreen):
    NAME = "devices"
    BINDINGS: ClassVar = [
        Binding(
            "a", "add", "Add", id="devices.add", tooltip="add a device at the end of the chain"
        ),
        Binding(
            "e,enter",
            "edit",
            "Edit",
            key_display="e",
            id="devices.edit",
            tooltip="edit the highlighted device",
        ),
        Binding(
            "delete,x",
            "remove",
            "Remove",
            key_display="x",
            id="devices.remove",
            tooltip="remove the highlighted device (before anything is measured)",
        ),
        Binding(
            "K", "move(-1)", "Move up", id="devices.up", tooltip="move the device up the chain"
        ),
        Binding(
            "J", "move(1)", "Move down", id="devices.down", tooltip="move the device down the chain"
        ),
        Binding(
            "c",
            "check",
            "Check all",
            id="devices.check",
            tooltip="check every device (a local one starts its agent)",
        ),
        Binding(
            "l",
            "measure_links",
            "Measure links",
            id="devices.measure_links",
            tooltip="measure every link's bandwidth and latency",
        ),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.widths: dict[str, int] = {}  # column widths for this chain (on mount)
        self.status: dict[str, Text] = {}  # device name → what its last check said

    def compose(self) -> ComposeResult:
        yield from self.compose_title()
        yield Label("Devices (chain order: first = where the input is produced)", classes="section")
        yield DataTable(id="device-table", cursor_type="row")
        yield Static("", id="device-details")
        yield Label("Links (typed vs measured)", classes="section")
        yield DataTable(id="link-table", cursor_type="row")
        yield from self.compose_footer()

    def on_mount(self) -> None:
        devices = self.query_one("#device-table", DataTable)
        self.widths = device_widths(self.ws.devices)
        for key, label, width in (
            ("name", "name", self.widths["name"]),
            ("where", "where", WHERE_W),
            ("runtime", "runtime", RUNTIME_W),
            ("threads", "thr", 3),
            ("cpus", "cpus", 4),
            ("status", "status", self.widths["status"]),
        ):
            devices.add_column(label, key=key, width=width)
        links = self.query_one("#link-table", DataTable)
        for key, label, width in (
            ("name", "link", self.widths["link"]),
            ("bw", "typed Mbit/s", 12),
            ("lat", "typed ms", 8),
            ("mbw", "measured Mbit/s", 15),
            ("mlat", "measured ms", 11),
        ):
            links.add_column(
                Text(label, justify="right") if key != "name" else label, key=key, width=width
            )
        self._fill()
        devices.focus()

    def on_screen_resume(self) -> None:
        super().on_screen_resume()
        self._fill()  # link values may have been changed on the partitions screen

    def _fill(self) -> None:
        devices = self.query_one("#device-table", DataTable)
        row = devices.cursor_row
        devices.clear()
        for spec in self.ws.device_specs:
            w = self.widths
            devices.add_row(
                fit.middle(spec["name"], w["name"]),
                fit.middle(_where(spec), WHERE_W),
                fit.end(_runtime(spec), RUNTIME_W),
                str(spec.get("threads", "")),
                fit.end(format_cpus(spec["cpus"]), 4) if spec.get("cpus") else "",
                self._status_cell(spec["name"]),
                key=spec["name"],
            )
        if devices.row_count:
            devices.move_cursor(row=min(row, devices.row_count - 1), animate=False)
        self._show_details()
        links = self.query_one("#link-table", DataTable)
        links.clear()
        for link in self.ws.links:
            links.add_row(
                link_label(link.name, self.ws.devices, self.widths["link"]),
                Text(fmt(link.bandwidth_mbps), justify="right"),
                Text(fmt(link.latency_ms), justify="right"),
                _opt(link.measured_bandwidth_mbps),
                _opt(link.measured_latency_ms, ms=True),
                key=link.name,
            )

    def _status_cell(self, name: str) -> Text:
        """The last check's answer, cut with … to the column (the line under the table
        shows all of it)."""
        status = self.status.get(name, Text("not checked", style="dim"))
        if status.cell_len <= self.widths["status"]:
            return status
        return Text(fit.end(status.plain, self.widths["status"]), style=status.style)

    def _show_details(self) -> None:
        index = self._current()
        details = self.query_one("#device-details", Static)
        if index is None:
            details.update("no devices: a adds one")
            return
        spec = self.ws.device_specs[index]
        status = self.status.get(spec["name"])
        details.update(
            Text.assemble(
                (f"{spec['name']}: ", "bold"), status if status is not None else "c checks it"
            )
        )

    @on(DataTable.RowHighlighted, "#device-table")
    def _highlighted(self) -> None:
        self._show_details()

    def _current(self) -> int | None:
        table = self.query_one("#device-table", DataTable)
        return table.cursor_row if table.row_count else None

    # -- editing ---------------------------------------------------------------------------

    def _form(self, title: str, index: int | None) -> None:
        spec = self.ws.device_specs[index] if index is not None else {}
        taken = {s["name"] for i, s in enumerate(self.ws.device_specs) if i != index}
        fields = [
            Field("name", "Name:", spec.get("name", ""), required=True, placeholder="e.g. glasses"),
            Field("kind", "Kind:", spec.get("kind", "local"), options=KINDS),
            Field("host", "SSH host:", spec.get("host", ""), placeholder="ssh only"),
            Field("user", "SSH user:", spec.get("user", ""), placeholder="ssh only"),
            Field("port", "SSH port:", spec.get("port", ""), placeholder="22"),
            Field("runtime", "Runtime:", spec.get("runtime", "onnxruntime"), options=RUNTIMES),
            Field("threads", "Threads:", spec.get("threads", ""), placeholder="runtime default"),
            Field("graph_opt", "ORT graph opt:", spec.get("graph_opt", "all"), options=GRAPH_OPTS),
            Field(
                "cpus",
                "CPUs:",
                format_cpus(spec["cpus"]) if spec.get("cpus") else "",
                placeholder="e.g. 0 or 0-1",
            ),
        ]

        def done(values: dict[str, str] | None) -> None:
            if values is None:
                return
            if self._change(lambda: self.ws.set_device(index, device_from_form(values, taken))):
                self.notify(
                    f"device {values['name']} saved; segments it measured under other "
                    "options are profiled again"
                )

        self.app.push_screen(FormDialog(title, fields, lambda v: check_form(v, taken)), done)

    def action_add(self) -> None:
        self._form("Add a device (at the end of the chain)", None)

    def action_edit(self) -> None:
        index = self._current()
        if index is None:
            self.action_add()
            return
        self._form(f"Edit device {self.ws.device_specs[index]['name']}", index)

    def action_remove(self) -> None:
        index = self._current()
        if index is None:
            return
        name = self.ws.device_specs[index]["name"]
        if self._change(lambda: self.ws.remove_device(index)):
            self.notify(f"device {name} removed")

    def action_move(self, delta: int) -> None:
        index = self._current()
        if index is None:
            return
        if not self._change(lambda: self.ws.move_device(index, delta)):
            return
        table = self.query_one("#device-table", DataTable)
        table.move_cursor(row=max(0, min(index + delta, table.row_count - 1)), animate=False)

    def _change(self, change: Callable[[], None]) -> bool:
        """Apply a chain change; the engine's refusal (measured chains are fixed) is shown
        with its reason and fix."""
        try:
            change()
        except OmdpError as exc:
            self.app.push_screen(ErrorDialog("Chain not changed", str(exc)))
            return False
        self._fill()
        return True

    # -- checking --------------------------------------------------------------------------

    def action_check(self) -> None:
        for spec in self.ws.device_specs:
            self.status[spec["name"]] = Text("checking…", style="italic")
        self._fill()
        self._check_all(list(self.ws.chain.devices))

    @work(exclusive=True, group="check", exit_on_error=False)
    async def _check_all(self, devices: list[DeviceSpec]) -> None:
        async def one(device: DeviceSpec) -> None:
            try:
                answer = await self.ws.check_device(device)
                ok, detail = answer.ok, answer.detail
            except Exception as exc:  # a bad field or a bug: report it on the row
                ok, detail = False, f"{type(exc).__name__}: {exc}"
            self.post_message(ConnectionChecked(device.name, ok, detail))

        await asyncio.gather(*(one(d) for d in devices))

    @on(ConnectionChecked)
    def _checked(self, message: ConnectionChecked) -> None:
        style = "green" if message.ok else "bold red"
        self.status[message.device] = Text(
            ("ok · " if message.ok else "✗ ") + message.detail, style=style
        )
        table = self.query_one("#device-table", DataTable)
        if message.device in table.rows:
            table.update_cell(message.device, "status", self._status_cell(message.device))
        self._show_details()
        if not message.ok:
            self.notify(
                f"{message.device}: {message.detail}",
                title="Device check failed",
                severity="error",
                timeout=10,
            )

    # -- measuring links -------------------------------------------------------------------

    def action_measure_links(self) -> None:
        if not self.ws.links:
            self.notify("a single device has no links", severity="warning")
            return
        self.notify("measuring links, one at a time…", title="Links")
        self._measure_links()

    @work(exclusive=True, group="links", exit_on_error=False)
    async def _measure_links(self) -> None:
        try:
            found = await self.ws.measure_links()
        except Exception as exc:  # a bad field or an unreachable device: say it
            self.post_message(LinksMeasured(error=f"{type(exc).__name__}: {exc}"))
            return
        self.post_message(LinksMeasured(found=found))

    @on(LinksMeasured)
    def _links_measured(self, message: LinksMeasured) -> None:
        if message.found is None:
            problems = [message.error or "the links were not measured"]
        else:
            problems = self.ws.store_link_measurements(message.found)
        self._fill()
        if problems:
            self.app.push_screen(ErrorDialog("Some links were not measured", "\n".join(problems)))
        else:
            self.notify("measured values are beside the typed ones", title="Links measured")
