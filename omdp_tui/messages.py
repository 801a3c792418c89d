"""Typed messages workers post to the UI. Workers never touch widgets: they post these,
and handlers on the app or a screen update the widgets on the UI thread."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from textual.message import Message

if TYPE_CHECKING:
    from backend.profiling.jobs import JobEvent, RunFinished
    from backend.remote.links import ChainLinks
    from backend.usecases.sessions import Prepared
    from omdp_tui.workspace import Playback, Workspace


@dataclass
class WorkspaceOpened(Message):
    """The model is analysed (`workspace` is Prepared: the session is opened or created
    on the UI thread) or a ready Workspace (tests, embedding)."""

    workspace: Prepared | Workspace


@dataclass
class WorkspaceFailed(Message):
    """Opening a session or model failed; `error` is the one-line cause and fix."""

    error: str


@dataclass
class ProfileBatch(Message):
    """Profiling events coalesced over ~100 ms: results, progress, log lines."""

    events: list[JobEvent]


@dataclass
class ProfileDone(Message):
    """The profiling job ended: finished, cancelled or failed (`error` says why)."""

    state: str
    error: str | None = None
    summary: RunFinished | None = None  # when the run ended normally


@dataclass
class ConnectionChecked(Message):
    """Result of checking one device: its agent's hello, or the error."""

    device: str
    ok: bool
    detail: str


@dataclass
class LinksMeasured(Message):
    """The engine's link measurement finished: what it found, or the error."""

    found: ChainLinks | None = None
    error: str | None = None


@dataclass
class TraceLoaded(Message):
    """A trace was read and analysed (`playback`), or could not be (`error`)."""

    playback: Playback | None
    error: str | None = None
    generation: int = 0  # which request this answers (older answers are dropped)
