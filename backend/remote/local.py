"""The agent as a subprocess of this machine: the transport of `local` devices."""

from __future__ import annotations

import asyncio
import os
import shlex
import signal
import sys
from pathlib import Path

from backend.device.protocol import (
    MAX_LINE_BYTES,
    Conversation,
    Event,
    Hello,
    Job,
    ProtocolError,
    decode,
    name_of,
)
from backend.remote.parts import hello_mode, segments_job
from backend.remote.process import LineReader, LineTooLong, LocalProcess, StderrTail

PROJECT_ROOT = Path(__file__).resolve().parents[2]
EXIT_GRACE_S = 3.0  # for an agent with no job to exit after its hello


class LocalTransport:
    """`python -m backend.device.agent --cache DIR` here, in its own process group (a
    Ctrl-C in the terminal reaches the profiler, which stops agents; a kill takes the
    whole group, whatever the program started)."""

    def __init__(self, cache_dir: str | os.PathLike[str], python: str = sys.executable):
        """`python`: the interpreter command (a device's `python`, e.g. a venv's)."""
        self.cache_dir = str(cache_dir)
        self.python = python
        self.description = "local agent"
        self.process: LocalProcess | None = None
        self._reader: LineReader | None = None
        self._conversation: Conversation | None = None
        self._stderr = StderrTail()
        self._drain: asyncio.Task[None] | None = None
        self._job: Job | None = None  # to send once the agent said hello

    async def _spawn(self) -> LocalProcess:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            [str(PROJECT_ROOT), *filter(None, [env.get("PYTHONPATH")])]
        )
        argv = [*shlex.split(self.python), "-m", "backend.device.agent", "--cache", self.cache_dir]
        self.process = process = await LocalProcess.start(argv, env=env)
        self.description = f"local agent pid {process.pid}"
        self._drain = asyncio.create_task(self._stderr.drain(process.read_stderr))
        self._reader = LineReader(process.read, MAX_LINE_BYTES)
        return process

    async def start(self, job: Job) -> None:
        """Start the agent; the job is sent once its hello says which mode it runs in
        (`next_event`), with the segments cut here for a device in segments mode."""
        await self._spawn()
        self._conversation = Conversation(job)
        self._job = job

    async def hello(self, timeout: float) -> Hello:
        """Start the agent with no job: it says hello (versions, host facts), and exits
        once `finish` closes its input.
        Raises ProtocolError for anything but a hello, TimeoutError, OSError."""
        await self._spawn()
        assert self._reader is not None
        try:
            raw = await asyncio.wait_for(self._reader.readline(), timeout)
        except LineTooLong as exc:
            raise ProtocolError(str(exc)) from None
        finally:
            await self.finish(EXIT_GRACE_S)
        if raw is None:
            tail = self.stderr_tail().strip().splitlines()[-1:] or ["no output"]
            raise ProtocolError(f"the agent said nothing: {tail[0]}")
        event = decode(raw)
        if not isinstance(event, Hello):
            raise ProtocolError(f"the agent's first line was {name_of(event)}, not hello")
        return event

    async def next_event(self) -> Event | None:
        assert self._reader is not None and self._conversation is not None
        while True:
            try:
                raw = await self._reader.readline()
            except LineTooLong as exc:
                raise ProtocolError(str(exc)) from None
            if raw is None:
                return None
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise ProtocolError("a line that is not UTF-8 text") from None
            if self._job is not None:
                await self._send_job(line)
            event = self._conversation.feed(line)
            if event is not None:
                return event

    async def _send_job(self, first_line: str) -> None:
        """The job, after the agent's first line (its hello, in a mode)."""
        job, self._job = self._job, None
        assert job is not None and self.process is not None
        if hello_mode(first_line) == "segments":
            job = await segments_job(job, Path(self.cache_dir))
        await self.process.write(job.to_line().encode() + b"\n")

    async def control(self, command: str) -> None:
        if self.process is not None:
            await self.process.write(f'{{"type":"{command}"}}\n'.encode())

    def stop(self) -> None:
        if self.process is not None:
            self.process.signal(signal.SIGTERM)

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()

    async def finish(self, timeout: float) -> int | None:
        process = self.process
        if process is None:
            return None
        await process.write_eof()
        code = await process.wait(timeout)
        if code is None:
            process.kill()
            await process.wait(2.0)
        else:
            process.kill()  # anything the agent left in its group
        if self._drain is not None:
            await asyncio.wait([self._drain], timeout=1.0)
            self._drain.cancel()
        return code

    def stderr_tail(self) -> str:
        return self._stderr.text()
