"""The footer: the current screen's keys that fit in one line, and `?` for all of them.

Textual's Footer lays keys out in a grid and cuts what does not fit at 80 columns
("l Measure li"). This bar draws whole hints only, in binding order, and always ends with
`? help` (`? more keys` when some did not fit) and `^p palette`.
"""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual.screen import Screen
from textual.widget import Widget

TAIL_MORE = "? more keys"
TAIL_ALL = "? help"
PALETTE = "^p palette"


def hints(screen: Screen) -> list[tuple[str, str]]:
    """(key as shown, description) of the screen's shown, enabled bindings, in order,
    one per action."""
    seen: set[str] = set()
    out = []
    for _, binding, enabled, _ in screen.active_bindings.values():
        if not binding.show or not enabled or not binding.description:
            continue
        if binding.action in seen:
            continue
        seen.add(binding.action)
        out.append((screen.app.get_key_display(binding), binding.description))
    return out


def fit_hints(items: list[tuple[str, str]], width: int) -> tuple[list[tuple[str, str]], bool]:
    """The leading hints that fit in `width` beside the tail; whether any were left out."""
    room = width - len(PALETTE) - 2
    shown: list[tuple[str, str]] = []
    used = 0
    for i, (key, desc) in enumerate(items):
        size = len(key) + 1 + len(desc) + 2
        tail = len(TAIL_ALL if i == len(items) - 1 else TAIL_MORE)
        if used + size + tail > room:
            return shown, True
        shown.append((key, desc))
        used += size
    return shown, False


class KeyBar(Widget):
    COMPONENT_CLASSES: ClassVar = {"key-bar--key", "key-bar--desc", "key-bar--more"}
    DEFAULT_CSS = """
    KeyBar { height: 1; dock: bottom; background: $panel; }
    KeyBar > .key-bar--key { color: $accent; text-style: bold; }
    KeyBar > .key-bar--desc { color: $foreground; }
    KeyBar > .key-bar--more { color: $text-muted; }
    """

    def on_mount(self) -> None:
        self.screen.bindings_updated_signal.subscribe(self, self._changed)

    def on_unmount(self) -> None:
        self.screen.bindings_updated_signal.unsubscribe(self)

    def _changed(self, _screen: Screen) -> None:
        self.refresh()

    def render(self) -> Text:
        key_style = self.get_component_rich_style("key-bar--key")
        desc_style = self.get_component_rich_style("key-bar--desc")
        more_style = self.get_component_rich_style("key-bar--more")
        width = self.size.width
        shown, cut = fit_hints(hints(self.screen), width)
        text = Text(no_wrap=True, overflow="ellipsis")
        for key, desc in shown:
            text.append(key, style=key_style)
            text.append(f" {desc}  ", style=desc_style)
        tail = TAIL_MORE if cut else TAIL_ALL
        text.append("?", style=key_style)
        text.append(tail[1:], style=more_style)
        pad = width - text.cell_len - len(PALETTE) - 1
        text.append(" " * max(1, pad))
        text.append("^p", style=key_style)
        text.append(PALETTE[2:], style=more_style)
        return text
