"""A device problem, as the engine reports it."""

from __future__ import annotations

from backend.errors import OmdpError
from backend.text import inert


class RemoteError(OmdpError):
    """A device problem, one line, with a `kind` the caller can act on.

    kinds: dns, refused, timeout, unreachable, unknown-host, host-key-changed,
    host-key-revoked, auth, identity, lost, python, package, agent, upload, protocol,
    watchdog. Text the device chose is made inert here.
    """

    RETRYABLE = frozenset({"refused", "timeout", "unreachable", "lost", "bundle"})

    def __init__(self, device: str, kind: str, what: str, fix: str | None = None):
        self.device = device
        self.kind = kind
        super().__init__(inert(f"device '{device}': {what}", 4000), fix)

    @property
    def retryable(self) -> bool:
        return self.kind in self.RETRYABLE
