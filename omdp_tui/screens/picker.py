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

from backend.usecases.sessions import builtin_models, recent_sessions
from omdp_tui.widgets.key_bar import KeyBar

if TYPE_CHECKING:
    from omdp_tui.app import OmdpApp


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
        Binding("n", "focus_model", "New session", id="picker.new"),
        Binding("r", "focus_recent", "Recent", id="picker.recent"),
        Binding("d", "demo", "Demo", id="picker.demo"),
        Binding("q", "app.quit", "Quit", id="picker.quit"),
    ]

    def compose(self) -> ComposeResult:
        with Center(id="picker"), Vertical(id="picker-box"):
            yield Label(
                "OMDP — profile and partition a model across devices", classes="dialog-title"
            )
            yield Label("New session on a model (ONNX path or built-in name):")
            yield Input(placeholder="e.g. yolov5n or models/net.onnx", id="picker-model")
            names = builtin_models()
            yield Static(
                "built-in: " + (", ".join(names) if names else "none"),
                id="picker-builtins",
                classes="dialog-hint",
            )
            yield Label("Recent sessions (Enter resumes):")
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
            table.add_row(Path(info.path).name, info.model or "?", progress, saved, key=info.path)
        # Focus the list, not the input: the footer then shows n/r/d/q (an input would
        # swallow those keys as text).
        table.focus()

    @property
    def omdp(self) -> OmdpApp:
        return self.app  # type: ignore[return-value]

    def action_focus_model(self) -> None:
        self.query_one("#picker-model", Input).focus()

    def action_focus_recent(self) -> None:
        self.query_one("#picker-recent", DataTable).focus()

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
