"""A compact number input whose value the arrow keys step up and down.

Over SSH the operator tunes bandwidths by feel: ↑/↓ step by ×1.25 (or by 1 for whole
numbers), shift+↑/↓ by ×2 — no retyping. The value is validated as it is typed; an
invalid value shows the reason and is not applied.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import ClassVar

from textual.binding import Binding
from textual.geometry import Size
from textual.validation import ValidationResult, Validator
from textual.widgets import Input


class NumberRange(Validator):
    """A number in [lo, hi]; `integer` rejects fractions."""

    def __init__(self, lo: float, hi: float, integer: bool = False, what: str = "value"):
        super().__init__()
        self.lo, self.hi, self.integer, self.what = lo, hi, integer, what

    def validate(self, value: str) -> ValidationResult:
        text = value.strip()
        try:
            number = int(text) if self.integer else float(text)
        except ValueError:
            kind = "a whole number" if self.integer else "a number"
            return self.failure(f"{self.what}: '{text}' is not {kind}")
        if not math.isfinite(number) or not self.lo <= number <= self.hi:
            return self.failure(f"{self.what} must be between {fmt(self.lo)} and {fmt(self.hi)}")
        return self.success()


def fmt(value: float) -> str:
    """Short text for a value: 20 → '20', 12.5 → '12.5', 0.125 → '0.125'."""
    if value == int(value) and abs(value) < 1e12:
        return str(int(value))
    return f"{value:.4g}"


class StepInput(Input):
    BINDINGS: ClassVar = [
        Binding("up", "step(1)", "Step up", show=False, id="input.step_up"),
        Binding("down", "step(-1)", "Step down", show=False, id="input.step_down"),
        Binding("shift+up", "step(4)", "Step up ×2", show=False, id="input.step_up_big"),
        Binding("shift+down", "step(-4)", "Step down ×2", show=False, id="input.step_down_big"),
    ]

    def validate_virtual_size(self, size: Size) -> Size:
        """Keep the size the layout gave: Input resets it on every keystroke, and each
        reset lays the whole screen out again (a one-line field needs no scrolling
        room: its values are a few characters)."""
        if size == Size(self.content_width, 1) and self.virtual_size.height == 1:
            return self.virtual_size
        return size

    def __init__(
        self,
        value: float,
        lo: float,
        hi: float,
        *,
        integer: bool = False,
        what: str = "value",
        on_step: Callable[[StepInput], None] | None = None,
        **kwargs,
    ) -> None:
        self.lo, self.hi, self.integer = lo, hi, integer
        # Called at once when ↑/↓ changes the value: what depends on the field is then
        # redrawn in the same frame as the field. The Changed message still follows, a
        # frame later (and a screen update period after it): the receiver ignores a value
        # it has already applied.
        self.on_step = on_step
        super().__init__(
            fmt(value), validators=[NumberRange(lo, hi, integer, what)], compact=True, **kwargs
        )

    @property
    def number(self) -> float | None:
        """The current value, or None while what is typed is not valid."""
        result = self.validate(self.value)
        if result is not None and not result.is_valid:
            return None
        return int(self.value) if self.integer else float(self.value)

    def action_step(self, notches: int) -> None:
        current = self.number
        if current is None:
            return
        if self.integer:
            new = current + (notches if abs(notches) == 1 else notches * 2)
        else:
            new = current * (1.25**notches if abs(notches) == 1 else 2.0 ** (notches / 4))
            new = float(f"{new:.3g}")
        new = min(self.hi, max(self.lo, new))
        self.value = fmt(new)
        self.cursor_position = len(self.value)
        if self.on_step is not None:
            self.on_step(self)
