"""What the lab uploads to a device, addressed by content hash, and the store that holds it.

The device package (every file of backend/device/) goes to `<workdir>/agent/<digest>/`,
models to `<workdir>/models/<sha256>.onnx`, real inputs to `<workdir>/inputs/<sha256>.npy`:
each through a temporary name and a rename, so a present path is a complete file and a
second session uploads nothing. Folders are 0700 and files 0600. What is read back is
checked on the device: the guard hashes the agent's folder against its name before running
it, the agent's model cache verifies the model (backend/device/cache.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

import asyncssh

from backend.device.guard import digest
from backend.files import file_sha256
from backend.remote.errors import RemoteError
from backend.remote.target import SshTarget

DEVICE_PACKAGE = Path(__file__).resolve().parents[1] / "device"


@dataclass(frozen=True)
class Bundle:
    """Files that go to one folder on a device, named by a hash of them all."""

    files: tuple[tuple[str, bytes], ...]

    @property
    def digest(self) -> str:
        return digest(list(self.files))

    @property
    def names(self) -> list[str]:
        return sorted(name for name, _ in self.files)


def package_files(folder: Path = DEVICE_PACKAGE) -> list[Path]:
    """The files of the device package: every module in its folder, nothing else."""
    return sorted(p for p in folder.glob("*.py") if p.is_file())


@functools.cache
def device_bundle() -> Bundle:
    """The device package as it ships, read once per process: every device of a session
    runs the same agent even if the files change meanwhile."""
    return Bundle(tuple((p.name, p.read_bytes()) for p in package_files()))


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
            attrs = asyncssh.SFTPAttrs(permissions=0o600)
            async with self.sftp.open(f"{tmp}/{name}", "wb", attrs) as f:
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

    async def remove_bundle(self, bundle: Bundle) -> None:
        """Drop a bundle folder found damaged on the device (the next ensure uploads it)."""
        with contextlib.suppress(asyncssh.SFTPError):
            await self.sftp.rmtree(self.path("agent", bundle.digest))

    def close(self) -> None:
        self.sftp.exit()
