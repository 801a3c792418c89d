"""Connecting to a device over SSH: options, host-key verification, and one clear line for
each way a connection fails.

Host keys are always verified against known_hosts (strict): an unknown host, a changed
key or a revoked one stops with the exact command to act on it, never a silent accept.
Only key or ssh-agent auth is offered, so no password is ever asked for or stored.
"""

from __future__ import annotations

import asyncio
import shlex
import socket
from pathlib import Path
from typing import Any

import asyncssh

from backend.remote.errors import RemoteError
from backend.remote.target import SshTarget

HOST_KEY_STATES = {
    "unknown-host": "unknown",
    "host-key-changed": "changed",
    "host-key-revoked": "revoked",
}


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


async def _presented_key(target: SshTarget) -> Any:
    """The host key the server presents now (asyncssh.SSHKey), or None."""
    try:
        return await asyncio.wait_for(
            asyncssh.get_server_host_key(target.host, target.port or 22, config=[]),
            target.connect_timeout,
        )
    except (OSError, asyncssh.Error, TimeoutError):
        return None


def _trusted_entries(target: SshTarget) -> bool:
    """Does known_hosts trust any key (or CA) for this host? Then a mismatch is a change."""
    path = Path(target.known_hosts).expanduser()
    if not path.is_file():
        return False
    try:
        addr = str(socket.getaddrinfo(target.host, None)[0][4][0])
    except OSError:
        addr = ""
    try:
        trusted, ca, *_ = asyncssh.match_known_hosts(
            str(path), target.host, addr, target.port or 22
        )
    except (OSError, ValueError):
        return False
    return bool(trusted or ca)


def _revoked(target: SshTarget, key: Any) -> bool:
    """Is `key` marked @revoked in known_hosts? (Read here: asyncssh matches revoked
    entries only beside trusted ones.) Revoked for one host, it is refused for all."""
    path = Path(target.known_hosts).expanduser()
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return False
    for line in lines:
        parts = line.split()
        if len(parts) >= 4 and parts[0] == "@revoked":
            try:
                revoked = asyncssh.import_public_key(f"{parts[2]} {parts[3]}")
            except (asyncssh.KeyImportError, ValueError):
                continue
            if revoked.public_data == key.public_data:
                return True
    return False


async def _host_key_error(target: SshTarget) -> RemoteError:
    """Why the host key could not be verified: revoked, changed or unknown, with the fix."""
    known = str(Path(target.known_hosts).expanduser())
    port = target.port or 22
    spec = target.host if port == 22 else f"[{target.host}]:{port}"
    key = await _presented_key(target)
    fp = f"{key.get_algorithm()} {key.get_fingerprint()}" if key is not None else ""
    if key is not None and _revoked(target, key):
        return RemoteError(
            target.name,
            "host-key-revoked",
            f"the host key {target.label} presents ({fp}) is REVOKED in {known} "
            "(@revoked); refusing to connect",
            "the key was withdrawn on purpose: have the device's owner install a new host "
            "key, verify it, then trust it with ssh-keyscan",
        )
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


async def classify(target: SshTarget, exc: BaseException) -> RemoteError:
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
        raise await classify(target, exc) from None
