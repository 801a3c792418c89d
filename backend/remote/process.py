"""One program running on a device, local or over SSH, seen the same way by the lab.

Whatever the program (the agent under its guard, the probe, a link helper), the lab
writes bytes to it, reads bytes from it and, when it must, kills it — and killing means
its whole process group, so nothing it started outlives it:

- `LocalProcess`: a subprocess in a new session (its own process group), killed with
  `killpg`;
- `SshProcess`: an SSH exec; killed with `kill -9 -PGID` run on the device (and a
  `signal` channel request, which OpenSSH delivers with killpg where it can), and by
  closing the channel, which every program OMDP ships watches for (EOF on stdin).

`LineReader` reads lines with a bound on their length (a device choosing to send a
gigabyte without a newline gets an error, not the lab's memory), and `StderrTail` keeps
the last few lines of a program's log, each bounded.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import re
import signal
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from backend.text import inert

CHUNK = 1 << 16
PGID_MARK = b"OMDP-PGID "
KILL_TIMEOUT_S = 5.0


class LineTooLong(ValueError):
    """A line longer than the reader's bound."""


class DeviceProcess(Protocol):
    """What the lab can do with a program running on a device."""

    async def write(self, data: bytes) -> None: ...

    async def write_eof(self) -> None: ...

    async def read(self, n: int) -> bytes:
        """Up to n bytes of its stdout; b"" at EOF."""
        ...

    async def read_stderr(self, n: int) -> bytes: ...

    def kill(self) -> None:
        """End it and its process group now."""
        ...

    def signal(self, sig: int) -> None:
        """Send `sig` to its process group (SIGTERM: the agent stops between runs)."""
        ...

    async def wait(self, timeout: float) -> int | None:
        """Its exit status, or None if it is still running after `timeout` s (or was killed
        by a signal)."""
        ...


class LineReader:
    """Lines and exact byte counts from a `read(n)` coroutine, each line at most `limit`
    bytes (its newline included)."""

    def __init__(self, read: Callable[[int], Awaitable[bytes]], limit: int):
        self._read = read
        self.limit = limit
        self._buf = bytearray()
        self._eof = False

    async def _fill(self) -> bool:
        if self._eof:
            return False
        chunk = await self._read(CHUNK)
        if not chunk:
            self._eof = True
            return False
        self._buf += chunk
        return True

    async def readline(self) -> bytes | None:
        """The next complete line (with its newline); None at EOF. A last line without a
        newline (the program died mid-write) is not a message: it is dropped."""
        scanned = 0
        while True:
            nl = self._buf.find(b"\n", scanned)
            if nl >= 0:
                line = bytes(self._buf[: nl + 1])
                del self._buf[: nl + 1]
                return line
            scanned = len(self._buf)
            if scanned > self.limit:
                raise LineTooLong(f"a line longer than {self.limit} bytes")
            if not await self._fill():
                self._buf.clear()
                return None

    async def readexactly(self, n: int) -> bytes:
        while len(self._buf) < n:
            if not await self._fill():
                raise EOFError(f"the program ended {n - len(self._buf)} bytes short")
        data = bytes(self._buf[:n])
        del self._buf[:n]
        return data

    async def discard(self, n: int) -> None:
        """Read and drop n bytes."""
        while n > 0:
            if not self._buf and not await self._fill():
                raise EOFError(f"the program ended {n} bytes short")
            k = min(n, len(self._buf))
            del self._buf[:k]
            n -= k


class StderrTail:
    """The last `lines` lines a program wrote on stderr, each at most `width` characters,
    inert (they are shown to people)."""

    def __init__(self, lines: int = 40, width: int = 500):
        self.lines: collections.deque[str] = collections.deque(maxlen=lines)
        self.width = width
        self._partial = b""

    async def drain(self, read: Callable[[int], Awaitable[bytes]]) -> None:
        with contextlib.suppress(Exception):  # a broken pipe ends the log, nothing else
            while chunk := await read(CHUNK):
                self.feed(chunk)
        if self._partial:
            self.lines.append(self._decode(self._partial))
            self._partial = b""

    def feed(self, chunk: bytes) -> None:
        *complete, self._partial = (self._partial + chunk).split(b"\n")
        for line in complete:
            self.lines.append(self._decode(line))
        if len(self._partial) > 4 * self.width:
            self.lines.append(self._decode(self._partial))
            self._partial = b""

    def _decode(self, line: bytes) -> str:
        return inert(line[: 4 * self.width].decode("utf-8", "replace").rstrip(), self.width)

    def clear(self) -> None:
        self.lines.clear()
        self._partial = b""

    def text(self) -> str:
        return "\n".join(self.lines)

    def last(self) -> str:
        return next((line for line in reversed(self.lines) if line.strip()), "")


