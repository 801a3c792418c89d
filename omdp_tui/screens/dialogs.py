"""Small modal dialogs: an error with its cause, a validated number, a line of text, a
choice among a few.

Modals keep the keyboard flow simple over SSH: Enter accepts, Escape cancels, and a
value that does not validate keeps the dialog open with the reason shown under it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Label, OptionList, Static
from textual.widgets.option_list import Option


class ErrorDialog(ModalScreen[None]):
    """An error the user must see (the cause and, when known, the fix)."""

    BINDINGS: ClassVar = [Binding("escape,enter,q", "dismiss", "Close", id="dialog.close")]

    def __init__(self, title: str, message: str) -> None:
        super().__init__()
        self.title_text = title
        self.message = message

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog error-dialog"):
            yield Label(self.title_text, classes="dialog-title")
            yield Static(self.message, classes="dialog-body")
            yield Label("Enter or Esc closes", classes="dialog-hint")

    def action_dismiss(self, result: None = None) -> None:
        self.dismiss(None)


class TextPrompt(ModalScreen[str | None]):
    """One line of text; `check` returns an error message or None when the value is fine."""

    BINDINGS: ClassVar = [Binding("escape", "cancel", "Cancel", id="dialog.cancel")]

    def __init__(
        self,
        title: str,
        prompt: str,
        value: str = "",
        check: Callable[[str], str | None] | None = None,
    ) -> None:
        super().__init__()
        self.title_text = title
        self.prompt = prompt
        self.value = value
        self.check = check

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(self.title_text, classes="dialog-title")
            yield Label(self.prompt)
            yield Input(self.value, id="prompt-input")
            yield Label("", id="prompt-error", classes="dialog-error")
            yield Label("Enter accepts, Esc cancels", classes="dialog-hint")

    def on_mount(self) -> None:
        self.query_one(Input).focus()

    def validate(self, text: str) -> tuple[object, str | None]:
        if self.check is not None:
            return text, self.check(text)
        return text, None

    @on(Input.Submitted, "#prompt-input")
    def _submit(self, event: Input.Submitted) -> None:
        value, error = self.validate(event.value.strip())
        if error:
            self.query_one("#prompt-error", Label).update(error)
            return
        self.dismiss(value)  # type: ignore[arg-type]

    def action_cancel(self) -> None:
        self.dismiss(None)


class NumberPrompt(TextPrompt):
    """An integer in [lo, hi]."""

    def __init__(self, title: str, prompt: str, value: int, lo: int, hi: int) -> None:
        super().__init__(title, f"{prompt} ({lo}–{hi})", str(value))
        self.lo, self.hi = lo, hi

    def validate(self, text: str) -> tuple[object, str | None]:
        try:
            value = int(text)
        except ValueError:
            return None, f"'{text}' is not a whole number"
        if not self.lo <= value <= self.hi:
            return None, f"{value} is outside {self.lo}–{self.hi}"
        return value, None


class ChoiceDialog(ModalScreen[str | None]):
    """Pick one of a few labelled choices (↑/↓ and Enter; Esc cancels)."""

    BINDINGS: ClassVar = [Binding("escape", "cancel", "Cancel", id="dialog.cancel")]

    def __init__(self, title: str, choices: list[tuple[str, str]], hint: str = "") -> None:
        super().__init__()
        self.title_text = title
        self.choices = choices  # (id, label)
        self.hint = hint

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(self.title_text, classes="dialog-title")
            yield OptionList(*(Option(label, id=key) for key, label in self.choices))
            if self.hint:
                yield Static(self.hint, classes="dialog-hint")
            yield Label("Enter chooses, Esc cancels", classes="dialog-hint")

    def on_mount(self) -> None:
        self.query_one(OptionList).focus()

    @on(OptionList.OptionSelected)
    def _chosen(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(event.option.id)

    def action_cancel(self) -> None:
        self.dismiss(None)
