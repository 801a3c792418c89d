"""Remote devices over SSH: inventory fields, connecting, checks, upload by hash, agent runs.

Why it looks the way it does:
- host keys are always verified (known_hosts, strict): an unknown host or a changed key
  stops with the exact command to trust it, never a silent accept; only key or ssh-agent
  auth is offered, so no password is ever asked for or stored;
- `~` in a device's work dir is resolved on the device (by the probe or SFTP), then every
  remote path is absolute and passed through `shlex.quote`;
- the agent files and the model are uploaded under their content hash
  (`<workdir>/agent/<hash>/`, `<workdir>/models/<sha256>.onnx`) via a temporary name and a
  rename, so a present path is a complete file and a second session uploads nothing;
- a job is one SSH exec (a login shell can cost ~0.4 s per command) whose JSON lines are
  streamed as they come; the agent runs under a small guard that kills its process group
  when the channel closes, so a cancel or a dropped connection leaves nothing running;
- a dropped connection is retried with exponential backoff and the job resumes with the
  segments not yet answered: no sample is lost or reported twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import inspect
import json
import os
import secrets
import shlex
import socket
import sys
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import asyncssh

from backend.errors import OmdpError

if TYPE_CHECKING:  # the agent module imports numpy and onnx: only for type hints here
    from backend.device.agent import Job

DEFAULT_WORKDIR = "~/.cache/omdp"
DEFAULT_KNOWN_HOSTS = "~/.ssh/known_hosts"
DEFAULT_SSH_CONFIG = "~/.ssh/config"
CONNECT_TIMEOUT_S = 5.0
MIN_PYTHON = (3, 10)  # segments.py uses zip(strict=True)
REQUIRED_PACKAGES = ("numpy", "onnx")
RUNTIME_PACKAGES = {"onnxruntime": "onnxruntime", "openvino": "openvino"}
PROBE_MARK = "OMDP-PROBE "
PROBE_TIMEOUT_S = 60.0

# Inventory keys an ssh device may carry (besides name/kind/runtime/options).
SSH_FIELDS = (
    "host",
    "port",
    "user",
    "identity",
    "known_hosts",
    "ssh_config",
    "python",
    "workdir",
    "address",
    "connect_timeout",
)


# -- errors ----------------------------------------------------------------------------------


class RemoteError(OmdpError):
    """A device problem, one line, with a `kind` the caller can act on.

    kinds: dns, refused, timeout, unreachable, unknown-host, host-key-changed, auth,
    identity, lost, python, package, agent, upload.
    """

    RETRYABLE = frozenset({"refused", "timeout", "unreachable", "lost"})

    def __init__(self, device: str, kind: str, what: str, fix: str | None = None):
        self.device = device
        self.kind = kind
        super().__init__(f"device '{device}': {what}", fix)

    @property
    def retryable(self) -> bool:
        return self.kind in self.RETRYABLE


# -- inventory -------------------------------------------------------------------------------


@dataclass(frozen=True)
class SshTarget:
    """How to reach one ssh device. None means "let ~/.ssh/config (or SSH's default) say"."""

    name: str
    host: str
    port: int | None = None
    user: str | None = None
    identity: str | None = None
    known_hosts: str = DEFAULT_KNOWN_HOSTS
    ssh_config: str | None = DEFAULT_SSH_CONFIG
    python: str = "python3"
    workdir: str = DEFAULT_WORKDIR
    address: str | None = None  # how the chain's other devices reach it (links); def. host
    connect_timeout: float = CONNECT_TIMEOUT_S

    @property
    def python_argv(self) -> list[str]:
        return shlex.split(self.python)

    @property
    def python_cmd(self) -> str:
        """The interpreter as a shell-safe command prefix."""
        return shlex.join(self.python_argv)

    @property
    def label(self) -> str:
        """`user@host:port` as a person reads it."""
        user = f"{self.user}@" if self.user else ""
        return f"{user}{self.host}:{self.port or 22}"

    def ssh_prefix(self) -> str:
        """The `ssh ...` command a person would type to reach this device."""
        parts = ["ssh"]
        if self.port and self.port != 22:
            parts += ["-p", str(self.port)]
        if self.identity:
            parts += ["-i", self.identity]
        parts.append(f"{self.user}@{self.host}" if self.user else self.host)
        return shlex.join(parts)

    def remote_command(self, cmd: str) -> str:
        """`cmd` as one line to run on the device from the lab machine."""
        return f"{self.ssh_prefix()} {shlex.quote(cmd)}"


def local_workdir() -> str:
    """Where the local agent keeps its cache (the parent of agent.default_cache_dir)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "omdp")


@dataclass(frozen=True)
class LocalTarget:
    """A `local` device, probed like a remote one but as a subprocess on this machine."""

    name: str
    python: str = sys.executable
    workdir: str = field(default_factory=local_workdir)

    @property
    def python_argv(self) -> list[str]:
        return shlex.split(self.python)

    @property
    def label(self) -> str:
        return "local"


def _bad(where: str, name: str, key: str, want: str, got: Any) -> OmdpError:
    return OmdpError(
        f"{where}device '{name}': `{key}` must be {want}, got {got!r}",
        f"fix `{key}` in the [[device]] table",
    )


