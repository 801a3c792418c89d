"""Fitting text into a fixed number of terminal cells with a visible mark.

Nothing shown to the operator is cut silently: a text that does not fit loses its
middle (`glasses…cloud`), its start (node paths, where the end tells nodes apart) or its
end (op names), always with `…` where the text was taken out.
"""

from __future__ import annotations

import unicodedata

ELLIPSIS = "…"


def cells(text: str) -> int:
    """Terminal cells `text` takes (wide East Asian characters take two)."""
    if text.isascii():
        return len(text)
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def _take(text: str, width: int, from_end: bool = False) -> str:
    out = ""
    for c in reversed(text) if from_end else text:
        if cells(out) + cells(c) > width:
            break
        out = c + out if from_end else out + c
    return out


def end(text: str, width: int) -> str:
    """'GlobalAveragePool' in 8 → 'GlobalA…'."""
    if cells(text) <= width:
        return text
    if width <= 0:
        return ""
    return _take(text, width - 1) + ELLIPSIS


def middle(text: str, width: int) -> str:
    """'smartglasses-smartphone' in 15 → 'smartgl…rtphone'."""
    if cells(text) <= width:
        return text
    if width <= 1:
        return ELLIPSIS[:width]
    tail = (width - 1) // 2
    return _take(text, width - 1 - tail) + ELLIPSIS + _take(text, tail, from_end=True)


def start(text: str, width: int) -> str:
    """The end of `text`, marked: 'a/very/long/name' in 9 → '…ong/name'."""
    if cells(text) <= width:
        return text
    if width <= 0:
        return ""
    return ELLIPSIS + _take(text, width - 1, from_end=True)


def node_name(name: str, width: int, op: str | None = None) -> str:
    """The part of a node's name that tells it from its neighbours: exporters name nodes
    by path ('/model.2/m/m.0/cv1/conv/Conv'), and the path's end differs, not its start.
    A last component that only repeats the op is dropped when the name does not fit;
    whole components are kept where they fit ('…/m.0/cv1/conv')."""
    if cells(name) <= width:
        return name
    parts = name.split("/")
    if op and len(parts) > 2 and parts[-1].lower() == op.lower():
        shorter = "/".join(parts[:-1])
        if cells(shorter) <= width:
            return shorter
        parts = parts[:-1]
    if len(parts) < 2:
        return middle(name, width)
    kept = ""
    for part in reversed(parts):
        candidate = part if not kept else f"{part}/{kept}"
        if cells(ELLIPSIS + "/" + candidate) > width:
            break
        kept = candidate
    if not kept:
        return start("/".join(parts), width)
    return f"{ELLIPSIS}/{kept}"


def abbreviations(names: list[str], width: int) -> dict[str, str]:
    """Each name in at most `width` cells, the same way everywhere and still unique:
    names that fit stay whole, longer ones lose their middle (their ends usually tell
    devices apart: 'cloud…eu-w1', 'cloud…us-e2'); should two still collide, they are
    numbered by chain order ('1:clo…', '2:clo…')."""
    short = {n: middle(n, width) for n in names}
    seen: dict[str, list[str]] = {}
    for n in names:
        seen.setdefault(short[n], []).append(n)
    for group in seen.values():
        if len(group) > 1:
            for n in group:
                tag = f"{names.index(n) + 1}:"
                short[n] = tag + middle(n, width - len(tag))
    return short
