"""The long-running processes of a lab (sshd per device, a relay per link).

They outlive `omdp lab up` (their own session, output to a log file in the lab's folder)
and are named by pid *and* kernel start time, so a recycled pid is never mistaken for
them and never signalled.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Proc:
    pid: int
    started: int  # clock ticks after boot (/proc/<pid>/stat field 22)

    def alive(self) -> bool:
        """Running (not a zombie) and still the process that was started."""
        info = stat(self.pid)
        return info is not None and info[1] == self.started and info[0] != "Z"


def stat(pid: int) -> tuple[str, int] | None:
    """(state, start time) of a pid, or None if there is no such process."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    except OSError:
        return None
    fields = text[text.rfind(")") + 2 :].split()  # the command name may hold spaces
    try:
        return fields[0], int(fields[19])
    except (IndexError, ValueError):
        return None


def spawn(argv: Sequence[str], log: Path) -> Proc:
    """Start `argv` detached from this process (own session, stdin closed, output appended
    to `log`)."""
    with open(log, "ab") as out:
        child = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    info = stat(child.pid)
    # Popen's handle is dropped on purpose: the process outlives this one (init reaps it).
    child.returncode = 0  # keeps Popen.__del__ from warning about a running child
    return Proc(child.pid, info[1] if info else 0)


def kill_all(pids: Iterable[int], grace_s: float = 1.0) -> list[int]:
    """SIGTERM, then SIGKILL after `grace_s`; the pids still there after that (none, unless
    stuck in the kernel)."""
    left = {p for p in pids if p > 1 and p != os.getpid()}
    for sig, wait in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 3.0)):
        for p in left:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(p, sig)
        deadline = time.monotonic() + wait
        while left and time.monotonic() < deadline:
            for p in left:
                _reap(p)
            left = {p for p in left if _exists(p)}
            if left:
                time.sleep(0.02)
        if not left:
            break
    return sorted(left)


def _exists(pid: int) -> bool:
    info = stat(pid)
    return info is not None and info[0] != "Z"


def _reap(pid: int) -> None:
    """Collect `pid` if it is an exited child of this process (spawned here), so it does not
    stay a zombie; any other pid is left alone."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)
