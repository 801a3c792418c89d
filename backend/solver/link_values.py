"""`NAME=VALUE` arguments (--bw, --latency, --memory, --trace): the one parser for them all.

A NAME must be exactly one link of the chain (link names are unique, see
`backend.chain.link_names`), or one device for --memory; a name given twice is an error,
and so is a value that is not a finite number in the quantity's range. Every error says
what was wrong, in which argument, and lists the valid names.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from backend.errors import OmdpError


@dataclass(frozen=True)
class Quantity:
    """What a `NAME=VALUE` option sets: its flag, its word, its unit and its range."""

    option: str
    what: str
    unit: str
    metavar: str
    zero_ok: bool = False  # 0 is a valid value (a latency), else values are > 0
    example: str = "20"


BANDWIDTH = Quantity("--bw", "bandwidth", "Mbit/s", "MBPS", example="20")
LATENCY = Quantity("--latency", "latency", "ms", "MS", zero_ok=True, example="5")
MEMORY = Quantity("--memory", "memory limit", "MiB", "MIB", example="512")


def split_pairs(
    values: Sequence[str], names: Sequence[str], option: str, metavar: str, noun: str = "link"
) -> dict[str, str]:
    """["a-b=text", ...] → {name: text}: each name one of `names`, each at most once."""
    valid = ", ".join(names) or f"(none: this chain has no {noun}s)"
    out: dict[str, str] = {}
    for raw in values:
        name, sep, text = raw.partition("=")
        name = name.strip()
        if not sep or not name:
            example = f"{names[0] if names else 'a-b'}=..."
            raise OmdpError(
                f"{option} {raw!r} is not {noun.upper()}={metavar}", f"e.g. {option} {example}"
            )
        if name not in names:
            raise OmdpError(
                f"unknown {noun} {name!r} in {option} {raw!r}", f"valid {noun}s: {valid}"
            )
        if name in out:
            raise OmdpError(f"{noun} {name} is given twice in {option}", f"give each {noun} once")
        out[name] = text.strip()
    return out


def parse_values(
    values: Sequence[str], names: Sequence[str], quantity: Quantity, noun: str = "link"
) -> dict[str, float]:
    """["a-b=20", ...] → {name: number}, each a finite number in the quantity's range."""
    q = quantity
    out: dict[str, float] = {}
    for name, text in split_pairs(values, names, q.option, q.metavar, noun).items():
        try:
            value = float(text)
        except ValueError:
            raise OmdpError(
                f"{q.what} of {name} is not a number: {text!r}",
                f"give {q.unit}, e.g. {q.option} {name}={q.example}",
            ) from None
        low = "≥ 0" if q.zero_ok else "> 0"
        if not math.isfinite(value) or value < 0 or (value == 0 and not q.zero_ok):
            fix = f"give {q.unit}, e.g. {q.option} {name}={q.example}"
            if q is BANDWIDTH:
                fix = "a link that is down cannot carry a partition; replay a trace for outages"
            raise OmdpError(
                f"{q.what} of {name} must be a number {low} {q.unit}, got {text!r}", fix
            )
        out[name] = value
    return out