def ssh_fields_from_table(table: Mapping[str, Any], where: str = "") -> SshTarget:
    """The SshTarget of one `[[device]]` table with `kind = "ssh"`; errors name the device,
    the field and the place (`where`, e.g. "devices.toml: ")."""
    name = str(table.get("name") or "?")
    prefix = f"{where.rstrip(': ')}: " if where else ""

    def text(key: str, default: str | None, required: bool = False) -> str | None:
        value = table.get(key, default)
        if value is None:
            if required:
                raise OmdpError(
                    f"{prefix}device '{name}': ssh device needs `{key}`",
                    f'add e.g. {key} = "lab-pc.local" to its [[device]] table',
                )
            return None
        if not isinstance(value, str) or not value.strip():
            raise _bad(prefix, name, key, "a non-empty string", value)
        return value.strip()

    host = text("host", None, required=True)
    assert host is not None
    if any(c.isspace() for c in host) or host.startswith("-"):
        raise _bad(prefix, name, "host", "a host name or address", host)
    port = table.get("port")
    if port is not None and (
        isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535
    ):
        raise _bad(prefix, name, "port", "an integer in 1..65535", port)
    timeout = table.get("connect_timeout", CONNECT_TIMEOUT_S)
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not 0 < timeout <= 120:
        raise _bad(prefix, name, "connect_timeout", "seconds in (0, 120]", timeout)
    python = text("python", "python3")
    assert python is not None
    try:
        if not shlex.split(python):
            raise ValueError
    except ValueError:
        raise _bad(prefix, name, "python", "an interpreter command", python) from None
    identity = text("identity", None)
    if identity is not None and not Path(identity).expanduser().is_file():
        raise OmdpError(
            f"{prefix}device '{name}': identity file {identity} does not exist",
            "point `identity` at a private key, or remove it to use ssh-agent",
        )
    if "password" in table or "passphrase" in table:
        raise OmdpError(
            f"{prefix}device '{name}': passwords are not supported",
            "use a key (`identity`) or ssh-agent, and remove the password",
        )
    return SshTarget(
        name=name,
        host=host,
        port=port,
        user=text("user", None),
        identity=identity,
        known_hosts=text("known_hosts", DEFAULT_KNOWN_HOSTS) or DEFAULT_KNOWN_HOSTS,
        ssh_config=text("ssh_config", DEFAULT_SSH_CONFIG),
        python=python,
        workdir=text("workdir", DEFAULT_WORKDIR) or DEFAULT_WORKDIR,
        address=text("address", None),
        connect_timeout=float(timeout),
    )


def target_from_spec(spec: Any, source: str | None = None) -> SshTarget | LocalTarget:
    """The probe/transport target of a `backend.chain.DeviceSpec` (types already checked
    there; the ssh fields are validated here, errors at `source:line`)."""
    if spec.kind != "ssh":
        return LocalTarget(spec.name)
    table = {"name": spec.name}
    for key in SSH_FIELDS:
        value = getattr(spec, key, None)  # fields devices.py does not know yet stay unset
        if value is not None:
            table[key] = value
    where = f"{source}:{spec.line}: " if source and spec.line else (f"{source}: " if source else "")
    return ssh_fields_from_table(table, where)


# -- connecting ------------------------------------------------------------------------------


def _known_hosts_arg(target: SshTarget) -> str | bytes:
    path = Path(target.known_hosts).expanduser()
    return str(path) if path.is_file() else b""  # missing file: nothing is trusted


def _connect_options(target: SshTarget) -> dict[str, Any]:
    opts: dict[str, Any] = {
        "known_hosts": _known_hosts_arg(target),
        "connect_timeout": target.connect_timeout,
        "password_auth": False,
        "kbdint_auth": False,  # keys or ssh-agent only
        "keepalive_interval": 10,
        "keepalive_count_max": 3,  # notice a dead link in ~30 s
    }
    config = Path(target.ssh_config).expanduser() if target.ssh_config else None
    opts["config"] = [str(config)] if config and config.is_file() else []
    if target.port:
        opts["port"] = target.port
    if target.user:
        opts["username"] = target.user
    if target.identity:
        opts["client_keys"] = [str(Path(target.identity).expanduser())]
    return opts


async def _host_key_fingerprint(target: SshTarget) -> str:
    """The SHA256 fingerprint the server presents now (for the message), or ''."""
    try:
        key = await asyncio.wait_for(
            asyncssh.get_server_host_key(target.host, target.port or 22, config=[]),
            target.connect_timeout,
        )
    except (OSError, asyncssh.Error, TimeoutError):
        return ""
    return f"{key.get_algorithm()} {key.get_fingerprint()}" if key else ""


def _trusted_entries(target: SshTarget) -> bool:
    """Does known_hosts hold any key for this host (then a mismatch is a changed key)?"""
    path = Path(target.known_hosts).expanduser()
    if not path.is_file():
        return False
    try:
        addr = socket.getaddrinfo(target.host, None)[0][4][0]
    except OSError:
        addr = ""
    try:
        trusted, ca, *_ = asyncssh.match_known_hosts(
            str(path), target.host, addr, target.port or 22
        )
    except (OSError, ValueError):
        return False
    return bool(trusted or ca)


