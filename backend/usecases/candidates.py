"""Choosing candidate positions: the cuts a plan measures around.

Positions the user names win, then an automatic pick of k, then what the session already
holds; a new session with none of these gets the default pick.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from backend.model.analysis import ModelAnalysis

DEFAULT_AUTO = 5  # candidates a new session picks when the user names none


@dataclass(frozen=True)
class CandidateChoice:
    """How the user chose: `given` positions or node names (as typed), or `auto` k."""

    given: tuple[str, ...] | None = None
    auto: int | None = None


def clean(analysis: ModelAnalysis, positions: Iterable[int]) -> list[int]:
    """Sorted unique positions strictly inside the model (0 and N are always cuts)."""
    return sorted({p for p in positions if 0 < p < analysis.n})


def choose(
    analysis: ModelAnalysis,
    choice: CandidateChoice,
    stored: list[int] | None,
    default_auto: int | None = DEFAULT_AUTO,
) -> list[int]:
    """The candidates to use. `stored`: the session's (None for a new session);
    `default_auto` None means a new session starts with no candidates."""
    if choice.given is not None:
        return clean(analysis, (analysis.resolve(spec) for spec in choice.given))
    if choice.auto is not None:
        return analysis.candidates(choice.auto)
    if stored is not None:
        return stored
    return analysis.candidates(default_auto) if default_auto else []
