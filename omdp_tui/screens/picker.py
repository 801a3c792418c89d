"""Where `omdp` starts: open a new session on a model, resume a recent one, or the demo."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Center, Vertical
from textual.screen import Screen
from textual.widgets import DataTable, Input, Label, LoadingIndicator, Static

from backend import fit
from backend.usecases.sessions import builtin_models, recent_sessions
from omdp_tui.widgets.key_bar import KeyBar

if TYPE_CHECKING:
    from omdp_tui.app import OmdpApp


def _shown_path(path: str) -> str:
    """A session's path as the operator would type it: relative to here when inside."""
    p = Path(path)
    try:
        return str(p.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(p)


class LoadingScreen(Screen):
    """Shown while a worker opens the workspace; the UI keeps drawing meanwhile."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text

    def compose(self) -> ComposeResult:
        with Vertical(id="loading"):
            yield Label(self.text, id="loading-text")
            yield LoadingIndicator()


class PickerScreen(Screen):
    BINDINGS: ClassVar = [
        Binding(
            "enter",
            "submit",
            "Open",
            id="picker.open",
            tooltip="open the model typed, or resume the highlighted session",
        ),
        Binding(
            "down,tab",
            "focus_recent",
            "Recent",
            key_display="↓",
            id="picker.recent",
            tooltip="go to the recent sessions (Enter resumes one)",
        ),
        Binding(
            "f2", "demo", "Demo", id="picker.demo", tooltip="open the demo (YOLOv5n, 3 devices)"
        ),
        Binding("ctrl+q", "app.quit", "Quit", id="picker.quit", tooltip="quit"),
    ]

    def compose(self) -> ComposeResult:
        with Center(id="picker"), Vertical(id="picker-box"):
            yield Label(
                "OMDP — profile and partition a model across devices", classes="dialog-title"
            )
            yield Label("New session on a model (ONNX path or built-in name):")
            yield Input(
                placeholder="e.g. yolov5n or models/net.onnx",
                id="picker-model",
                select_on_focus=False,
            )
            names = builtin_models()
            yield Static(
                "built-in: " + (", ".join(names) if names else "none"),
                id="picker-builtins",
                classes="dialog-hint",
            )
            yield Label("Recent sessions (↓ to reach them, Enter resumes; typing goes above):")
            yield DataTable(id="picker-recent", cursor_type="row")
        yield KeyBar()

    def on_mount(self) -> None:
        table = self.query_one("#picker-recent", DataTable)
        table.add_column("session", key="session", width=20)
        table.add_column("model", key="model", width=12)
        table.add_column("measured", key="progress", width=9)
        table.add_column("saved", key="saved", width=16)
        for info in recent_sessions():
            saved = time.strftime("%Y-%m-%d %H:%M", time.localtime(info.modified))
            progress = "unreadable" if info.problem else f"{info.done}/{info.total}"
            table.add_row(
                fit.start(_shown_path(info.path), 20),
                fit.middle(info.model or "?", 12),
                progress,
                saved,
                key=info.path,
            )
        # Typing goes to the model field: it has the focus; ↓ or Tab reach the list.
        self.query_one("#picker-model", Input).focus()

    @property
    def omdp(self) -> OmdpApp:
        return self.app  # type: ignore[return-value]

    def action_focus_recent(self) -> None:
        table = self.query_one("#picker-recent", DataTable)
        if table.row_count:
            table.focus()

    def action_submit(self) -> None:
        """Enter outside the field and the list: open what is typed, if anything."""
        self.query_one("#picker-model", Input).action_submit()

    def on_key(self, event) -> None:
        """A printable key on the list goes to the model field (typing is never lost)."""
        table = self.query_one("#picker-recent", DataTable)
        if table.has_focus and event.is_printable and event.character:
            field = self.query_one("#picker-model", Input)
            field.focus()
            field.insert_text_at_cursor(event.character)
            event.stop()
            event.prevent_default()

    def action_demo(self) -> None:
        from omdp_tui.app import Launch

        self.omdp.open(Launch("demo"))

    @on(Input.Submitted, "#picker-model")
    def _new(self, event: Input.Submitted) -> None:
        from omdp_tui.app import Launch

        model = event.value.strip()
        if not model:
            self.notify("type a model path or a built-in name", severity="warning")
            return
        self.omdp.open(Launch("model", model))

    @on(DataTable.RowSelected, "#picker-recent")
    def _resume(self, event: DataTable.RowSelected) -> None:
        from omdp_tui.app import Launch

        if event.row_key.value:
            self.omdp.open(Launch("session", session=Path(event.row_key.value)))
