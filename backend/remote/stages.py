"""Chain stages on devices, the lab's side: start `stage.py` where each device runs, with
what it needs uploaded by content hash, and read its events strictly.

A local device runs `python -m backend.device.stage` as a subprocess here (its own
process group); an ssh device runs the shipped `stage.py` under the guard (so nothing
outlives the run when the channel goes), after the device package, the model and the
input are uploaded where missing (backend/remote/store.py, as profiling does). A device
is never trusted: every event line is bounded, must be a JSON object of a known type
with the fields that type needs, of the right types; text from it is made inert.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from backend.errors import OmdpError
from backend.files import file_sha256
from backend.remote.process import DeviceProcess, LineReader, LineTooLong, StderrTail
from backend.remote.target import LocalTarget, SshTarget
from backend.text import inert

PROJECT_ROOT = Path(__file__).resolve().parents[2]
STAGE_FILE = "stage.py"
MAX_LINE_BYTES = 1 << 20
EVENT_TYPES: dict[str, dict[str, type]] = {
    "hello": {"pid": int},
    "listening": {"side": str, "port": int},
    "loaded": {"load_ms": float, "runtime": dict},
    "clock": {"offset_s": float, "rtt_s": float},
    "ready": {},
    "solo": {"ms": list},
    "frame": {"i": int},
    "output": {"t": list},
    "done": {},
    "error": {"message": str},
}
NUMBER_KINDS = "biuf"


class StageFailed(OmdpError):
    """A stage stopped the run: `device` names where."""

    def __init__(self, device: str, what: str, fix: str | None = None, phase: str = ""):
        self.device = device
        self.phase = phase  # "link": its neighbour went away (a consequence, not the cause)
        super().__init__(inert(f"device '{device}': {what}", 2000), fix)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number")


def _check(obj: Any, device: str) -> dict[str, Any]:
    if type(obj) is not dict or obj.get("type") not in EVENT_TYPES:
        raise StageFailed(device, "the stage sent a line that is not one of its events")
    for key, kind in EVENT_TYPES[obj["type"]].items():
        value = obj.get(key)
        ok = type(value) in ((int, float) if kind is float else (kind,))
        if kind is float and ok:
            ok = math.isfinite(float(value))  # type: ignore[arg-type]
        if not ok:
            raise StageFailed(device, f"the stage's {obj['type']} event has a bad {key}")
    if obj["type"] == "solo" and not all(
        type(v) in (int, float) and math.isfinite(v) and v >= 0 for v in obj["ms"][:1000]
    ):
        raise StageFailed(device, "the stage's solo times are malformed")
    if obj["type"] == "frame":
        for key in ("start", "recv", "end"):
            if key in obj and not _stamp(obj[key]):
                raise StageFailed(device, f"frame {obj['i']}: a bad {key} time")
        for key in ("compute", "send"):
            if key in obj and not (
                type(obj[key]) is list and len(obj[key]) == 2 and all(map(_stamp, obj[key]))
            ):
                raise StageFailed(device, f"frame {obj['i']}: bad {key} times")
    return obj


def _stamp(v: Any) -> bool:
    return type(v) in (int, float) and math.isfinite(v)


@dataclass
class StageProcess:
    """One running stage: its events in order, its output tensors when it is final."""

    device: str
    process: DeviceProcess
    max_output_bytes: int
    reader: LineReader = field(init=False)
    stderr: StderrTail = field(default_factory=lambda: StderrTail(lines=8, width=400))
    output: dict[str, np.ndarray] = field(default_factory=dict)
    _drain: asyncio.Future[None] | None = None

    def __post_init__(self) -> None:
        self.reader = LineReader(self.process.read, MAX_LINE_BYTES)
        self._drain = asyncio.ensure_future(self.stderr.drain(self.process.read_stderr))

    async def send(self, obj: dict[str, Any] | str) -> None:
        line = obj if isinstance(obj, str) else json.dumps(obj)
        await self.process.write(line.encode() + b"\n")

    async def event(self) -> dict[str, Any]:
        """The next checked event; StageFailed when the stage ends or says it failed."""
        try:
            raw = await self.reader.readline()
        except LineTooLong:
            raise StageFailed(self.device, f"a line over {MAX_LINE_BYTES} bytes") from None
        if raw is None:
            await asyncio.sleep(0.2)  # let its last log lines arrive
            last = self.stderr.last()
            raise StageFailed(
                self.device,
                "the stage ended before the run was over" + (f": {last}" if last else ""),
                "check the device with `omdp devices check`",
            )
        try:
            obj = json.loads(raw, parse_constant=_no_constant)
        except (ValueError, RecursionError):
            raise StageFailed(self.device, f"not a JSON event: {inert(raw[:80])}") from None
        event = _check(obj, self.device)
        if event["type"] == "error":
            phase = inert(event.get("phase", "?"), 20)
            raise StageFailed(
                self.device,
                f"failed ({phase}): {inert(event['message'], 500)}",
                phase=str(event.get("phase")),
            )
        if event["type"] == "output":
            await self._read_output(event["t"])
        return event

    async def _read_output(self, specs: list[Any]) -> None:
        total = 0
        for item in specs:
            if type(item) is not list or len(item) != 4:
                raise StageFailed(self.device, "a malformed output entry")
            name, dt, shape, nbytes = item
            try:
                dtype = np.dtype(str(dt))
            except TypeError:
                raise StageFailed(self.device, f"output {inert(name, 80)}: a bad dtype") from None
            if dtype.kind not in NUMBER_KINDS or type(shape) is not list or type(nbytes) is not int:
                raise StageFailed(self.device, f"output {inert(name, 80)}: a bad description")
            if not all(type(d) is int and d >= 0 for d in shape):
                raise StageFailed(self.device, f"output {inert(name, 80)}: a bad shape")
            if int(np.prod(shape, dtype=np.int64)) * dtype.itemsize != nbytes:
                raise StageFailed(self.device, f"output {inert(name, 80)}: sizes disagree")
            total += nbytes
            if total > self.max_output_bytes:
                raise StageFailed(self.device, "the output is larger than the model's")
            data = await self.reader.readexactly(nbytes)
            self.output[str(name)] = np.frombuffer(data, dtype).reshape(shape)

    async def finish(self, timeout: float = 5.0) -> None:
        with contextlib.suppress(OSError, ConnectionError):
            await self.process.write_eof()
        if await self.process.wait(timeout) is None:
            self.process.kill()
            await self.process.wait(2.0)
        if self._drain is not None:
            await asyncio.wait([self._drain], timeout=1.0)
            self._drain.cancel()

    def kill(self) -> None:
        self.process.kill()


class StageLauncher:
    """Connections, uploads and processes for the stages of one validation run."""

    def __init__(self, cache_dir: Path):
        self.cache_dir = cache_dir
        self._conns: dict[str, Any] = {}
        self._peer: dict[str, str] = {}

    async def address_of(self, target: SshTarget | LocalTarget) -> str:
        """How the other devices reach `target`: its `address`, else the IP the lab's
        connection reached; a local device: loopback."""
        if not isinstance(target, SshTarget):
            return "127.0.0.1"
        if target.address:
            return target.address
        await self._connection(target)
        return self._peer[target.name]

    async def _connection(self, target: SshTarget) -> Any:
        from backend.remote.connection import connect

        if target.name not in self._conns:
            conn = await connect(target)
            self._conns[target.name] = conn
            self._peer[target.name] = conn.get_extra_info("peername")[0]
        return self._conns[target.name]

    async def start(
        self,
        target: SshTarget | LocalTarget,
        job: dict[str, Any],
        model_file: Path,
        npy: dict[str, Path],
        max_output_bytes: int,
    ) -> StageProcess:
        """Start the stage on its device and send it `job` (completed here with where the
        model and input are on that device)."""
        from backend.remote.process import LocalProcess, SshProcess

        if isinstance(target, SshTarget):
            import asyncssh

            from backend.remote.connection import classify
            from backend.remote.store import RemoteStore, device_bundle

            conn = await self._connection(target)
            try:
                store = await RemoteStore.open(target, conn)
                try:
                    folder = await store.ensure_bundle(device_bundle())
                    await store.ensure_file(model_file, job["model_sha256"], "models", ".onnx")
                    remote_npy = {}
                    for name, local in npy.items():
                        digest = await asyncio.to_thread(file_sha256, local)
                        remote_npy[name] = await store.ensure_file(local, digest, "inputs", ".npy")
                    models = store.path("models")
                finally:
                    store.close()
                py = target.python_cmd
                cmd = (
                    f"cd {shlex.quote(folder)} && exec {py} -u guard.py --bundle "
                    f"{device_bundle().digest} -- {py} -u {STAGE_FILE} --cache "
                    f"{shlex.quote(models)}"
                )
                process: DeviceProcess = await SshProcess.start(conn, cmd)
            except (asyncssh.Error, OSError) as exc:
                raise await classify(target, exc) from None
            job = {**job, "model_path": None, "npy": remote_npy}
        else:
            env = dict(os.environ)
            env["PYTHONPATH"] = os.pathsep.join(
                [str(PROJECT_ROOT), *filter(None, [env.get("PYTHONPATH")])]
            )
            python = target.python_argv if target.python else [sys.executable]
            argv = [*python, "-m", "backend.device.stage", "--cache", str(self.cache_dir)]
            process = await LocalProcess.start(argv, env=env)
            job = {**job, "model_path": str(model_file), "npy": {k: str(v) for k, v in npy.items()}}
        stage = StageProcess(target.name, process, max_output_bytes)
        await stage.send(job)
        return stage

    def close(self) -> None:
        for conn in self._conns.values():
            conn.close()
        self._conns.clear()
