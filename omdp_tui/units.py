"""Short human renderings of bytes, FLOPs, times and shapes, sized for narrow table cells."""

from __future__ import annotations

from collections.abc import Sequence


def si(value: float | None, unit: str = "", digits: int = 3) -> str:
    """1234567 → '1.23M'; None → '?'. Fits in 6 characters for any magnitude we show."""
    if value is None:
        return "?"
    v = float(value)
    for prefix in ("", "k", "M", "G", "T", "P"):
        if abs(v) < 999.5 or prefix == "P":
            return f"{v:.{digits}g}{prefix}{unit}"
        v /= 1000.0
    return f"{v:.{digits}g}{unit}"


def nbytes(value: int | None) -> str:
    """Bytes in binary units: 6553600 → '6.25M' (MiB); 0 → '0'."""
    if value is None:
        return "?"
    v = float(value)
    for prefix in ("", "K", "M", "G", "T"):
        if abs(v) < 1023.5 or prefix == "T":
            return f"{int(v)}" if prefix == "" else f"{v:.3g}{prefix}"
        v /= 1024.0
    return f"{v:.3g}T"


def ms(seconds: float | None) -> str:
    """Seconds → milliseconds text with 3 significant digits: 0.01234 → '12.3'."""
    if seconds is None:
        return "–"
    value = seconds * 1000.0
    if value >= 1000:
        return f"{value:,.0f}"
    return f"{value:.3g}"


def shape(dims: Sequence[int | str | None] | None) -> str:
    if dims is None:
        return "?"
    return "×".join("?" if d is None else str(d) for d in dims) or "scalar"


def duration(seconds: float | None) -> str:
    """ETA-style duration: 75 → '1m15s'."""
    if seconds is None:
        return "–"
    s = max(0, round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{(s % 3600) // 60:02d}m"
