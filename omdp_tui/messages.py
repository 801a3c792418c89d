"""Typed messages workers post to the UI. Workers never touch widgets: they post these,
and handlers on the app or a screen update the widgets on the UI thread."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from textual.message import Message


@dataclass
class WorkspaceOpened(Message):
    """The model is analysed (`workspace` is a workspace.Opened, turned into the session
    on the UI thread) or a ready Workspace (tests, embedding)."""

    workspace: Any  # omdp_tui.workspace.Opened | Workspace (Any: avoids an import cycle)


@dataclass
class WorkspaceFailed(Message):
    """Opening a session or model failed; `error` is the one-line cause and fix."""

    error: str


@dataclass
class CandidatesChanged(Message):
    """The candidate set changed (graph screen); plan and ranking depend on it."""

    candidates: list[int]


@dataclass
class ProfileBatch(Message):
    """Profiling events coalesced over ~100 ms: results, progress, log lines."""

    events: list[Any]


@dataclass
class ProfileDone(Message):
    """The profiling job ended: finished, cancelled or failed (`error` says why)."""

    state: str
    error: str | None = None
    summary: Any = None  # backend.profiling.jobs.RunFinished when the run ended normally


@dataclass
class ConnectionChecked(Message):
    """Result of checking one device: its agent's hello, or the error."""

    device: str
    ok: bool
    detail: str


@dataclass
class LinksMeasured(Message):
    """The engine's link measurement finished: its ChainLinks, or the error."""

    found: Any = None
    error: str | None = None


@dataclass
class TraceLoaded(Message):
    """A trace was read and analysed (`playback`), or could not be (`error`)."""

    playback: Any  # omdp_tui.workspace.Playback | None
    error: str | None = None
    generation: int = 0  # which request this answers (older answers are dropped)
