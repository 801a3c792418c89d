"""A DataTable whose one-line rows of plain text are drawn without Rich's layout machinery.

The top-K table changes most of its cells on every keystroke, so every frame redraws
every row. DataTable renders each cell through Rich (padding, wrapping, cropping) and
works out the cell's styles from the CSS again for every cell, which made drawing the
table cost more than re-ranking it. Here a body row whose cells are all plain text on one
line (all of ours: the screens size and mark them to fit) is drawn as one segment per
cell, with the styles DataTable would give it worked out once per row; the header, row
labels, fixed columns, other cursor types and any rich or multi-line cell go through
DataTable's own path, so the table looks exactly as a DataTable would.
"""

from __future__ import annotations

from typing import Any

from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual.coordinate import Coordinate
from textual.geometry import Region
from textual.strip import Strip
from textual.widgets import DataTable
from textual.widgets._data_table import CellDoesNotExist, ColumnKey, RowKey

from backend import fit


class FastTable(DataTable):
    _frame: dict[Any, Any] | None = None  # what the rows of the frame being drawn share
    _headers: dict[tuple[Any, ...], Strip] | None = None

    def render_lines(self, crop: Region) -> list[Strip]:
        # What every row of this frame shares is worked out once (styles cannot change
        # while a frame is drawn).
        columns = self.ordered_columns
        widths = [c.get_render_width(self) for c in columns]
        self._frame = {
            "keys": [c.key for c in columns],
            "widths": widths,
            "width": self.size.width,
            "fits": sum(widths) <= self.size.width,
            "scroll": self.scroll_offset,
            "style": self.rich_style,
            "cursor": self.cursor_coordinate.row,
            "hover": self.hover_coordinate.row,
            "pad": " " * self.cell_padding,
            "simple": self.cursor_type == "row"
            and not self.fixed_rows
            and not self.fixed_columns
            and not (self._labelled_row_exists and self.show_row_labels),
        }
        try:
            return super().render_lines(crop)
        finally:
            self._frame = None

    def render_line(self, y: int) -> Strip:
        frame = self._frame
        if frame is None or frame["scroll"].x or not frame["simple"]:
            return super().render_line(y)
        if self.show_header and y < self.header_height:
            return self._header_line(y, frame)
        try:
            row_key, line_no = self._get_offsets(y + frame["scroll"].y)
        except LookupError:
            return super().render_line(y)
        plain = self._plain_row(row_key, frame["keys"])
        if plain is None or line_no or not frame["fits"]:
            return super().render_line(y)
        row_index = self._row_locations.get(row_key)
        look = self._row_look(
            row_index, frame["style"], row_index == frame["cursor"], row_index == frame["hover"]
        )
        pad = frame["pad"]
        segments = []
        for column_index, (width, (text, justify, cell_style)) in enumerate(
            zip(frame["widths"], plain, strict=True)
        ):
            meta = Style.from_meta({"row": row_index, "column": column_index})
            left, shown, right = _justified(text, width - 2 * len(pad), justify)
            style = self._cell_look(look, cell_style) + meta
            if not cell_style:
                segments.append(Segment(pad + left + shown + right + pad, style))
            else:  # the cell's style covers its text only, as in DataTable
                around = self._cell_look(look, Style.null()) + meta
                segments += [
                    Segment(pad + left, around),
                    Segment(shown, style),
                    Segment(right + pad, around),
                ]
        # The rest of the line takes the row's look, as DataTable extends it.
        rest = frame["width"] - sum(frame["widths"])
        extend = look[0] + Style.from_meta({"row": row_index, "column": 0, "out_of_bounds": True})
        segments.append(Segment(" " * rest, extend))
        return Strip(segments, frame["width"])

    def _header_line(self, y: int, frame: dict[Any, Any]) -> Strip:
        """The header as DataTable draws it, kept until a column, the size, the styles or
        the hover on it change (DataTable draws it again after every cell update)."""
        hover = self.hover_coordinate
        key = (
            y,
            tuple(
                (c.label.plain, str(c.label.style), c.label.justify, tuple(c.label.spans), w)
                for c, w in zip(self.ordered_columns, frame["widths"], strict=True)
            ),
            frame["width"],
            self.rich_style,
            self._pseudo_class_state,
            hover if hover.row < 0 else None,
            self.show_cursor,
            self._show_hover_cursor,
        )
        if self._headers is None or len(self._headers) > 64:
            self._headers = {}
        line = self._headers.get(key)
        if line is None:
            line = self._headers[key] = super().render_line(y)
        return line

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._headers = None

    def update_cells_at(self, changes: list[tuple[Coordinate, Any]]) -> None:
        """`update_cell_at` for many cells with one refresh (a keystroke changes most of
        the top-K table; a refresh per cell cost more than drawing it)."""
        for coordinate, value in changes:
            if not self.is_valid_coordinate(coordinate):
                raise CellDoesNotExist(f"Coordinate {coordinate!r} is invalid.")
            row_key, column_key = self.coordinate_to_cell_key(coordinate)
            self._data[row_key][column_key] = value
        if changes:
            self._update_count += 1
            self.refresh()

    def _clear_caches(self) -> None:
        super()._clear_caches()
        self._headers = None

    def _row_look(
        self, row_index: int, base_style: Style, cursor: bool, hover: bool
    ) -> tuple[Style, Style]:
        """(the row's style under the cursor/hover, the post style) as DataTable gives
        them to each of the row's cells."""
        key = ("row", row_index % 2, base_style, cursor, hover)
        assert self._frame is not None
        look = self._frame.get(key)
        if look is None:
            component, post = self._get_styles_to_render_cell(
                False,
                False,
                False,
                hover,
                cursor,
                self.show_cursor,
                self._show_hover_cursor,
                self.cursor_foreground_priority == "css",
                self.cursor_background_priority == "css",
            )
            look = self._frame[key] = (self._get_row_style(row_index, base_style) + component, post)
        return look

    def _cell_look(self, look: tuple[Style, Style], cell_style: Style) -> Style:
        key = ("cell", look, cell_style)
        assert self._frame is not None
        style = self._frame.get(key)
        if style is None:
            style = self._frame[key] = look[0] + cell_style + look[1]
        return style

    def _plain_row(
        self, row_key: RowKey, keys: list[ColumnKey]
    ) -> list[tuple[str, str, Style]] | None:
        """The row's cells as (text, justify, style) when the fast path can draw it (a
        one-line row of plain-text cells); None otherwise."""
        if row_key not in self._row_locations or self.rows[row_key].height != 1:
            return None
        data = self._data.get(row_key, {})
        out = []
        for key in keys:
            cell = data.get(key, "")
            if isinstance(cell, str):
                if "\n" in cell:
                    return None
                out.append((cell, "left", Style.null()))
            elif isinstance(cell, Text) and not cell.spans and "\n" not in cell.plain:
                style = cell.style if isinstance(cell.style, Style) else Style.parse(cell.style)
                out.append((cell.plain, cell.justify or "left", style))
            else:
                return None
        return out


def _justified(text: str, width: int, justify: str) -> tuple[str, str, str]:
    """(space before, text, space after) filling exactly `width` cells; a text longer
    than that is marked with … (never cut silently)."""
    text = fit.end(text, max(0, width))
    room = max(0, width) - fit.cells(text)
    if justify == "right":
        return " " * room, text, ""
    if justify == "center":
        return " " * (room // 2), text, " " * (room - room // 2)
    return "", text, " " * room