async def _host_key_error(target: SshTarget) -> RemoteError:
    known = str(Path(target.known_hosts).expanduser())
    port = target.port or 22
    spec = target.host if port == 22 else f"[{target.host}]:{port}"
    fp = await _host_key_fingerprint(target)
    if _trusted_entries(target):
        now = f" (it now presents {fp})" if fp else ""
        return RemoteError(
            target.name,
            "host-key-changed",
            f"the host key of {target.label} has CHANGED since it was trusted in {known}"
            f"{now}; refusing to connect (this can be an attack)",
            f"if the device was reinstalled, verify the new key, then: ssh-keygen -R "
            f"{shlex.quote(spec)} -f {shlex.quote(known)} && ssh-keyscan -p {port} "
            f"{shlex.quote(target.host)} >> {shlex.quote(known)}",
        )
    presents = f" (it presents {fp})" if fp else ""
    return RemoteError(
        target.name,
        "unknown-host",
        f"host {target.label} is not in {known}{presents}: its key cannot be verified",
        f"check the fingerprint, then trust it: ssh-keyscan -p {port} "
        f"{shlex.quote(target.host)} >> {shlex.quote(known)}",
    )


async def _classify(target: SshTarget, exc: BaseException) -> RemoteError:
    """One specific line for each way a connection fails."""
    where = target.label
    if isinstance(exc, asyncssh.HostKeyNotVerifiable):
        return await _host_key_error(target)
    if isinstance(exc, asyncssh.PermissionDenied):
        key = target.identity or "your keys / ssh-agent"
        copy = ["ssh-copy-id"] + (["-i", target.identity] if target.identity else [])
        copy += [
            "-p",
            str(target.port or 22),
            f"{target.user}@{target.host}" if target.user else target.host,
        ]
        return RemoteError(
            target.name,
            "auth",
            f"{where} refused the key ({key}): authentication failed",
            f"install the public key on the device: {shlex.join(copy)}",
        )
    if isinstance(exc, asyncssh.KeyImportError | asyncssh.KeyEncryptionError):
        return RemoteError(
            target.name,
            "identity",
            f"cannot use identity {target.identity}: {exc}",
            f"if it has a passphrase, load it into ssh-agent (ssh-add "
            f"{target.identity}) and remove `identity`",
        )
    if isinstance(exc, socket.gaierror):
        return RemoteError(
            target.name,
            "dns",
            f"cannot resolve host name '{target.host}'",
            "check `host` (spelling, DNS, /etc/hosts or ~/.ssh/config)",
        )
    if isinstance(exc, ConnectionRefusedError):
        return RemoteError(
            target.name,
            "refused",
            f"connection refused by {where}",
            "is sshd running on the device, and is `port` right?",
        )
    if isinstance(exc, TimeoutError | asyncio.TimeoutError):
        return RemoteError(
            target.name,
            "timeout",
            f"no SSH answer from {where} within {target.connect_timeout:g} s",
            "is the device on, on this network, and the port open?",
        )
    if isinstance(exc, asyncssh.ConnectionLost | asyncssh.DisconnectError | EOFError):
        reason = str(getattr(exc, "reason", "") or exc)
        detail = "" if reason.lower() in ("", "connection lost") else f" ({reason})"
        return RemoteError(
            target.name,
            "lost",
            f"connection to {where} lost{detail}",
            "the device or network dropped it; try again",
        )
    if isinstance(exc, OSError):
        return RemoteError(
            target.name,
            "unreachable",
            f"{where} is unreachable: {exc.strerror or exc}",
            "check the network route to the device",
        )
    return RemoteError(target.name, "lost", f"SSH to {where} failed: {exc}")


async def connect(target: SshTarget) -> asyncssh.SSHClientConnection:
    """An authenticated connection, or a RemoteError saying exactly why not."""
    try:
        return await asyncio.wait_for(
            asyncssh.connect(target.host, **_connect_options(target)), target.connect_timeout + 1.0
        )
    except (OSError, asyncssh.Error, asyncssh.KeyImportError, TimeoutError, EOFError) as exc:
        raise await _classify(target, exc) from None


# -- the probe -------------------------------------------------------------------------------

# Runs with the device's python and nothing else (stdlib only, python >= 3.6 syntax), so it
# can say what is missing; prints one marked JSON line (login shells may print banners).
PROBE_SOURCE = r"""
import json, os, platform, shutil, socket, sys
wd = os.path.abspath(os.path.expanduser(sys.argv[1]))
out = {"python": platform.python_version(), "executable": sys.executable,
       "version_info": list(sys.version_info[:3]), "workdir": wd}
try:
    os.makedirs(wd, mode=0o700, exist_ok=True)
    os.chmod(wd, 0o700)
    out["free_bytes"] = shutil.disk_usage(wd).free
    out["workdir_error"] = None
except OSError as exc:
    out["free_bytes"] = None
    out["workdir_error"] = "%s: %s" % (wd, exc.strerror or exc)
try:
    from importlib import metadata, util
except ImportError:
    metadata = util = None
DISTS = {"numpy": ["numpy"], "onnx": ["onnx"],
         "onnxruntime": ["onnxruntime", "onnxruntime-gpu", "onnxruntime-openvino",
                         "onnxruntime-directml", "ort-nightly"],
         "openvino": ["openvino"]}
pk = {}
for mod, dists in DISTS.items():
    if util is None or util.find_spec(mod) is None:
        pk[mod] = None
        continue
    pk[mod] = "?"
    for d in dists:
        try:
            pk[mod] = metadata.version(d)
            break
        except Exception:
            pass
out["packages"] = pk
cpu = platform.processor() or platform.machine()
try:
    with open("/proc/cpuinfo") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key.strip() in ("model name", "Hardware", "Model", "cpu model"):
                cpu = value.strip()
                break
except OSError:
    pass
try:
    usable = len(os.sched_getaffinity(0))
except (AttributeError, OSError):
    usable = None
out.update(hostname=socket.gethostname(), cpu=cpu, cores=os.cpu_count(), usable_cores=usable,
           machine=platform.machine(), os=platform.platform())
print("OMDP-PROBE " + json.dumps(out), flush=True)
"""


