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
import re
import shlex
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from backend.device.probe import OLDEST_SUPPORTED
from backend.remote import compat
from backend.remote.errors import RemoteError
from backend.remote.process import DeviceProcess, LineReader, LineTooLong, StderrTail
from backend.remote.target import LocalTarget, SshTarget
from backend.text import inert, inert_data

PROBE_FILE = Path(__file__).resolve().parents[1] / "device" / "probe.py"
PROBE_MARK = "OMDP-PROBE "
PROBE_TIMEOUT_S = 60.0
MIN_PYTHON = OLDEST_SUPPORTED["python"]  # the device package keeps to Python 3.8
REQUIRED_PACKAGES = ("numpy",)  # onnx only for model mode: without it the lab cuts
RUNTIME_PACKAGES = {"onnxruntime": "onnxruntime", "openvino": "openvino"}
MAX_ANSWER_BYTES = 1 << 20


@dataclass(frozen=True)
class Wants:
    """What the chain will ask of a device: its runtime and the providers / OpenVINO
    device it names, and the model's opset and IR version (when a model is given)."""

    runtime: str | None = None
    providers: tuple[str, ...] = ()
    ov_device: str | None = None
    opset: int | None = None
    ir: int | None = None


@dataclass
class DeviceCheck:
    """What `omdp devices check` learns about one device."""

    name: str
    kind: str  # "ssh" | "local"
    address: str
    reachable: bool = False
    host_key: str = "-"  # "trusted" | "unknown" | "changed" | "revoked" | "-" (local)
    runtime: str | None = None  # the runtime the device is configured with
    facts: dict[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # worth knowing, not stopping a run
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
            "accelerators",
            "accelerator_error",
            "governor",
            "temp_c",
            "flag_risks",
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
    found = facts.get("accelerators", {})
    _want(type(found) is dict and len(found) <= 2, "accelerators", "an object", found)
    for name, names in found.items():
        _want(name in RUNTIME_PACKAGES, "accelerators", "a runtime's", name)
        _want(
            type(names) is list and len(names) <= 64 and all(_is_text(n, 200) for n in names),
            f"accelerators.{name}", "a list of names", names,
        )  # fmt: skip
    for key in ("accelerator_error", "governor"):
        _want(facts.get(key) is None or _is_text(facts.get(key), 400), key, "text", facts.get(key))
    temp = facts.get("temp_c")
    _want(
        temp is None or (type(temp) in (int, float) and -100 <= temp <= 400),
        "temp_c", "degrees Celsius", temp,
    )  # fmt: skip
    risks = facts.get("flag_risks", [])
    _want(
        type(risks) is list and len(risks) <= 16 and all(_is_text(r, 400) for r in risks),
        "flag_risks", "a list of text", risks,
    )  # fmt: skip
    return dict(inert_data(facts))


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number")


def _judge(
    check: DeviceCheck,
    facts: dict[str, Any],
    wants: Wants,
    install_prefix: Callable[[str], str],
    python: str,
) -> None:
    """Turn probe facts into problems (and notes) with the exact fix for this device."""
    runtime = wants.runtime
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
    facts["mode"], facts["mode_reason"] = compat.agent_mode(packages.get("onnx"))
    old = compat.too_old(packages) if version >= MIN_PYTHON else []
    if old:
        check.notes.append(
            f"device '{check.name}': older than the oldest supported stack ({', '.join(old)})"
            " — untested there; upgrade if it fails"
        )
    _judge_accelerators(check, facts, wants, install_prefix, python)
    if runtime == "onnxruntime" and wants.opset is not None:
        _judge_opset(check, packages.get("onnxruntime"), wants, install_prefix, python)
    for risk in facts.get("flag_risks", []):
        check.notes.append(f"device '{check.name}': measurements may be flagged: {risk}")


def _judge_accelerators(
    check: DeviceCheck,
    facts: dict[str, Any],
    wants: Wants,
    install_prefix: Callable[[str], str],
    python: str,
) -> None:
    """The providers / OpenVINO device the device is configured with must be there."""
    runtime = wants.runtime
    if runtime not in RUNTIME_PACKAGES or not facts["packages"].get(runtime):
        return
    if facts.get("accelerator_error"):
        check.problems.append(
            f"device '{check.name}': {runtime} does not load there "
            f"({facts['accelerator_error']}) — reinstall it: "
            f"{install_prefix(f'{python} -m pip install --force-reinstall {runtime}')}"
        )
        return
    have = (facts.get("accelerators") or {}).get(runtime)
    if have is None:
        return
    if runtime == "onnxruntime":
        lacking = [p for p in wants.providers or ("CPUExecutionProvider",) if p not in have]
        if lacking:
            check.problems.append(
                f"device '{check.name}': provider(s) {', '.join(lacking)} not available there "
                f"(available: {', '.join(have) or 'none'}) — install the onnxruntime build "
                "that has them, or change `providers`"
            )
    else:
        device = wants.ov_device or "CPU"
        real = {d.split(".")[0] for d in re.split(r"[:,]", device) if d}
        real -= {"AUTO", "MULTI", "HETERO", "BATCH"}
        if not real <= {d.split(".")[0] for d in have}:
            check.problems.append(
                f"device '{check.name}': OpenVINO device '{device}' not available there "
                f"(available: {', '.join(have) or 'none'}) — install its driver or change "
                "`ov_device`"
            )


def _judge_opset(
    check: DeviceCheck,
    version: str | None,
    wants: Wants,
    install_prefix: Callable[[str], str],
    python: str,
) -> None:
    """A model newer than this onnxruntime reads fails at load: say so now, with the fix."""
    if wants.opset is None:
        return
    problem = compat.opset_problem(version, wants.opset, wants.ir or 0)
    if problem is None:
        return
    need = compat.ort_upgrade_for(wants.opset, wants.ir or 0)
    spec = f"'onnxruntime>={need}'" if need else "--upgrade onnxruntime"
    upgrade = install_prefix(f"{python} -m pip install {spec}")
    check.problems.append(f"device '{check.name}': {problem}, or upgrade: {upgrade}")


def _probe_failure(name: str, python: str, status: int | None, stderr: str) -> str:
    tail = inert(stderr, 300) if stderr else f"exit status {status}"
    if status == 127:
        return (
            f"device '{name}': `{python}` not found there ({tail}) — install Python "
            f"{'.'.join(map(str, MIN_PYTHON))}+ or set `python` to its full path"
        )
    return f"device '{name}': the probe failed with `{python}`: {tail}"


# -- running the probe -----------------------------------------------------------------------


def probe_args(workdir: str, runtime: str | None = None) -> list[str]:
    """What follows the interpreter: the probe's source and its arguments (with the
    runtime whose providers / devices it should list)."""
    asked = ["--runtime", runtime] if runtime in RUNTIME_PACKAGES else []
    return ["-c", PROBE_FILE.read_text(), "--exit-with-stdin", *asked, workdir]


async def _run_probe(
    check: DeviceCheck,
    process: DeviceProcess,
    python: str,
    timeout: float,
    wants: Wants,
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
    _judge(check, facts, wants, install_prefix, python)


def _wants(runtime: str | Wants | None) -> Wants:
    return runtime if isinstance(runtime, Wants) else Wants(runtime)


async def check_ssh(
    target: SshTarget, runtime: str | Wants | None = None, timeout: float = PROBE_TIMEOUT_S
) -> DeviceCheck:
    """Connect, verify the host key, run the probe; problems carry their fix."""
    wants = _wants(runtime)
    import asyncssh

    from backend.remote.connection import HOST_KEY_STATES, classify, connect
    from backend.remote.process import SshProcess

    t0 = time.perf_counter()
    check = DeviceCheck(target.name, "ssh", target.label, runtime=wants.runtime)
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
        args = probe_args(target.workdir, wants.runtime)
        command = f"{target.python_cmd} {shlex.join(args)}"
        process = await SshProcess.start(conn, command)
        await _run_probe(check, process, target.python, timeout, wants, target.remote_command)
    except (asyncssh.Error, OSError) as exc:
        check.problems.append(str(await classify(target, exc)))
    finally:
        conn.close()
    check.seconds = time.perf_counter() - t0
    return check


async def check_local(
    target: LocalTarget, runtime: str | Wants | None = None, timeout: float = PROBE_TIMEOUT_S
) -> DeviceCheck:
    """The same probe as a subprocess on this machine."""
    wants = _wants(runtime)
    from backend.remote.process import LocalProcess

    t0 = time.perf_counter()
    check = DeviceCheck(target.name, "local", "local", reachable=True, runtime=wants.runtime)
    python = shlex.join(target.python_argv)
    try:
        process = await LocalProcess.start(
            [*target.python_argv, *probe_args(target.workdir, wants.runtime)]
        )
    except FileNotFoundError:
        check.problems.append(_probe_failure(target.name, python, 127, "not found"))
    except OSError as exc:
        check.problems.append(f"device '{target.name}': the probe failed: {inert(exc)}")
    else:
        await _run_probe(check, process, python, timeout, wants, lambda cmd: cmd)
    check.seconds = time.perf_counter() - t0
    return check


async def check_all(
    targets: Sequence[tuple[SshTarget | LocalTarget, str | Wants | None]],
    timeout: float = PROBE_TIMEOUT_S,
) -> list[DeviceCheck]:
    """Every device in parallel, in the given (chain) order."""

    async def one(target: SshTarget | LocalTarget, runtime: str | Wants | None) -> DeviceCheck:
        if isinstance(target, SshTarget):
            return await check_ssh(target, runtime, timeout)
        return await check_local(target, runtime, timeout)

    return list(await asyncio.gather(*(one(t, r) for t, r in targets)))
