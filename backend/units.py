"""One way to write numbers for people, shared by the CLI and the TUI.

Bytes in binary units (`3.1 MiB`), times in milliseconds, link rates in Mbit/s, counts
with SI prefixes (`1.23G`), never in scientific notation. A narrow cell asks for a
`width`: the precision (then the unit's spelling) shrinks until the number fits, so a
number is never cut — a value that cannot fit even so is returned whole (the caller's
table then has to make room).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

BINARY = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")
SI = ("", "k", "M", "G", "T", "P", "E")
NONE = "–"


def fixed(value: float, sig: int = 3, strip: bool = False) -> str:
    """`value` with about `sig` significant digits in plain notation: 0.00952 → '0.00952',
    17290.4 → '17290', 12.345 → '12.3'. Never an exponent. `strip` drops trailing zeros
    (3.10 → '3.1')."""
    if not math.isfinite(value):
        return NONE
    if value == 0:
        return "0"
    magnitude = math.floor(math.log10(abs(value)))
    decimals = max(0, sig - 1 - magnitude)
    text = f"{value:.{decimals}f}"
    if "." in text and decimals > 0 and abs(round(value, decimals)) >= 10 ** (magnitude + 1):
        text = f"{value:.{max(0, decimals - 1)}f}"  # 9.996 rounds up a magnitude: one less
    if strip and "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


def _scaled(value: float, step: float, prefixes: Sequence[str]) -> tuple[float, str]:
    """The value in the largest prefix that keeps it ≥ 1: below `step` once rounded."""
    v = float(value)
    for prefix in prefixes[:-1]:
        if abs(float(fixed(v))) < step:
            return v, prefix
        v /= step
    return v, prefixes[-1]


def size(n: float | None, width: int | None = None) -> str:
    """Bytes in binary units: 3250585 → '3.1 MiB', 812 → '812 B'. With `width`, fewer
    digits then a one-letter unit ('3.1M') until it fits."""
    if n is None or (isinstance(n, float) and not math.isfinite(n)):
        return "?"
    v, unit = _scaled(n, 1024, BINARY)
    forms = [f"{round(v)} B"] if unit == "B" else []
    if unit != "B":
        digits = [fixed(v, 3, True), fixed(v, 2, True), f"{round(v):.0f}"]
        forms += [f"{d} {unit}" for d in digits] + [f"{d}{unit[0]}" for d in digits[1:]]
    else:
        forms += [f"{round(v)}B", f"{round(v)}"]
    return _fit(forms, width)


def count(n: float | None, width: int | None = None, unit: str = "") -> str:
    """A count with an SI prefix: 1234567 → '1.23M'; fewer digits to fit `width`."""
    if n is None or (isinstance(n, float) and not math.isfinite(n)):
        return "?"
    v, prefix = _scaled(n, 1000, SI)
    if prefix == "" and float(v).is_integer():
        return _fit([f"{int(v)}{unit}"], width)
    forms = [f"{fixed(v, 3, True)}{prefix}{unit}", f"{fixed(v, 2, True)}{prefix}{unit}"]
    forms.append(f"{round(v):.0f}{prefix}{unit}")
    return _fit(forms, width)


def plural(n: int, noun: str) -> str:
    """'1 segment', '2 segments', '0 segments' (nouns that take an s)."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


def ms(value: float | None, width: int | None = None) -> str:
    """Milliseconds without the unit: 0.01234 → '0.0123', 12.34 → '12.3', 4321 → '4,321'."""
    if value is None or not math.isfinite(value):
        return NONE
    if abs(round(value, 1)) >= 1000:
        forms = [f"{value:,.0f}", f"{value:.0f}", f"{value / 1000:.1f}s", f"{value / 1000:.0f}s"]
    elif abs(round(value, 3)) >= 1:
        forms = [f"{value:.1f}", f"{value:.0f}"]
    else:
        forms = [fixed(value, 3), fixed(value, 2), fixed(value, 1)]
    return _fit(forms, width)


def ms_unit(value: float | None) -> str:
    """A time with its unit: '12.3 ms'."""
    return NONE if value is None or not math.isfinite(value) else f"{ms(value)} ms"


def mbps(value: float | None) -> str:
    """A link rate: 17290.4 → '17290 Mbit/s', 19.99 → '20.0 Mbit/s'."""
    if value is None or not math.isfinite(value):
        return NONE
    return f"{fixed(value, 3, True)} Mbit/s"


def shape(dims: Sequence[int | str | None] | None) -> str:
    """'1×3×640×640'; '?' for an unknown dimension or shape, 'scalar' for rank 0."""
    if dims is None:
        return "?"
    return "×".join("?" if d is None else str(d) for d in dims) or "scalar"


def duration(seconds: float | None) -> str:
    """ETA-style duration: 75 → '1m15s'."""
    if seconds is None or not math.isfinite(seconds):
        return NONE
    s = max(0, round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{(s % 3600) // 60:02d}m"


def _fit(forms: list[str], width: int | None) -> str:
    if width is None:
        return forms[0]
    return next((f for f in forms if len(f) <= width), min(forms, key=len))
