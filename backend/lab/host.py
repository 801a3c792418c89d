"""What the lab needs from this machine: root's network and cgroup rights, iproute2 and
OpenSSH's server. Each lack is one line naming it and the fix, before anything is made."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from backend.errors import OmdpError

# tool → the Debian/Ubuntu package that brings it
TOOLS = {
    "ip": "iproute2",
    "tc": "iproute2",
    "sshd": "openssh-server",
    "ssh-keygen": "openssh-client",
}
SBIN_DIRS = ("/usr/sbin", "/sbin", "/usr/local/sbin")  # not on every user's PATH
CAP_NET_ADMIN = 12
CAP_SYS_ADMIN = 21  # creating and entering network namespaces
NEEDED_CAPS = {CAP_NET_ADMIN: "CAP_NET_ADMIN", CAP_SYS_ADMIN: "CAP_SYS_ADMIN"}
PRIVSEP_DIR = Path("/run/sshd")  # sshd refuses to start without it


def tool(name: str) -> str | None:
    """The path of `name` on PATH or in the sbin folders, else None."""
    path = os.pathsep.join([os.environ.get("PATH", ""), *SBIN_DIRS])
    return shutil.which(name, path=path)


def require_tools() -> dict[str, str]:
    """Every tool the lab runs, by name → path; one line with the install command if any
    is missing."""
    found = {name: tool(name) for name in TOOLS}
    missing = [name for name, path in found.items() if path is None]
    if missing:
        packages = sorted({TOOLS[name] for name in missing})
        raise OmdpError(
            f"omdp lab needs {' and '.join(packages)} (no "
            f"{', '.join('`' + m + '`' for m in missing)} on this machine)",
            f"install: apt-get install -y {' '.join(packages)}",
        )
    return {name: path for name, path in found.items() if path is not None}


def effective_caps(status_text: str | None = None) -> int:
    """The effective capability bits of this process (from /proc/self/status)."""
    if status_text is None:
        try:
            status_text = Path("/proc/self/status").read_text(encoding="ascii")
        except OSError:
            return 0
    for line in status_text.splitlines():
        if line.startswith("CapEff:"):
            return int(line.split()[1], 16)
    return 0


def require_privileges(caps: int | None = None) -> None:
    """Root (or CAP_NET_ADMIN and CAP_SYS_ADMIN): else one line saying which is missing."""
    caps = effective_caps() if caps is None else caps
    missing = [name for bit, name in NEEDED_CAPS.items() if not caps >> bit & 1]
    if missing:
        raise OmdpError(
            f"omdp lab needs root: this process lacks {' and '.join(missing)} "
            "(network namespaces, traffic shaping, cgroups)",
            "run it as root (sudo omdp lab ...); the local-device demo "
            "(omdp demo) needs no privileges",
        )


def ensure_privsep_dir() -> None:
    """OpenSSH's privilege-separation folder, which a container may lack (left in place:
    the system's sshd uses it too)."""
    PRIVSEP_DIR.mkdir(mode=0o755, exist_ok=True)