@dataclass
class DeviceCheck:
    """What `omdp devices check` learns about one device."""

    name: str
    kind: str  # "ssh" | "local"
    address: str
    reachable: bool = False
    host_key: str = "-"  # "trusted" | "unknown" | "changed" | "-" (not checked / local)
    facts: dict[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.reachable and not self.problems

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}


def _parse_probe(stdout: str) -> dict[str, Any] | None:
    for line in stdout.splitlines():
        if line.startswith(PROBE_MARK):
            try:
                return json.loads(line[len(PROBE_MARK) :])
            except json.JSONDecodeError:
                return None
    return None


def _judge(
    check: DeviceCheck,
    facts: dict[str, Any],
    runtime: str | None,
    install_prefix: Callable[[str], str],
    python: str,
) -> None:
    """Turn probe facts into problems with the exact fix for this device."""
    check.facts = facts
    version = tuple(facts.get("version_info") or (0,))
    if version < MIN_PYTHON:
        want = ".".join(map(str, MIN_PYTHON))
        check.problems.append(
            f"device '{check.name}': {python} is Python {facts.get('python')}, the agent needs "
            f"{want}+ — install Python {want}+ there and set `python` to it"
        )
    if facts.get("workdir_error"):
        check.problems.append(
            f"device '{check.name}': cannot use the work dir {facts['workdir_error']} — "
            "set `workdir` to a writable folder"
        )
    packages = facts.get("packages") or {}
    needed = [*REQUIRED_PACKAGES]
    if runtime in RUNTIME_PACKAGES:
        needed.append(RUNTIME_PACKAGES[runtime])
    missing = [p for p in needed if not packages.get(p)]
    if missing:
        cmd = install_prefix(f"{python} -m pip install {' '.join(missing)}")
        check.problems.append(
            f"device '{check.name}': {python} lacks {', '.join(missing)} — install: {cmd}"
        )


async def check_ssh(target: SshTarget, runtime: str | None = None) -> DeviceCheck:
    """Connect, verify the host key, run the probe; problems carry their fix."""
    t0 = time.perf_counter()
    check = DeviceCheck(target.name, "ssh", target.label)
    try:
        conn = await connect(target)
    except RemoteError as exc:
        check.host_key = {"unknown-host": "unknown", "host-key-changed": "changed"}.get(
            exc.kind, "-"
        )
        check.problems.append(str(exc))
        check.seconds = time.perf_counter() - t0
        return check
    check.reachable, check.host_key = True, "trusted"
    try:
        # The work dir goes quoted; the probe expands `~` itself, on the device.
        cmd = f"{target.python_cmd} - {shlex.quote(target.workdir)}"
        result = await asyncio.wait_for(conn.run(cmd, input=PROBE_SOURCE), PROBE_TIMEOUT_S)
        facts = _parse_probe(str(result.stdout or ""))
        if facts is None:
            check.problems.append(
                _probe_failure(
                    target.name, target.python, result.exit_status, str(result.stderr or "")
                )
            )
        else:
            _judge(check, facts, runtime, target.remote_command, target.python)
    except TimeoutError:
        check.problems.append(
            f"device '{target.name}': the probe did not finish within {PROBE_TIMEOUT_S:g} s "
            f"— is the device overloaded? try: {target.remote_command(target.python + ' -V')}"
        )
    except (asyncssh.Error, OSError) as exc:
        check.problems.append(str(await _classify(target, exc)))
    finally:
        conn.close()
    check.seconds = time.perf_counter() - t0
    return check


def _probe_failure(name: str, python: str, status: int | None, stderr: str) -> str:
    tail = stderr.strip().splitlines()[-1] if stderr.strip() else f"exit status {status}"
    if status == 127:
        return (
            f"device '{name}': `{python}` not found there ({tail}) — install Python "
            f"{'.'.join(map(str, MIN_PYTHON))}+ or set `python` to its full path"
        )
    return f"device '{name}': the probe failed with `{python}`: {tail}"


