"""A DataTable whose one-line cells are drawn without Rich's layout machinery.

The top-K table changes most of its cells on every keystroke, so every frame redraws
them; DataTable renders each cell through Rich (padding, wrapping, cropping) at about a
tenth of a millisecond, which made a frame cost more than the re-ranking. A cell that is
plain text on one line (all of ours: the screens size and mark them to fit) is drawn here
as one padded segment with the same styles DataTable would give it; anything else
(headers, wrapped or multi-style cells) goes through DataTable's own path.
"""

from __future__ import annotations

from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual.widgets import DataTable
from textual.widgets._data_table import SegmentLines

from backend import fit


class FastTable(DataTable):
    def _render_cell(
        self,
        row_index: int,
        column_index: int,
        base_style: Style,
        width: int,
        cursor: bool = False,
        hover: bool = False,
    ) -> SegmentLines:
        if row_index < 0 or column_index < 0:
            return super()._render_cell(row_index, column_index, base_style, width, cursor, hover)
        row_key = self._row_locations.get_key(row_index)
        column_key = self._column_locations.get_key(column_index)
        key = (
            row_key,
            column_key,
            base_style,
            cursor,
            hover,
            self._show_hover_cursor,
            self._update_count,
            self._pseudo_class_state,
        )
        cached = self._cell_render_cache.get(key)
        if cached is not None:
            return cached
        cell = self.get_cell_at((row_index, column_index))
        row = self.rows[row_key]
        if isinstance(cell, str):
            cell = Text(cell)
        plain = cell.plain if isinstance(cell, Text) else None
        if plain is None or cell.spans or "\n" in plain or row.height != 1:
            return super()._render_cell(row_index, column_index, base_style, width, cursor, hover)
        fixed = row_index < self.fixed_rows or column_index < self.fixed_columns
        component, post = self._get_styles_to_render_cell(
            False,
            False,
            fixed,
            hover,
            cursor,
            self.show_cursor,
            self._show_hover_cursor,
            self.cursor_foreground_priority == "css",
            self.cursor_background_priority == "css",
        )
        pad = self.cell_padding
        inner = max(0, width - 2 * pad)
        text = fit.end(plain, inner)
        room = inner - fit.cells(text)
        if cell.justify == "right":
            text = " " * room + text
        elif cell.justify == "center":
            text = " " * (room // 2) + text + " " * (room - room // 2)
        else:
            text += " " * room
        meta = Style.from_meta({"row": row_index, "column": column_index})
        style = base_style + meta + component + (cell.style or Style()) + post
        if isinstance(style, str):
            style = Style.parse(style)
        lines = [[Segment(" " * pad + text + " " * pad, style)]]
        self._cell_render_cache[key] = lines
        return lines
