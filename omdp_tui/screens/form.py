"""A validated form in a modal: one line per field, errors shown under the form.

Used for devices (name, kind, host, runtime, threads...) and for loading a trace
(file, link). Enter on the last field or ctrl+s submits; Escape cancels. Each field
validates as it is typed; `check` sees all values together for rules that span fields
(a device name already taken, an SSH device without a host) and may return an error.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.validation import Validator
from textual.widgets import Input, Label, Select


@dataclass
class Field:
    key: str
    label: str
    value: Any = ""
    options: Sequence[str] | None = None  # a choice (Select) instead of text
    validators: list[Validator] = field(default_factory=list)
    placeholder: str = ""
    required: bool = False


class FormDialog(ModalScreen[dict[str, Any] | None]):
    BINDINGS: ClassVar = [
        Binding("escape", "cancel", "Cancel", id="form.cancel"),
        Binding("ctrl+s", "submit", "Save", id="form.submit"),
    ]

    def __init__(
        self,
        title: str,
        fields: list[Field],
        check: Callable[[dict[str, Any]], str | None] | None = None,
    ) -> None:
        super().__init__()
        self.title_text = title
        self.fields = fields
        self.check = check

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog form-dialog"):
            yield Label(self.title_text, classes="dialog-title")
            for f in self.fields:
                with Horizontal(classes="form-row"):
                    yield Label(f.label, classes="form-label")
                    if f.options is not None:
                        yield Select(
                            [(o, o) for o in f.options],
                            value=f.value,
                            allow_blank=False,
                            compact=True,
                            id=f"field-{f.key}",
                        )
                    else:
                        yield Input(
                            str(f.value if f.value is not None else ""),
                            placeholder=f.placeholder,
                            validators=f.validators,
                            compact=True,
                            id=f"field-{f.key}",
                        )
            yield Label("", id="form-error", classes="dialog-error")
            yield Label(
                "Tab moves · Enter on the last field or ctrl+s saves · Esc cancels",
                classes="dialog-hint",
            )

    def on_mount(self) -> None:
        first = self.query(f"#field-{self.fields[0].key}").first()
        first.focus()

    def values(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in self.fields:
            widget = self.query_one(f"#field-{f.key}")
            out[f.key] = widget.value if isinstance(widget, Select) else widget.value.strip()
        return out

    def errors(self) -> list[str]:
        problems = []
        for f in self.fields:
            widget = self.query_one(f"#field-{f.key}")
            if isinstance(widget, Input):
                text = widget.value.strip()
                if f.required and not text:
                    problems.append(f"{f.label.strip(': ')} is required")
                    continue
                if text:
                    result = widget.validate(text)
                    if result is not None and not result.is_valid:
                        problems.extend(result.failure_descriptions)
        if not problems and self.check is not None:
            error = self.check(self.values())
            if error:
                problems.append(error)
        return problems

    @on(Input.Submitted)
    def _submitted(self, event: Input.Submitted) -> None:
        last = self.query_one(f"#field-{self.fields[-1].key}")
        if event.input is last:
            self.action_submit()
        else:
            self.focus_next()

    def action_submit(self) -> None:
        problems = self.errors()
        if problems:
            self.query_one("#form-error", Label).update("; ".join(problems))
            return
        self.dismiss(self.values())

    def action_cancel(self) -> None:
        self.dismiss(None)
