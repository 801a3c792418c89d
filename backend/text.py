"""Text from outside (a device, a file, the command line), made inert before anyone shows it.

A device (or anything impersonating its python) chooses the bytes of its error messages,
host name, log lines and helper replies; a file or a path chooses the names in ours.
Printed as they come, terminal escape codes and newlines could redraw the screen or forge
a line such as "omdp: all good". `inert` keeps
the text readable but escapes every control character (C0, DEL, C1), line and paragraph
separators and the bidirectional overrides, and bounds its length. The CLI, the logs and
the TUI show device text only through it, and every CLI error passes through it once.
"""

from __future__ import annotations

import re
from typing import Any

LIMIT = 2000  # characters: enough for a runtime's error, not enough to flood a screen

_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def inert(text: object, limit: int = LIMIT) -> str:
    """`text` on one line with control characters escaped, cut to `limit` characters."""
    s = _UNSAFE.sub(_escape, text if isinstance(text, str) else str(text))
    return s if len(s) <= limit else s[: limit - 1] + "…"


def shown(text: str, limit: int = 80) -> str:
    """A name from a file or the command line, quoted, inert, and cut if long."""
    safe = inert(text, limit=LIMIT)
    return f"'{safe[:limit]}{'…' if len(safe) > limit else ''}'"


def inert_data(value: Any) -> Any:
    """The same data with every string in it (keys included) made inert."""
    if isinstance(value, str):
        return inert(value)
    if isinstance(value, dict):
        return {inert(k): inert_data(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [inert_data(v) for v in value]
    return value
