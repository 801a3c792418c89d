"""`omdp devices check`: can each device run the agent? One probe per device, all at once.

The probe (backend/device/probe.py, sent as `python -c`) runs with the device's own
python before anything is uploaded and answers one marked JSON line. The answer is the
device's word, so it is checked like any other (types, sizes, finite numbers) and shown
inert; a malformed answer is a problem of that device, with its fix. A probe that does not
finish in time is killed with its process group, on the device as here.
"""

from __future__ import annotations

import asyncio
import json
import shlex
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from backend.remote.errors import RemoteError
from backend.remote.process import DeviceProcess, LineReader, LineTooLong, StderrTail
from backend.remote.target import LocalTarget, SshTarget
from backend.text import inert, inert_data

PROBE_FILE = Path(__file__).resolve().parents[1] / "device" / "probe.py"
PROBE_MARK = "OMDP-PROBE "
PROBE_TIMEOUT_S = 60.0
MIN_PYTHON = (3, 10)  # segments.py uses zip(strict=True)
REQUIRED_PACKAGES = ("numpy", "onnx")
RUNTIME_PACKAGES = {"onnxruntime": "onnxruntime", "openvino": "openvino"}
MAX_ANSWER_BYTES = 1 << 20


@dataclass
class DeviceCheck:
    """What `omdp devices check` learns about one device."""

    name: str
    kind: str  # "ssh" | "local"
    address: str
    reachable: bool = False
    host_key: str = "-"  # "trusted" | "unknown" | "changed" | "revoked" | "-" (local)
    facts: dict[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.reachable and not self.problems

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}


# -- the answer ------------------------------------------------------------------------------


def _want(ok: bool, key: str, what: str, value: Any) -> None:
    if not ok:
        shown = json.dumps(value)[:60] if _jsonable(value) else type(value).__name__
        raise ValueError(f"`{key}` must be {what}, got {shown}")


def _jsonable(value: Any) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True


def _is_int(v: Any, lo: int, hi: int) -> bool:
    return type(v) is int and lo <= v <= hi


def _is_text(v: Any, limit: int = 4096) -> bool:
    return type(v) is str and len(v) <= limit


ANSWER_TEXT = ("python", "executable", "workdir", "hostname", "cpu", "machine", "os")


def parse_answer(line: str) -> dict[str, Any]:
    """The probe's facts from its marked line, checked; ValueError says what is wrong."""
    try:
        facts = json.loads(line[len(PROBE_MARK) :], parse_constant=_no_constant)
    except (ValueError, RecursionError) as exc:
        raise ValueError(f"not JSON ({type(exc).__name__})") from None
    _want(type(facts) is dict, "the answer", "an object", facts)
    unknown = sorted(
        set(facts)
        - {
            *ANSWER_TEXT,
            "version_info",
            "free_bytes",
            "workdir_error",
            "packages",
            "cores",
            "usable_cores",
        }
    )
    _want(not unknown, "the answer", "the probe's fields only", unknown[:3])
    for key in ANSWER_TEXT:
        _want(_is_text(facts.get(key)), key, "text", facts.get(key))
    version = facts.get("version_info")
    _want(
        type(version) is list and len(version) == 3 and all(_is_int(v, 0, 999) for v in version),
        "version_info", "[major, minor, micro]", version,
    )  # fmt: skip
    free = facts.get("free_bytes")
    _want(free is None or _is_int(free, 0, 2**63), "free_bytes", "a byte count", free)
    err = facts.get("workdir_error")
    _want(err is None or _is_text(err), "workdir_error", "text or null", err)
    for key in ("cores", "usable_cores"):
        v = facts.get(key)
        _want(v is None or _is_int(v, 1, 1 << 20), key, "a core count", v)
    packages = facts.get("packages")
    _want(type(packages) is dict and len(packages) <= 16, "packages", "an object", packages)
    for name, v in packages.items():
        _want(name in ("numpy", "onnx", "onnxruntime", "openvino"), "packages", "known", name)
        _want(v is None or _is_text(v, 200), f"packages.{name}", "a version or null", v)
    return dict(inert_data(facts))


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number")


def _judge(
    check: DeviceCheck,
    facts: dict[str, Any],
    runtime: str | None,
    install_prefix: Callable[[str], str],
    python: str,
) -> None:
    """Turn probe facts into problems with the exact fix for this device."""
    check.facts = facts
    version = tuple(facts["version_info"])
    if version < MIN_PYTHON:
        want = ".".join(map(str, MIN_PYTHON))
        check.problems.append(
            f"device '{check.name}': {python} is Python {facts['python']}, the agent needs "
            f"{want}+ — install Python {want}+ there and set `python` to it"
        )
    if facts.get("workdir_error"):
        check.problems.append(
            f"device '{check.name}': cannot use the work dir {facts['workdir_error']} — "
            "set `workdir` to a writable folder"
        )
    packages = facts["packages"]
    needed = [*REQUIRED_PACKAGES]
    if runtime in RUNTIME_PACKAGES:
        needed.append(RUNTIME_PACKAGES[runtime])
    missing = [p for p in needed if not packages.get(p)]
    if missing:
        cmd = install_prefix(f"{python} -m pip install {' '.join(missing)}")
        check.problems.append(
            f"device '{check.name}': {python} lacks {', '.join(missing)} — install: {cmd}"
        )


