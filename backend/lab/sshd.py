"""An OpenSSH server per device: its host key, its config, and the lab's client key.

Each device's `sshd` runs inside the device's namespace, listening on its management
address only, with its own host key (kept in the device's folder, so a lab brought up again
keeps the same keys and `known_hosts` stays valid). Keys only: no password, no PAM.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from backend.errors import OmdpError
from backend.files import atomic_write

HOST_KEY = "ssh_host_ed25519_key"


def keygen(path: Path, comment: str) -> None:
    """An ed25519 key pair at `path` and `path.pub`, unless one is there already. Made in a
    temporary folder beside it and renamed in, so a crash leaves no half key."""
    if path.is_file() and path.with_name(path.name + ".pub").is_file():
        return
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=".keygen-") as tmp:
        key = Path(tmp) / "key"
        try:
            subprocess.run(
                ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(key)],
                check=True,
                capture_output=True,
                timeout=30,
            )
        except (OSError, subprocess.SubprocessError) as exc:
            raise OmdpError(
                f"cannot make an SSH key at {path}: {exc}",
                "check that ssh-keygen (openssh-client) works",
            ) from None
        key.with_name("key.pub").replace(path.with_name(path.name + ".pub"))
        key.replace(path)


def public_key(path: Path) -> str:
    """`type base64` of a key pair's public half (the comment dropped)."""
    parts = path.with_name(path.name + ".pub").read_text().split()
    return " ".join(parts[:2])


def config_text(listen: str, port: int, folder: Path, authorized_keys: Path) -> str:
    """sshd_config for one device (paths quoted: the lab's folder may hold spaces)."""
    sftp = (
        shutil.which(
            "sftp-server", path="/usr/lib/openssh:/usr/libexec/openssh:/usr/lib/ssh:/usr/libexec"
        )
        or "internal-sftp"
    )
    return "\n".join(
        [
            f"ListenAddress {listen}:{port}",
            f'HostKey "{folder / HOST_KEY}"',
            f'AuthorizedKeysFile "{authorized_keys}"',
            f'PidFile "{folder / "sshd.pid"}"',
            "PermitRootLogin prohibit-password",
            "PubkeyAuthentication yes",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "UsePAM no",
            "StrictModes no",  # the lab's folder may sit in a shared /tmp
            "UseDNS no",
            "X11Forwarding no",
            "AllowTcpForwarding no",
            "PrintMotd no",
            "MaxStartups 32:50:64",
            "LogLevel ERROR",
            f"Subsystem sftp {sftp}",
            "",
        ]
    )


def write_config(folder: Path, listen: str, port: int, authorized_keys: Path) -> Path:
    path = folder / "sshd_config"
    atomic_write(path, config_text(listen, port, folder, authorized_keys), mode=0o600)
    return path


def argv(sshd: str, config: Path, log: Path) -> list[str]:
    """sshd in the foreground (so its pid is the one we started), logging to `log`."""
    return [sshd, "-D", "-f", str(config), "-E", str(log)]


def known_hosts_line(host: str, port: int, key: str) -> str:
    name = host if port == 22 else f"[{host}]:{port}"
    return f"{name} {key}"


def banner(host: str, port: int, timeout: float = 2.0) -> str | None:
    """The server's SSH banner ("SSH-2.0-…"), or None if nothing answers like sshd."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.settimeout(timeout)
            line = s.recv(256).split(b"\r\n")[0].decode("ascii", "replace")
    except OSError:
        return None
    return line if line.startswith("SSH-") else None


def wait_listening(host: str, port: int, alive: object, timeout: float = 10.0) -> bool:
    """Poll until sshd answers at host:port; False if `alive()` says it died first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if banner(host, port, 1.0):
            return True
        if callable(alive) and not alive():
            return False
        time.sleep(0.05)
    return False


def log_tail(log: Path, lines: int = 3) -> str:
    with contextlib.suppress(OSError):
        text = [ln for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
        return " / ".join(text[-lines:])
    return ""