async def check_local(target: LocalTarget, runtime: str | None = None) -> DeviceCheck:
    """The same probe as a subprocess on this machine."""
    t0 = time.perf_counter()
    check = DeviceCheck(target.name, "local", "local", reachable=True)
    python = shlex.join(target.python_argv)
    try:
        proc = await asyncio.create_subprocess_exec(
            *target.python_argv,
            "-",
            target.workdir,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(PROBE_SOURCE.encode()), PROBE_TIMEOUT_S)
    except FileNotFoundError:
        check.problems.append(_probe_failure(target.name, python, 127, "not found"))
    except (OSError, TimeoutError) as exc:
        check.problems.append(f"device '{target.name}': the probe failed: {exc}")
    else:
        facts = _parse_probe(out.decode(errors="replace"))
        if facts is None:
            check.problems.append(
                _probe_failure(target.name, python, proc.returncode, err.decode(errors="replace"))
            )
        else:
            _judge(check, facts, runtime, lambda cmd: cmd, python)
    check.seconds = time.perf_counter() - t0
    return check


async def check_all(
    targets: list[tuple[SshTarget | LocalTarget, str | None]],
) -> list[DeviceCheck]:
    """Every device in parallel, in the given (chain) order."""

    async def one(target: SshTarget | LocalTarget, runtime: str | None) -> DeviceCheck:
        if isinstance(target, SshTarget):
            return await check_ssh(target, runtime)
        return await check_local(target, runtime)

    return list(await asyncio.gather(*(one(t, r) for t, r in targets)))


# -- upload by content hash ------------------------------------------------------------------

# Runs the agent in its own process group and kills that group when its stdin closes (the
# channel closed: a cancel or a dropped connection), so nothing outlives the job. Control
# lines are passed on; the agent's stdout/stderr are its own (streamed unbuffered).
GUARD_SOURCE = r"""
import os, signal, subprocess, sys, threading, time

def _pdeathsig():
    try:
        import ctypes
        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG: die with the guard
    except Exception:
        pass

def main():
    grace = float(os.environ.get("OMDP_GUARD_GRACE", "1.0"))
    proc = subprocess.Popen(sys.argv[1:], stdin=subprocess.PIPE, start_new_session=True,
                            preexec_fn=_pdeathsig)

    def killpg(sig):
        try:
            os.killpg(proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def pump():
        while True:  # raw reads: a buffered stdin held by this thread blocks exit
            try:
                data = os.read(0, 65536)
            except OSError:
                data = b""
            if not data:
                break
            try:
                proc.stdin.write(data)
                proc.stdin.flush()
            except (BrokenPipeError, OSError, ValueError):
                pass
        try:
            proc.stdin.close()  # host gone or done talking: the agent stops between runs
        except (BrokenPipeError, OSError, ValueError):
            pass
        deadline = time.monotonic() + grace
        while proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        killpg(signal.SIGTERM)
        time.sleep(0.5)
        killpg(signal.SIGKILL)

    for sig in (signal.SIGHUP, signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda s, f: (killpg(signal.SIGKILL), os._exit(128 + s)))
    threading.Thread(target=pump, daemon=True).start()
    code = proc.wait()
    killpg(signal.SIGKILL)  # stragglers the agent left in its group
    os._exit(code if code >= 0 else 128 - code)

main()
"""

AGENT_FILES = ("agent.py", "runtimes.py", "segments.py")
GUARD_NAME = "omdp_guard.py"
LINK_HELPER_NAME = "omdp_link.py"


@dataclass(frozen=True)
class Bundle:
    """Files that go to one directory on a device, addressed by a hash of them all."""

    files: tuple[tuple[str, bytes], ...]

    @property
    def digest(self) -> str:
        h = hashlib.sha256()
        for name, data in sorted(self.files):
            h.update(name.encode() + b"\0" + hashlib.sha256(data).digest())
        return h.hexdigest()[:24]


@functools.cache
def link_helper_bundle() -> Bundle:
    """Just the link helper (links.py is stdlib-only at import, so it runs as-is)."""
    from backend.remote import links

    return Bundle(((LINK_HELPER_NAME, inspect.getsource(links).encode()),))


@functools.cache
def agent_bundle() -> Bundle:
    """agent.py, runtimes.py, segments.py, the guard and the link helper, read once per
    process: every device of a session runs the same agent even if the files change."""
    here = Path(__file__).resolve().parents[1] / "device"
    files = [(n, (here / n).read_bytes()) for n in AGENT_FILES]
    files.append((GUARD_NAME, GUARD_SOURCE.encode()))
    files += link_helper_bundle().files
    return Bundle(tuple(files))


def file_sha256(path: str | os.PathLike[str]) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@dataclass
class UploadStats:
    files: int = 0
    bytes: int = 0
    skipped: int = 0