def _probe_failure(name: str, python: str, status: int | None, stderr: str) -> str:
    tail = inert(stderr, 300) if stderr else f"exit status {status}"
    if status == 127:
        return (
            f"device '{name}': `{python}` not found there ({tail}) — install Python "
            f"{'.'.join(map(str, MIN_PYTHON))}+ or set `python` to its full path"
        )
    return f"device '{name}': the probe failed with `{python}`: {tail}"


# -- running the probe -----------------------------------------------------------------------


def probe_args(workdir: str) -> list[str]:
    """What follows the interpreter: the probe's source and its arguments."""
    return ["-c", PROBE_FILE.read_text(), "--exit-with-stdin", workdir]


async def _run_probe(
    check: DeviceCheck,
    process: DeviceProcess,
    python: str,
    timeout: float,
    runtime: str | None,
    install_prefix: Callable[[str], str],
) -> None:
    """Read the probe's answer within `timeout` s (killing it after that) and judge it."""
    name = check.name
    stderr = StderrTail(lines=5, width=300)
    drain = asyncio.ensure_future(stderr.drain(process.read_stderr))
    reader = LineReader(process.read, MAX_ANSWER_BYTES)

    async def answer() -> tuple[str | None, int | None]:
        while (line := await reader.readline()) is not None:
            text = line.decode("utf-8", "replace").strip()
            if text.startswith(PROBE_MARK):
                await process.write_eof()
                return text, await process.wait(2)
        return None, await process.wait(2)

    try:
        line, status = await asyncio.wait_for(answer(), timeout)
    except TimeoutError:
        process.kill()
        await process.wait(2)
        check.problems.append(
            f"device '{name}': the probe did not answer within {timeout:g} s and was stopped "
            f"— is the device overloaded, or is `python` ({python}) not a Python interpreter?"
        )
        return
    except LineTooLong:
        process.kill()
        await process.wait(2)
        check.problems.append(
            f"device '{name}': the probe sent a line over {MAX_ANSWER_BYTES} bytes — is "
            f"`python` ({python}) a real Python interpreter?"
        )
        return
    finally:
        await asyncio.wait([drain], timeout=1)
        drain.cancel()
    if status is None:  # answered (or closed its output) but still running: not ours to keep
        process.kill()
        await process.wait(2)
    if line is None:
        check.problems.append(_probe_failure(name, python, status, stderr.last()))
        return
    try:
        facts = parse_answer(line)
    except ValueError as exc:
        check.problems.append(
            f"device '{name}': the probe's answer is malformed ({inert(exc, 200)}) — is "
            f"`python` ({python}) a real Python interpreter?"
        )
        return
    _judge(check, facts, runtime, install_prefix, python)


async def check_ssh(
    target: SshTarget, runtime: str | None = None, timeout: float = PROBE_TIMEOUT_S
) -> DeviceCheck:
    """Connect, verify the host key, run the probe; problems carry their fix."""
    import asyncssh

    from backend.remote.connection import HOST_KEY_STATES, classify, connect
    from backend.remote.process import SshProcess

    t0 = time.perf_counter()
    check = DeviceCheck(target.name, "ssh", target.label)
    try:
        conn = await connect(target)
    except RemoteError as exc:
        check.host_key = HOST_KEY_STATES.get(exc.kind, "-")
        check.problems.append(str(exc))
        check.seconds = time.perf_counter() - t0
        return check
    check.reachable, check.host_key = True, "trusted"
    try:
        # The work dir goes quoted; the probe expands `~` itself, on the device.
        command = f"{target.python_cmd} {shlex.join(probe_args(target.workdir))}"
        process = await SshProcess.start(conn, command)
        await _run_probe(check, process, target.python, timeout, runtime, target.remote_command)
    except (asyncssh.Error, OSError) as exc:
        check.problems.append(str(await classify(target, exc)))
    finally:
        conn.close()
    check.seconds = time.perf_counter() - t0
    return check


async def check_local(
    target: LocalTarget, runtime: str | None = None, timeout: float = PROBE_TIMEOUT_S
) -> DeviceCheck:
    """The same probe as a subprocess on this machine."""
    from backend.remote.process import LocalProcess

    t0 = time.perf_counter()
    check = DeviceCheck(target.name, "local", "local", reachable=True)
    python = shlex.join(target.python_argv)
    try:
        process = await LocalProcess.start([*target.python_argv, *probe_args(target.workdir)])
    except FileNotFoundError:
        check.problems.append(_probe_failure(target.name, python, 127, "not found"))
    except OSError as exc:
        check.problems.append(f"device '{target.name}': the probe failed: {inert(exc)}")
    else:
        await _run_probe(check, process, python, timeout, runtime, lambda cmd: cmd)
    check.seconds = time.perf_counter() - t0
    return check


async def check_all(
    targets: list[tuple[SshTarget | LocalTarget, str | None]],
    timeout: float = PROBE_TIMEOUT_S,
) -> list[DeviceCheck]:
    """Every device in parallel, in the given (chain) order."""

    async def one(target: SshTarget | LocalTarget, runtime: str | None) -> DeviceCheck:
        if isinstance(target, SshTarget):
            return await check_ssh(target, runtime, timeout)
        return await check_local(target, runtime, timeout)

    return list(await asyncio.gather(*(one(t, r) for t, r in targets)))
