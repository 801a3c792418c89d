"""Cuts with their bytes, candidate ranking, and resolving user-given positions.

Ranking rule (README "Candidates"): split the model's cumulative FLOPs into k equal bands;
in each band take the eligible position whose cut has the fewest bytes (ties: the earlier
one). A band with no eligible position is skipped and the remaining picks go, smallest cut
first, to eligible positions not yet taken. Positions 0 and N are never candidates: they are always
available as "everything on one device".
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from backend.errors import OmdpError
from backend.text import shown


@dataclass(frozen=True)
class Cut:
    """X(p) with its size. `unknown` lists crossing tensors whose size shape inference
    could not determine (they count 0 bytes in `bytes`)."""

    position: int
    tensors: tuple[str, ...]
    bytes: int
    unknown: tuple[str, ...] = ()


def build_cuts(crossings: Sequence[Sequence[str]], sizes: dict[str, int | None]) -> list[Cut]:
    cuts = []
    for p, names in enumerate(crossings):
        known = [sizes.get(t) for t in names]
        cuts.append(
            Cut(
                p,
                tuple(names),
                sum(b for b in known if b),
                tuple(t for t, b in zip(names, known, strict=True) if b is None),
            )
        )
    return cuts


def rank_candidates(
    cuts: Sequence[Cut], node_flops: Sequence[int], static: Sequence[bool], k: int
) -> list[int]:
    """k interior positions with small cuts, spread along cumulative compute.

    Only positions right after a compute node with compute on both sides are eligible, and
    of several positions with the same crossing tensors only the first: the others are
    the same cut under another number.
    """
    n = len(cuts) - 1
    if k < 1:
        raise OmdpError(f"cannot pick {k} candidates", "ask for at least 1")
    cum = [0]
    for f in node_flops:
        cum.append(cum[-1] + max(f, 0))
    total = cum[-1]
    if total == 0:  # no compute information: spread by node count instead
        cum = list(range(n + 1))
        total = n
    seen: set[tuple[str, ...]] = set()
    eligible: list[int] = []
    for p in range(1, n):
        key = tuple(sorted(cuts[p].tensors))
        if not static[p - 1] and 0 < cum[p] < total and key not in seen:
            seen.add(key)
            eligible.append(p)
    k = min(k, len(eligible))
    chosen: list[int] = []
    for band in range(k):
        lo, hi = total * band / k, total * (band + 1) / k
        members = [p for p in eligible if lo <= cum[p] <= hi and p not in chosen]
        if members:
            chosen.append(min(members, key=lambda p: (cuts[p].bytes, p)))
    if len(chosen) < k:
        rest = sorted((p for p in eligible if p not in chosen), key=lambda p: (cuts[p].bytes, p))
        chosen += rest[: k - len(chosen)]
    return sorted(chosen)


def resolve_position(
    spec: str | int, n: int, node_names: Sequence[str], output_names: dict[str, int] | None = None
) -> int:
    """A position from an index ("12") or a node name (the cut right after that node).

    A tensor name is accepted too: the cut right after the node that produces it.
    """
    text = str(spec).strip()
    if re.fullmatch(r"[+-]?[0-9]+", text):
        p = int(text) if len(text) < 20 else n + 1
        if not 0 <= p <= n:
            raise OmdpError(
                f"position {shown(text, 24)[1:-1]} is out of range", f"positions go from 0 to {n}"
            )
        return p
    if text in node_names:
        return node_names.index(text) + 1
    if output_names and text in output_names:
        return output_names[text] + 1
    close = [name for name in node_names if text and text.lower() in name.lower()][:3]
    hint = (
        f"did you mean {', '.join(shown(c)[1:-1] for c in close)}?"
        if close
        else "see `omdp inspect MODEL` for names"
    )
    raise OmdpError(
        f"no node or tensor named {shown(text)}", f"give a position 0..{n} or a node name; {hint}"
    )