class RemoteStore:
    """The device's work dir over one SFTP session: resolved, 0700, filled by hash."""

    def __init__(self, target: SshTarget, sftp: asyncssh.SFTPClient, workdir: str):
        self.target = target
        self.sftp = sftp
        self.workdir = workdir
        self.stats = UploadStats()

    @classmethod
    async def open(cls, target: SshTarget, conn: asyncssh.SSHClientConnection) -> RemoteStore:
        sftp = await conn.start_sftp_client()
        workdir = target.workdir
        if workdir == "~" or workdir.startswith("~/"):
            home = await sftp.realpath(".")  # SFTP starts in the login's home directory
            workdir = home.rstrip("/") + workdir[1:]
        store = cls(target, sftp, workdir)
        await store._mkdir(workdir)
        return store

    async def _mkdir(self, path: str) -> None:
        """Create (with parents) and make 0700: nothing we upload is for other users."""
        if not await self.sftp.isdir(path):
            await self.sftp.makedirs(
                path, attrs=asyncssh.SFTPAttrs(permissions=0o700), exist_ok=True
            )
        await self.sftp.chmod(path, 0o700)

    def path(self, *parts: str) -> str:
        return "/".join([self.workdir.rstrip("/"), *parts])

    async def _finish(self, tmp: str, final: str) -> None:
        """Rename into place; a concurrent uploader that won is fine (same content)."""
        try:
            await self.sftp.posix_rename(tmp, final)
        except asyncssh.SFTPError:
            try:
                await self.sftp.rename(tmp, final)
            except asyncssh.SFTPError:
                if not await self.sftp.exists(final):
                    raise
                with contextlib.suppress(asyncssh.SFTPError):
                    if await self.sftp.isdir(tmp):
                        await self.sftp.rmtree(tmp)
                    else:
                        await self.sftp.remove(tmp)

    async def ensure_bundle(self, bundle: Bundle) -> str:
        """`<workdir>/agent/<hash>/`, uploaded only if that directory is missing."""
        base = self.path("agent")
        final = f"{base}/{bundle.digest}"
        if await self.sftp.isdir(final):
            self.stats.skipped += 1
            return final
        await self._mkdir(base)
        tmp = f"{base}/.{bundle.digest}.{secrets.token_hex(4)}.tmp"
        await self.sftp.mkdir(tmp, attrs=asyncssh.SFTPAttrs(permissions=0o700))
        for name, data in bundle.files:
            async with self.sftp.open(f"{tmp}/{name}", "wb") as f:
                for i in range(0, len(data), 1 << 15):
                    await f.write(data[i : i + (1 << 15)])
            self.stats.files += 1
            self.stats.bytes += len(data)
        await self._finish(tmp, final)
        return final

    async def ensure_file(
        self, local: str | os.PathLike[str], sha256: str, folder: str, suffix: str
    ) -> str:
        """`<workdir>/<folder>/<sha256><suffix>`, uploaded only if missing.

        The local file must hash to `sha256` (checked before any upload).
        """
        base = self.path(folder)
        final = f"{base}/{sha256}{suffix}"
        if await self.sftp.exists(final):
            self.stats.skipped += 1
            return final
        if not local or not Path(local).is_file():
            raise RemoteError(
                self.target.name,
                "upload",
                f"{final} is not on the device and no local copy was given",
                "give the job the model's local path",
            )
        got = await asyncio.to_thread(file_sha256, local)
        if got != sha256:
            raise RemoteError(
                self.target.name,
                "upload",
                f"{local} has sha256 {got[:12]}…, the job says {sha256[:12]}…",
                "the file changed since the job was planned: plan again",
            )
        await self._mkdir(base)
        tmp = f"{base}/.{sha256}.{secrets.token_hex(4)}.part"
        await self.sftp.put(str(local), tmp)  # default block size: larger fails on OpenSSH
        await self.sftp.chmod(tmp, 0o600)
        await self._finish(tmp, final)
        self.stats.files += 1
        self.stats.bytes += Path(local).stat().st_size
        return final

    def close(self) -> None:
        self.sftp.exit()


# -- running the agent -----------------------------------------------------------------------


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
class _Ledger:
    """What a job has answered so far, across reconnects: decides which lines pass on."""

    items: list[tuple[int, int]]
    node_times: bool  # still owed a node_times answer
    answered: set[tuple[int, int]] = field(default_factory=set)
    notes: set[str] = field(default_factory=set)  # job-level errors already passed on
    hello: bool = False
    completed: int = 0
    errors: int = 0
    stopped: bool = False

    def remaining(self) -> list[tuple[int, int]]:
        return [i for i in self.items if i not in self.answered]

    def progress(self) -> int:
        return len(self.answered) + (not self.node_times)

    def sub_job(self, job: Job) -> Job | None:
        """The job for what is left, or None when nothing is."""
        left = self.remaining()
        if not left and not self.node_times:
            return None
        return replace(
            job,
            items=[list(i) for i in left],
            node_times_runs=job.node_times_runs if self.node_times else 0,
        )

    def admit(self, event: Mapping[str, Any]) -> bool:
        """Record what `event` answers; False when the caller has seen it already."""
        kind = event.get("type")
        seg = event.get("segment")
        seg = (int(seg[0]), int(seg[1])) if seg is not None else None
        if kind == "hello":
            first, self.hello = not self.hello, True
            return first
        if kind == "done":
            self.stopped = bool(event.get("stopped"))
            return False  # one done for the whole job, made by the transport
        if kind == "node_times" or (kind == "error" and event.get("kind") == "node_times"):
            first, self.node_times = self.node_times, False
            return first
        if kind in ("result", "error") and seg is not None and seg in self.items:
            if seg in self.answered:
                return False
            self.answered.add(seg)
            self.completed += kind == "result"
            self.errors += kind == "error"
            return True
        if kind == "error":  # job-level (bad model, no runtime, prefix inputs)
            note = f"{event.get('kind')}:{event.get('message')}"
            if note in self.notes:
                return False
            self.notes.add(note)
            self.errors += event.get("kind") == "job"
        return True


