"""The agent over SSH: one exec per job, lines streamed back, a dropped connection resumed.

A job is one SSH exec (a login shell can cost ~0.4 s per command) of the agent under its
guard (backend/device/guard.py), which checks the uploaded files against their hash and
kills the agent's process group when the channel closes, so a cancel or a dropped
connection leaves nothing running. Each line is decoded strictly against the (sub-)job
it answers. A dropped connection is retried with exponential backoff and the job resumes
with the segments not yet answered: the caller sees one `hello`, each segment once and one
final `done` whose counts cover the whole job; no sample is lost or reported twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import shlex
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field, replace

import asyncssh

from backend.device.guard import BUNDLE_DAMAGED
from backend.device.protocol import (
    MAX_LINE_BYTES,
    Conversation,
    Done,
    Event,
    Hello,
    Job,
    NodeTimes,
    ProtocolError,
    Result,
    Segment,
    SegmentError,
)
from backend.files import file_sha256
from backend.remote.connection import classify, connect
from backend.remote.errors import RemoteError
from backend.remote.models import model_cache_dir
from backend.remote.parts import hello_mode, segments_job
from backend.remote.process import LineReader, LineTooLong, SshProcess, StderrTail
from backend.remote.store import RemoteStore, UploadStats, device_bundle
from backend.remote.target import SshTarget

BANNER_LINES = 20  # non-protocol lines tolerated before `hello` (a chatty login shell)


@dataclass(frozen=True)
class RetryPolicy:
    """Reconnect after a dropped connection: `attempts` tries without progress, waiting
    base, 2·base, 4·base … (capped) between them."""

    attempts: int = 5
    base_s: float = 0.5
    max_s: float = 8.0

    def delay(self, failures: int) -> float:
        return min(self.max_s, self.base_s * (2 ** max(0, failures - 1)))


@dataclass
class Ledger:
    """What a job has answered so far, across reconnects: decides which events pass on."""

    items: list[Segment]
    node_times: bool  # still owed a node_times answer
    answered: set[Segment] = field(default_factory=set)
    notes: set[str] = field(default_factory=set)  # job-level errors already passed on
    hello: bool = False
    completed: int = 0
    errors: int = 0
    stopped: bool = False

    def progress(self) -> int:
        return len(self.answered) + (not self.node_times)

    def sub_job(self, job: Job) -> Job | None:
        """The job for what is left, or None when nothing is."""
        left = [i for i in self.items if i not in self.answered]
        if not left and not self.node_times:
            return None
        return replace(job, items=left, node_times_runs=job.node_times_runs * self.node_times)

    def admit(self, event: Event) -> bool:
        """Record what `event` answers; False when the caller has seen it already."""
        if isinstance(event, Hello):
            first, self.hello = not self.hello, True
            return first
        if isinstance(event, Done):
            self.stopped = event.stopped
            return False  # one done for the whole job, made by the transport
        if isinstance(event, NodeTimes) or (
            isinstance(event, SegmentError) and event.kind == "node_times"
        ):
            first, self.node_times = self.node_times, False
            return first
        if isinstance(event, Result | SegmentError) and event.segment is not None:
            if event.segment in self.answered:
                return False
            self.answered.add(event.segment)
            self.completed += isinstance(event, Result)
            self.errors += isinstance(event, SegmentError)
            return True
        if isinstance(event, SegmentError):  # job-level (bad model, no runtime, inputs)
            note = f"{event.kind}:{event.message}"
            if note in self.notes:
                return False
            self.notes.add(note)
            self.errors += event.kind == "job"
        return True


class SshAgentTransport:
    """Runs agent jobs on one ssh device (see the module docstring).

    As an `AgentTransport`: `start(job)` connects (a wrong key or host fails here, before
    any job) and uploads what is missing; `next_event()` gives the checked events.
    `run(job)` is the same stream as an async iterator, for direct use.
    """

    def __init__(
        self,
        target: SshTarget,
        retry: RetryPolicy = RetryPolicy(),
        on_status: Callable[[str], None] | None = None,
    ):
        self.target = target
        self.retry = retry
        self.on_status = on_status or (lambda msg: None)
        self.description = f"ssh agent on {target.label}"
        self.conn: asyncssh.SSHClientConnection | None = None
        self.store: RemoteStore | None = None
        self.uploads = UploadStats()
        self.reconnects = 0
        self.exit_status: int | None = None  # of the last agent process
        self.stderr = StderrTail()  # its last log lines
        self._process: SshProcess | None = None
        self._cancelled = False
        self._stopping = False  # a stop was asked: a drop now ends the job, no resume
        self._events: asyncio.Queue[Event] = asyncio.Queue(maxsize=64)  # back-pressure
        self._pump: asyncio.Task[None] | None = None
        self._spawned = asyncio.Event()
        self._error: Exception | None = None
        self._cut: Job | None = None  # the job with its parts, cut once (segments mode)
        self.model_path: str | None = None  # the lab's copy of the model (to upload/cut)

    # -- connection and files ----------------------------------------------------------------

    async def open(self) -> None:
        """Connect now (a wrong key or host fails here, before any job)."""
        await self._ensure()

    async def _ensure(self) -> tuple[asyncssh.SSHClientConnection, RemoteStore]:
        if self.conn is not None and self.conn.is_closed():
            self.drop()
        if self.conn is None:
            conn = await connect(self.target)
            try:
                self.store = await RemoteStore.open(self.target, conn)
            except (asyncssh.Error, OSError) as exc:
                conn.close()
                raise await classify(self.target, exc) from None
            self.conn = conn
            self.store.stats = self.uploads
        assert self.store is not None
        return self.conn, self.store

    def drop(self) -> None:
        """Close the connection (the next job connects again)."""
        if self.store is not None:
            with contextlib.suppress(Exception):
                self.store.close()
        if self.conn is not None:
            self.conn.close()
        self.conn = self.store = None

    async def prepare(self, job: Job) -> tuple[str, Job]:
        """Upload what is missing but the model (which waits for the agent's hello: see
        `upload_model`); the agent folder and the job as the device sees it."""
        _, store = await self._ensure()
        try:
            agent_dir = await store.ensure_bundle(device_bundle())
            npy = {}
            for name, local in (job.npy or {}).items():
                digest = await asyncio.to_thread(file_sha256, local)
                npy[name] = await store.ensure_file(local, digest, "inputs", ".npy")
        except (asyncssh.Error, OSError) as exc:
            self.drop()
            raise await classify(self.target, exc) from None
        self.model_path = job.model_path or self.model_path
        return agent_dir, replace(job, model_path=None, npy=npy)

    async def upload_model(self, job: Job, mode: str | None) -> Job:
        """The whole model (model mode), or each segment the lab cut, once by content hash
        (segments mode: a device without onnx); the job as the device sees it."""
        assert self.store is not None
        try:
            if mode != "segments":
                await self.store.ensure_file(
                    self.model_path or "", job.model_sha256, "models", ".onnx"
                )
                return job
            if self._cut is None:  # once per job: a resumed sub-job reuses it
                self._cut = await segments_job(
                    replace(job, model_path=self.model_path), model_cache_dir()
                )
            cut = self._cut
            by_segment = {p.segment: p for p in cut.parts}
            parts = [by_segment[seg] for seg in dict.fromkeys(job.items)]
            whole = cut.profile_part if job.node_times_runs > 0 else None
            for part in [*parts, *([whole] if whole else [])]:
                await self.store.ensure_file(part.path or "", part.sha256, "models", ".onnx")
        except (asyncssh.Error, OSError) as exc:
            self.drop()
            raise await classify(self.target, exc) from None
        return replace(
            job,
            parts=[replace(p, path=None) for p in parts],
            profile_part=replace(whole, path=None) if whole else None,
            producers=cut.producers if whole else {},
        )

    def agent_command(self, agent_dir: str) -> str:
        assert self.store is not None
        py = self.target.python_cmd
        models = shlex.quote(self.store.path("models"))
        digest = device_bundle().digest
        return (
            f"cd {shlex.quote(agent_dir)} && exec {py} -u guard.py --bundle {digest} -- "
            f"{py} -u agent.py --cache {models}"
        )

    # -- one exec ----------------------------------------------------------------------------

    async def _attempt(self, job: Job) -> AsyncIterator[Event]:
        """One SSH exec of the agent: its checked events. Ends normally only after `done`;
        a drop raises RemoteError('lost'), a crash RemoteError('agent'), a line that breaks
        the protocol ProtocolError."""
        agent_dir, remote_job = await self.prepare(job)
        assert self.conn is not None
        try:
            process = await SshProcess.start(self.conn, self.agent_command(agent_dir))
        except (asyncssh.Error, OSError) as exc:
            self.drop()
            raise await classify(self.target, exc) from None
        self._process = process
        self._spawned.set()
        self.stderr.clear()
        drain = asyncio.create_task(self.stderr.drain(process.read_stderr))
        conversation = Conversation(remote_job, noise=BANNER_LINES)
        reader = LineReader(process.read, MAX_LINE_BYTES)
        done = False
        unsent: Job | None = remote_job  # sent once the hello said the agent's mode
        try:
            while (raw := await reader.readline()) is not None:
                line = raw.decode("utf-8", "replace")
                if unsent is not None and (mode := hello_mode(line)) is not None:
                    sent, unsent = await self.upload_model(unsent, mode), None
                    await process.write(sent.to_line().encode() + b"\n")
                event = conversation.feed(line)
                if event is not None:
                    done = isinstance(event, Done)
                    yield event
            await process.wait(5)
            await asyncio.wait([drain], timeout=1)
        except LineTooLong as exc:
            raise ProtocolError(str(exc)) from None
        except (asyncssh.Error, OSError) as exc:
            self.drop()
            raise await classify(self.target, exc) from None
        finally:
            self._process = None
            if not done:
                process.kill()
                await process.wait(2)
            drain.cancel()
        status = self.exit_status = process.exit_status
        if done or self._cancelled:
            return
        if status == BUNDLE_DAMAGED and self.store is not None:
            await self.store.remove_bundle(device_bundle())
            raise RemoteError(
                self.target.name,
                "bundle",
                "the agent files on the device did not match their hash: uploading them again",
            )
        if status is None or process.exit_signal is not None:
            self.drop()
            raise RemoteError(
                self.target.name,
                "lost",
                f"connection to {self.target.label} lost during the job",
                "the job resumes when the device is back",
            )
        tail = " | ".join(self.stderr.lines)[-400:] or "no output"
        raise RemoteError(
            self.target.name,
            "agent",
            f"the agent exited with status {status} before finishing: {tail}",
            "check the device with `omdp devices check`",
        )

    # -- the job -----------------------------------------------------------------------------

    async def run(self, job: Job) -> AsyncIterator[Event]:
        """The job's checked events; see the module docstring for the resume rules."""
        self._cancelled = self._stopping = False
        t0 = time.perf_counter()
        ledger = Ledger(list(job.items), job.node_times_runs > 0)
        failures = 0
        try:
            while (sub := ledger.sub_job(job)) is not None:
                before = ledger.progress()
                try:
                    async for event in self._attempt(sub):
                        if ledger.admit(event):
                            yield event
                    break  # the agent said done (finished, stopped, or the job failed)
                except RemoteError as exc:
                    if self._cancelled:
                        return
                    if self._stopping and exc.retryable:
                        ledger.stopped = True  # asked to stop anyway: do not resume
                        break
                    failures = 0 if ledger.progress() > before else failures + 1
                    if not exc.retryable:
                        raise
                    if failures >= self.retry.attempts:
                        raise RemoteError(
                            self.target.name,
                            exc.kind,
                            f"gave up after {failures} tries: {exc.what.split(': ', 1)[-1]}",
                            exc.fix,
                        ) from None
                    self.drop()
                    self.reconnects += 1
                    delay = self.retry.delay(failures or 1)
                    self.on_status(f"{exc.what}; reconnecting in {delay:g} s")
                    await asyncio.sleep(delay)
            if self._cancelled:
                return
            seconds = time.perf_counter() - t0
            yield Done(ledger.completed, ledger.errors, ledger.stopped, seconds)
        finally:
            if self._process is not None:  # the caller left early: stop the agent
                self.kill_now()

    # -- AgentTransport ------------------------------------------------------------------------

    async def start(self, job: Job) -> None:
        await self._ensure()
        self._pump = asyncio.create_task(self._feed(job))
        spawned = asyncio.create_task(self._spawned.wait())
        await asyncio.wait([spawned, self._pump], return_when=asyncio.FIRST_COMPLETED)
        spawned.cancel()
        if self._pump.done() and self._error is not None and self._events.empty():
            error, self._error = self._error, None
            raise error

    async def _feed(self, job: Job) -> None:
        try:
            async for event in self.run(job):
                await self._events.put(event)
        except (RemoteError, ProtocolError) as exc:
            self._error = exc
        finally:
            self.drop()  # the job is over: no connection stays open

    async def next_event(self) -> Event | None:
        """The next event; None (or the error that ended it) once the job is over."""
        while True:
            if not self._events.empty():
                return self._events.get_nowait()
            if self._pump is None or self._pump.done():
                if self._error is not None:
                    error, self._error = self._error, None
                    raise error
                return None
            getter = asyncio.ensure_future(self._events.get())
            await asyncio.wait([getter, self._pump], return_when=asyncio.FIRST_COMPLETED)
            if getter.done():
                return getter.result()
            getter.cancel()

    async def control(self, command: str) -> None:
        if command == "stop":
            self._stopping = True
        if self._process is not None:
            with contextlib.suppress(asyncssh.Error, OSError):
                await self._process.write(f"{command}\n".encode())

    def stop(self) -> None:
        self._stopping = True
        if self._process is not None:
            self._process.write_nowait(b"stop\n")

    def kill_now(self) -> None:
        """End the agent now: kill the remote process group, close the channel."""
        self._cancelled = True
        process, self._process = self._process, None
        if process is not None:
            process.kill()

    def kill(self) -> None:
        self.kill_now()
        if self._pump is not None:
            self._pump.cancel()

    async def cancel(self) -> None:
        self.kill_now()

    async def close_input(self) -> None:
        """EOF on the agent's stdin (through the guard): it stops after the current run."""
        self._stopping = True
        if self._process is not None:
            await self._process.write_eof()

    async def finish(self, timeout: float) -> int | None:
        await self.close_input()
        if self._pump is not None:
            done, _ = await asyncio.wait([self._pump], timeout=timeout)
            if not done:
                self.kill()
                await asyncio.wait([self._pump], timeout=2.0)
        self.drop()
        return self.exit_status

    async def close(self) -> None:
        self.kill()
        self.drop()

    def stderr_tail(self) -> str:
        return self.stderr.text()
