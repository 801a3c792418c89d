"""Who profiles a session: one profiler at a time; readers are never blocked.

Timings taken while two profilers share the CPUs are wrong, so a session records who is
profiling it: a `profiler` row in its `meta` table with the holder's host, pid, process
start time, since when, a heartbeat and a random token. The row is read and written in
SQLite write transactions, so two processes cannot both take it, on one machine or on
several sharing the file. A heartbeat thread refreshes it every HEARTBEAT_S.

A claim is stale, and may be taken over, when its holder is gone: on the same host (same
hostname and kernel boot) when its pid is dead or now another process; from another host,
whose processes we cannot see, when its heartbeat is older than STALE_S.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import secrets
import socket
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

KEY = "profiler"
HEARTBEAT_S = 5.0
STALE_S = 60.0


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def _start_ticks(pid: int) -> int | None:
    """When process `pid` started (clock ticks since boot), to tell a reused pid apart."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        if fields[0] == "Z":  # exited, not yet reaped: gone
            return -1
        return int(fields[19])
    except (OSError, IndexError, ValueError):
        return None


def _alive(pid: int, ticks: int | None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # another user's process: it exists
    now = _start_ticks(pid)
    if now == -1:
        return False
    return ticks is None or now is None or now == ticks


@dataclass(frozen=True)
class Holder:
    """The profiler that holds a session."""

    host: str
    boot: str
    pid: int
    ticks: int | None  # process start, from /proc (None where there is no /proc)
    since: str  # ISO time the claim was taken
    heartbeat: float  # seconds since the epoch, refreshed every HEARTBEAT_S
    token: str

    @classmethod
    def me(cls) -> Holder:
        pid = os.getpid()
        return cls(
            socket.gethostname(),
            _boot_id(),
            pid,
            _start_ticks(pid),
            dt.datetime.now().astimezone().isoformat(timespec="seconds"),
            time.time(),
            secrets.token_hex(8),
        )

    @classmethod
    def from_json(cls, text: str) -> Holder | None:
        """The holder a meta value describes; None when it is not a readable claim (a
        damaged claim holds nothing)."""
        try:
            d = json.loads(text)
            h = cls(
                str(d["host"]),
                str(d["boot"]),
                int(d["pid"]),
                None if d.get("ticks") is None else int(d["ticks"]),
                str(d["since"]),
                float(d["heartbeat"]),
                str(d["token"]),
            )
        except (ValueError, TypeError, KeyError, OverflowError):
            return None
        return h

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    def here(self) -> bool:
        return self.host == socket.gethostname() and self.boot == _boot_id()

    def stale(self, now: float | None = None) -> bool:
        if self.here():
            return not _alive(self.pid, self.ticks)
        return (now or time.time()) - self.heartbeat > STALE_S

    def describe(self, now: float | None = None) -> str:
        age = max(0.0, (now or time.time()) - self.heartbeat)
        return f"pid {self.pid} on {self.host} since {self.since} (last heartbeat {age:.0f} s ago)"


def read(conn: sqlite3.Connection) -> Holder | None:
    """The claim recorded in a session, if any (stale or not)."""
    row = conn.execute("SELECT value FROM meta WHERE key = ?", (KEY,)).fetchone()
    return Holder.from_json(row[0]) if row else None


def live_holder(conn: sqlite3.Connection) -> Holder | None:
    """The profiler holding the session now (None: free, or its holder is gone)."""
    h = read(conn)
    return None if h is None or h.stale() else h


def write(conn: sqlite3.Connection, holder: Holder) -> None:
    conn.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (KEY, holder.to_json()))


def release(conn: sqlite3.Connection, token: str) -> None:
    """Drop the claim if it is still `token`'s (inside the caller's transaction)."""
    conn.execute(
        "DELETE FROM meta WHERE key = ? AND json_valid(value) AND "
        "json_extract(value, '$.token') = ?",
        (KEY, token),
    )


class Heartbeat:
    """Refreshes a claim every HEARTBEAT_S on its own connection; notices a takeover."""

    def __init__(
        self,
        connect: Callable[[], sqlite3.Connection],
        token: str,
        on_lost: Callable[[], None] | None = None,
    ):
        self._connect = connect
        self._token = token
        self._on_lost = on_lost
        self._stop = threading.Event()
        self.lost = threading.Event()
        self._thread = threading.Thread(target=self._run, name="omdp-claim-heartbeat", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        conn = self._connect()
        try:
            while not self._stop.wait(HEARTBEAT_S):
                if not self._beat(conn):
                    self.lost.set()
                    if self._on_lost is not None:
                        self._on_lost()
                    return
        finally:
            conn.close()

    def _beat(self, conn: sqlite3.Connection) -> bool:
        try:
            with conn:
                cur = conn.execute(
                    "UPDATE meta SET value = json_set(value, '$.heartbeat', ?) WHERE key = ? "
                    "AND json_valid(value) AND json_extract(value, '$.token') = ?",
                    (time.time(), KEY, self._token),
                )
            return cur.rowcount == 1
        except sqlite3.Error:
            return True  # busy or a full disk: try again at the next beat