class SshTransport:
    """Runs agent jobs on one ssh device: the same shape as the local transport.

    `run(job)` yields the agent's JSON lines (str, newline-terminated) as they arrive. After
    a dropped connection it reconnects (RetryPolicy) and re-runs only the segments that had
    no `result`/`error` yet; the caller sees one `hello`, each segment once and one final
    `done` whose counts cover the whole job. `send(line)` passes a control line
    (pause/resume/stop); `cancel()` closes the channel (the guard kills the agent's group).
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
        self.conn: asyncssh.SSHClientConnection | None = None
        self.store: RemoteStore | None = None
        self.uploads = UploadStats()
        self.reconnects = 0
        self.exit_status: int | None = None  # of the last agent process
        self.stderr: deque[str] = deque(maxlen=40)  # its last log lines
        self._process: asyncssh.SSHClientProcess | None = None
        self._cancelled = False
        self._stopping = False  # a stop was asked: a drop now ends the job, no resume

    # connection and files

    async def open(self) -> None:
        """Connect now (a wrong key or host fails here, before any job)."""
        await self._ensure()

    async def _ensure(self) -> tuple[asyncssh.SSHClientConnection, RemoteStore]:
        if self.conn is not None and self.conn.is_closed():
            self._drop()
        if self.conn is None:
            conn = await connect(self.target)
            try:
                self.store = await RemoteStore.open(self.target, conn)
            except (asyncssh.Error, OSError) as exc:
                conn.close()
                raise await _classify(self.target, exc) from None
            self.conn = conn
            self.store.stats = self.uploads
        assert self.store is not None
        return self.conn, self.store

    def _drop(self) -> None:
        if self.store is not None:
            with contextlib.suppress(Exception):
                self.store.close()
        if self.conn is not None:
            self.conn.close()
        self.conn = self.store = None

    async def prepare(self, job: Job) -> tuple[str, dict[str, Any]]:
        """Upload what is missing; the agent directory and the job as the device sees it."""
        _, store = await self._ensure()
        try:
            agent_dir = await store.ensure_bundle(agent_bundle())
            await store.ensure_file(job.model_path or "", job.model_sha256, "models", ".onnx")
            npy = {}
            for name, local in (job.npy or {}).items():
                digest = await asyncio.to_thread(file_sha256, local)
                npy[name] = await store.ensure_file(local, digest, "inputs", ".npy")
        except (asyncssh.Error, OSError) as exc:
            self._drop()
            raise await _classify(self.target, exc) from None
        return agent_dir, {**asdict(job), "model_path": None, "npy": npy}

    def agent_command(self, agent_dir: str) -> str:
        assert self.store is not None
        py = self.target.python_cmd
        models = shlex.quote(self.store.path("models"))
        return (
            f"cd {shlex.quote(agent_dir)} && exec {py} -u {GUARD_NAME} "
            f"{py} -u agent.py --cache {models}"
        )

    # the job

    async def _attempt(self, job: Job) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        """One SSH exec of the agent: its complete lines with their events. Ends normally
        only after `done`; a drop raises RemoteError('lost'), a crash RemoteError('agent')."""
        agent_dir, remote_job = await self.prepare(job)
        assert self.conn is not None
        try:
            process = await self.conn.create_process(
                self.agent_command(agent_dir), encoding="utf-8", errors="replace"
            )
        except (asyncssh.Error, OSError) as exc:
            self._drop()
            raise await _classify(self.target, exc) from None
        self._process = process
        stderr = self.stderr
        stderr.clear()

        async def drain() -> None:
            with contextlib.suppress(asyncssh.Error, OSError):
                async for err_line in process.stderr:
                    stderr.append(err_line.rstrip())

        drain_task = asyncio.create_task(drain())
        done = False
        try:
            process.stdin.write(
                json.dumps({"type": "job", **remote_job}, separators=(",", ":")) + "\n"
            )
            while True:
                line = await process.stdout.readline()
                if not line.endswith("\n"):
                    break  # EOF, or a line cut short by a drop: not a message
                try:
                    event = json.loads(line)
                except json.JSONDecodeError:
                    continue  # not a protocol line (e.g. a login banner)
                if isinstance(event, dict):
                    done = done or event.get("type") == "done"
                    yield line, event
            with contextlib.suppress(asyncssh.Error, OSError, TimeoutError):
                await asyncio.wait_for(process.wait_closed(), 5)
            with contextlib.suppress(asyncssh.Error, OSError, TimeoutError):
                await asyncio.wait_for(drain_task, 1)
        except (asyncssh.Error, OSError) as exc:
            self._drop()
            raise await _classify(self.target, exc) from None
        finally:
            drain_task.cancel()
            self._process = None
            if not done:
                process.close()
        status = self.exit_status = process.exit_status
        if done or self._cancelled:
            return
        if status is None or process.exit_signal is not None:
            self._drop()
            raise RemoteError(
                self.target.name,
                "lost",
                f"connection to {self.target.label} lost during the job",
                "the job resumes when the device is back",
            )
        tail = " | ".join(stderr)[-400:] or "no output"
        raise RemoteError(
            self.target.name,
            "agent",
            f"the agent exited with status {status} before finishing: {tail}",
            "check the device with `omdp devices check`",
        )

    async def run(self, job: Job) -> AsyncIterator[str]:
        """Stream the job's lines; see the class docstring for the resume rules."""
        self._cancelled = self._stopping = False
        t0 = time.perf_counter()
        items = [(int(a), int(b)) for a, b in job.items]
        ledger = _Ledger(items, job.node_times_runs > 0)
        failures = 0
        try:
            while (sub := ledger.sub_job(job)) is not None:
                before = ledger.progress()
                try:
                    async for line, event in self._attempt(sub):
                        if ledger.admit(event):
                            yield line
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
                    self._drop()
                    self.reconnects += 1
                    delay = self.retry.delay(failures or 1)
                    self.on_status(f"{exc.what}; reconnecting in {delay:g} s")
                    await asyncio.sleep(delay)
            if self._cancelled:
                return
            yield (
                json.dumps(
                    {
                        "type": "done",
                        "completed": ledger.completed,
                        "errors": ledger.errors,
                        "stopped": ledger.stopped,
                        "seconds": time.perf_counter() - t0,
                    },
                    separators=(",", ":"),
                )
                + "\n"
            )
        finally:
            if self._process is not None:  # the caller left early: stop the agent
                await self.cancel()

    async def send(self, line: str) -> None:
        """A control line for the running agent: "pause", "resume" or "stop"."""
        if line.strip() in ("stop", '{"type":"stop"}'):
            self._stopping = True
        if self._process is not None:
            with contextlib.suppress(asyncssh.Error, OSError):
                self._process.stdin.write(line.rstrip("\n") + "\n")

    async def close_input(self) -> None:
        """EOF on the agent's stdin (through the guard): it stops after the current run."""
        self._stopping = True
        if self._process is not None:
            with contextlib.suppress(asyncssh.Error, OSError):
                self._process.stdin.write_eof()

    def cancel_now(self) -> None:
        """Stop now: close the channel; the guard on the device kills the agent's group."""
        self._cancelled = True
        proc, self._process = self._process, None
        if proc is not None:
            with contextlib.suppress(asyncssh.Error, OSError):
                proc.stdin.write_eof()
            proc.close()

    async def cancel(self) -> None:
        self.cancel_now()

    async def close(self) -> None:
        self.cancel_now()
        self._drop()


