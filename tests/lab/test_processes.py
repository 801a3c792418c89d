"""Processes the lab starts are named by pid and start time, and stopped for sure."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from backend.lab.processes import Proc, kill_all, spawn, stat


def started(log: Path) -> None:
    deadline = time.monotonic() + 20
    while "ready" not in log.read_text() and time.monotonic() < deadline:
        time.sleep(0.02)


def test_spawn_detached_and_kill(tmp_path: Path) -> None:
    log = tmp_path / "out.log"
    proc = spawn(
        [sys.executable, "-c", "import time; print('ready', flush=True); time.sleep(60)"], log
    )
    started(log)
    assert proc.alive()
    assert not Proc(proc.pid, proc.started + 1).alive()  # same pid, another process
    assert kill_all([proc.pid]) == []
    assert not proc.alive()


def test_kill_escalates_to_sigkill(tmp_path: Path) -> None:
    log = tmp_path / "out.log"
    proc = spawn(
        [
            sys.executable,
            "-c",
            "import signal, time; "
            "signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready', flush=True); "
            "time.sleep(60)",
        ],
        log,
    )
    started(log)
    assert kill_all([proc.pid], grace_s=0.2) == []
    assert not proc.alive()


def test_stat_of_a_missing_pid() -> None:
    assert stat(2**22 + 1) is None
    assert not Proc(2**22 + 1, 0).alive()
