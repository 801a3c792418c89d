"""The guard: runs the agent in its own process group and kills that group when the lab
goes away, so nothing outlives a job on a device.

`python -u guard.py --bundle DIGEST -- PROGRAM ARGS...` first checks that the files beside
it still hash to DIGEST (the name of the folder the lab uploaded them to: a damaged or
altered agent is never run; exit status BUNDLE_DAMAGED tells the lab to upload it again).
Then it starts PROGRAM in a new session and passes its stdin through. When its stdin
closes (the SSH channel went: a cancel, the lab crashing, the network dropping) it closes
the agent's stdin, allows it GRACE seconds to stop between runs, then SIGTERM and SIGKILL
to the whole group. SIGHUP/SIGTERM/SIGINT to the guard kill the group at once. The
agent's stdout and stderr are its own (unbuffered), so its lines reach the lab directly.

Stdlib only, no project imports: it runs as a plain file with the device's python.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import subprocess
import sys
import threading
import time

BUNDLE_DAMAGED = 86


def digest(files: list[tuple[str, bytes]]) -> str:
    """The hash that names a bundle: over (name, sha256 of bytes) of each file, sorted.
    `files` is a list of (name, bytes); the lab computes the same for what it uploads."""
    h = hashlib.sha256()
    for name, data in sorted(files):
        h.update(name.encode() + b"\0" + hashlib.sha256(data).digest())
    return h.hexdigest()[:24]


def folder_digest(folder: str) -> str:
    """The digest of the `.py` files in `folder` (what the lab uploaded there)."""
    files: list[tuple[str, bytes]] = []
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name)
        if name.endswith(".py") and os.path.isfile(path):
            with open(path, "rb") as f:
                files.append((name, f.read()))
    return digest(files)


def _pdeathsig() -> None:
    try:
        import ctypes

        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG: die with the guard
    except Exception:
        pass


def main(argv: list[str]) -> int:
    if len(argv) < 4 or argv[0] != "--bundle" or argv[2] != "--":
        sys.stderr.write("usage: guard.py --bundle DIGEST -- PROGRAM [ARGS...]\n")
        return 2
    here = os.path.dirname(os.path.abspath(__file__))
    if folder_digest(here) != argv[1]:
        sys.stderr.write(
            f"omdp-guard: the agent files in {here} do not match their hash {argv[1]}\n"
        )
        return BUNDLE_DAMAGED
    grace = float(os.environ.get("OMDP_GUARD_GRACE", "1.0"))
    proc = subprocess.Popen(
        argv[3:], stdin=subprocess.PIPE, start_new_session=True, preexec_fn=_pdeathsig
    )

    stdin = proc.stdin
    assert stdin is not None

    def killpg(sig: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)

    def pump() -> None:
        while True:  # raw reads: a buffered stdin held by this thread blocks exit
            try:
                data = os.read(0, 65536)
            except OSError:
                data = b""
            if not data:
                break
            try:
                stdin.write(data)
                stdin.flush()
            except (BrokenPipeError, OSError, ValueError):
                pass
        with contextlib.suppress(BrokenPipeError, OSError, ValueError):
            stdin.close()  # lab gone or done talking: the agent stops between runs
        deadline = time.monotonic() + grace
        while proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        killpg(signal.SIGTERM)
        time.sleep(0.5)
        killpg(signal.SIGKILL)

    def die(signum: int, frame: object) -> None:
        killpg(signal.SIGKILL)
        os._exit(128 + signum)

    for sig in (signal.SIGHUP, signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, die)
    threading.Thread(target=pump, daemon=True).start()
    code = proc.wait()
    killpg(signal.SIGKILL)  # stragglers the agent left in its group
    os._exit(code if code >= 0 else 128 - code)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
