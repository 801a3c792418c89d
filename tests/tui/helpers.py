"""Helpers to drive the app with a Pilot and read what it shows."""

from __future__ import annotations

import asyncio
from collections.abc import Callable


async def wait_for(pilot, condition: Callable[[], bool], timeout: float = 20.0) -> None:
    """Let the app run until `condition()` holds (workers post messages meanwhile)."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not condition():
        if loop.time() > end:
            raise AssertionError(
                f"timed out after {timeout}s waiting for the app "
                f"(screen: {type(pilot.app.screen).__name__})"
            )
        await pilot.pause(0.05)
    await pilot.pause()


def screen_text(app) -> str:
    """The visible screen as plain text (what an operator reads)."""
    strips = app.screen._compositor.render_strips()
    return "\n".join("".join(seg.text for seg in strip) for strip in strips)


def cut_cells(app) -> list[str]:
    """Every text on the current screen that was cut without a mark: a table cell (or
    header) longer than its column, a table wider than the room it has (its last columns
    hidden), or a one-line label longer than its width. Cutting with … is fine."""
    from rich.text import Text
    from textual.widgets import DataTable, Label

    problems = []
    screen = app.screen
    for table in screen.query(DataTable):
        if not table.display:
            continue
        name = table.id or "table"
        room = table.scrollable_content_region.width
        if table.virtual_size.width > room:
            problems.append(f"{name}: {table.virtual_size.width} columns wide in {room}")
        for column in table.columns.values():
            label = column.label.plain
            if not column.auto_width and Text(label).cell_len > column.width:
                problems.append(f"{name} header {label!r} in {column.width}")
            for row in table.rows:
                cell = table.get_cell(row, column.key)
                plain = cell.plain if isinstance(cell, Text) else str(cell)
                width = Text(plain).cell_len
                if not column.auto_width and width > column.width:
                    problems.append(f"{name} cell {plain!r} in {column.width}")
    for label in screen.query(Label):
        if not label.display or label.region.height != 1:
            continue
        rendered = label.render()
        plain = rendered.plain if isinstance(rendered, Text) else str(rendered)
        if "\n" in plain:
            continue
        if Text(plain).cell_len > label.content_region.width:
            problems.append(f"label {plain!r} in {label.content_region.width}")
    return problems