class LocalProcess:
    """A program on this machine, in its own session (so its own process group): a Ctrl-C
    in the terminal reaches the lab, which decides what to stop."""

    def __init__(self, proc: asyncio.subprocess.Process):
        self.proc = proc
        self.pid = proc.pid

    @classmethod
    async def start(
        cls, argv: list[str], env: dict[str, str] | None = None, cwd: str | None = None
    ) -> LocalProcess:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env,
            cwd=cwd,
            start_new_session=True,
        )
        return cls(proc)

    async def write(self, data: bytes) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(data)
        await self.proc.stdin.drain()

    async def write_eof(self) -> None:
        stdin = self.proc.stdin
        if stdin is not None and not stdin.is_closing():
            stdin.close()
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                await stdin.wait_closed()

    async def read(self, n: int) -> bytes:
        assert self.proc.stdout is not None
        return await self.proc.stdout.read(n)

    async def read_stderr(self, n: int) -> bytes:
        assert self.proc.stderr is not None
        return await self.proc.stderr.read(n)

    def signal(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, sig)

    def kill(self) -> None:
        self.signal(signal.SIGKILL)

    async def wait(self, timeout: float) -> int | None:
        try:
            return await asyncio.wait_for(self.proc.wait(), timeout)
        except TimeoutError:
            return None


class SshProcess:
    """A program run by one SSH exec (binary streams).

    The command runs after `echo OMDP-PGID $$ >&2` in the device's login shell, so the lab
    learns the process group the exec runs in (sshd makes each session a process group; a
    non-interactive shell keeps its commands in it). `kill` asks sshd to signal the group
    (OpenSSH does, for non-root logins), runs `kill -9 -PGID` on the device over the same
    connection (which works with any sshd), and closes the channel.
    """

    def __init__(self, process: Any, conn: Any):  # asyncssh.SSHClientProcess, -Connection
        self.process = process
        self.conn = conn
        self.pgid: int | None = None
        self._head = b""
        self._head_done = False
        self._reaper: asyncio.Future[None] | None = None

    @classmethod
    async def start(cls, conn: Any, command: str) -> SshProcess:
        wrapped = f"echo {PGID_MARK.decode()}$$ >&2; {command}"
        return cls(await conn.create_process(wrapped, encoding=None), conn)

    async def write(self, data: bytes) -> None:
        self.process.stdin.write(data)
        await self.process.stdin.drain()

    def write_nowait(self, data: bytes) -> None:
        """Queue bytes for the channel without waiting (for synchronous callers)."""
        with contextlib.suppress(Exception):  # the channel may be gone already
            self.process.stdin.write(data)

    async def write_eof(self) -> None:
        with contextlib.suppress(Exception):
            self.process.stdin.write_eof()

    async def read(self, n: int) -> bytes:
        data: bytes = await self.process.stdout.read(n)
        return data

    async def read_stderr(self, n: int) -> bytes:
        """Its stderr, minus the first line that names the process group."""
        while not self._head_done:
            chunk: bytes = await self.process.stderr.read(n)
            self._head += chunk
            if chunk and b"\n" not in self._head and len(self._head) < 256:
                continue
            self._head_done = True
            line, _, rest = self._head.partition(b"\n")
            match = re.fullmatch(rb"OMDP-PGID (\d{1,10})", line.strip())
            if match and int(match.group(1)) > 1:  # never 0 or 1: "all my processes"
                self.pgid = int(match.group(1))
                out = rest
            else:
                out = self._head
            self._head = b""
            if out or not chunk:
                return out
        data: bytes = await self.process.stderr.read(n)
        return data

    @property
    def exit_status(self) -> int | None:
        status: int | None = self.process.exit_status
        return status

    @property
    def exit_signal(self) -> object:
        return self.process.exit_signal

    def signal(self, sig: int) -> None:
        with contextlib.suppress(Exception):
            self.process.send_signal(signal.Signals(sig).name.removeprefix("SIG"))

    def kill(self) -> None:
        """End it and its process group on the device; `wait` completes the kill."""
        self.signal(signal.SIGKILL)
        if self._reaper is None and self.pgid is not None:
            self._reaper = asyncio.ensure_future(self._kill_group(self.pgid))
        with contextlib.suppress(Exception):
            self.process.stdin.write_eof()
        with contextlib.suppress(Exception):
            self.process.close()

    async def _kill_group(self, pgid: int) -> None:
        command = f"kill -9 -{pgid} 2>/dev/null || kill -9 {pgid} 2>/dev/null"
        with contextlib.suppress(Exception):  # the connection may be gone: nothing to do
            await asyncio.wait_for(self.conn.run(command), KILL_TIMEOUT_S)

    async def wait(self, timeout: float) -> int | None:
        if self._reaper is not None:
            await asyncio.wait([self._reaper], timeout=timeout)
        try:
            await asyncio.wait_for(self.process.wait_closed(), timeout)
        except (TimeoutError, OSError):
            return None
        except Exception:  # asyncssh errors: the connection went with it
            return None
        return self.exit_status
