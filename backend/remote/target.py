"""How to reach a device: the ssh fields of a `[[device]]` table, checked, as a target.

The one list of ssh fields (`SSH_FIELDS`) and their validation live here; this module
imports nothing heavy, so reading a devices file does not load SSH.
"""

from __future__ import annotations

import shlex
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from backend.errors import OmdpError
from backend.files import cache_root

DEFAULT_WORKDIR = "~/.cache/omdp"
DEFAULT_KNOWN_HOSTS = "~/.ssh/known_hosts"
DEFAULT_SSH_CONFIG = "~/.ssh/config"
CONNECT_TIMEOUT_S = 5.0

# Inventory keys an ssh device may carry (besides name/kind/runtime and runtime options).
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


@dataclass(frozen=True)
class LocalTarget:
    """A `local` device, probed like a remote one but as a subprocess on this machine."""

    name: str
    python: str = sys.executable
    workdir: str = field(default_factory=lambda: str(cache_root()))

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
        return LocalTarget(spec.name, python=spec.python or sys.executable)
    table = {"name": spec.name}
    for key in SSH_FIELDS:
        value = getattr(spec, key, None)
        if value is not None:
            table[key] = value
    where = f"{source}:{spec.line}: " if source and spec.line else (f"{source}: " if source else "")
    return ssh_fields_from_table(table, where)