class DeviceUnavailable(ConnectionError):
    """A RemoteError as the OSError that `backend.profiling.jobs` reports per device."""


class SshAgentTransport:
    """`backend.profiling.jobs.Transport` for an ssh device, on top of SshTransport.

    start() connects (a bad key or host fails before any job); the first send() is the
    job line, whose model is uploaded if missing, and starts the stream; later sends are
    control lines. readline() gives the stream's lines (reconnects are invisible: one
    hello, each segment once, one done). Device failures surface as DeviceUnavailable.
    """

    def __init__(
        self,
        target: SshTarget,
        retry: RetryPolicy = RetryPolicy(),
        on_status: Callable[[str], None] | None = None,
    ):
        self.ssh = SshTransport(target, retry, on_status)
        self.description = f"ssh agent on {target.label}"
        self._lines: asyncio.Queue[str | None] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._error: RemoteError | None = None

    async def start(self) -> None:
        try:
            await self.ssh.open()
        except RemoteError as exc:
            raise DeviceUnavailable(str(exc)) from None

    async def send(self, line: str) -> None:
        if self._task is None:
            from backend.device.agent import Job

            job = Job.from_dict(json.loads(line))
            self._task = asyncio.create_task(self._pump(job))
        else:
            await self.ssh.send(line)

    async def _pump(self, job: Job) -> None:
        try:
            async for line in self.ssh.run(job):
                self._lines.put_nowait(line)
        except RemoteError as exc:
            self._error = exc
        finally:
            self.ssh._drop()  # the job is over: no connection stays open
            self._lines.put_nowait(None)

    async def readline(self) -> str | None:
        line = await self._lines.get()
        if line is None:
            self._lines.put_nowait(None)  # stay at EOF
            if self._error is not None:
                error, self._error = self._error, None
                raise DeviceUnavailable(str(error))
        return line

    async def close_input(self) -> None:
        await self.ssh.close_input()

    def terminate(self) -> None:
        """Like SIGTERM to the agent: stop between runs."""
        self.ssh._stopping = True
        if self.ssh._process is not None:
            with contextlib.suppress(asyncssh.Error, OSError):
                self.ssh._process.stdin.write("stop\n")

    def kill(self) -> None:
        self.ssh.cancel_now()

    async def wait(self, timeout: float) -> int | None:
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), timeout)
            except TimeoutError:
                return None
        self.ssh._drop()
        return self.ssh.exit_status if self.ssh.exit_status is not None else 0

    def stderr_tail(self) -> str:
        return "\n".join(self.ssh.stderr)


__all__ = [
    "AGENT_FILES",
    "DEFAULT_WORKDIR",
    "SSH_FIELDS",
    "Bundle",
    "DeviceCheck",
    "DeviceUnavailable",
    "LocalTarget",
    "RemoteError",
    "RemoteStore",
    "RetryPolicy",
    "SshAgentTransport",
    "SshTarget",
    "SshTransport",
    "UploadStats",
    "agent_bundle",
    "check_all",
    "check_local",
    "check_ssh",
    "connect",
    "file_sha256",
    "link_helper_bundle",
    "ssh_fields_from_table",
    "target_from_spec",
]
