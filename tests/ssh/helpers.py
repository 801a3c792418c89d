"""Real SSH devices for tests: in-process asyncssh servers on 127.0.0.1.

Each server has its own generated host key and accepts one generated client key; the
fixture writes a known_hosts file trusting them. Like sshd, a server runs each requested
command with `/bin/sh -c` as a real subprocess in a new session (stdin/stdout/stderr wired
to the channel, stdin closed when the channel goes, a `signal` request delivered to the
session's process group with killpg) and serves SFTP on the real file system, counting
writes. The servers run on their own event loop in a thread, so a test can drive them from
its own loop or call the synchronous CLI.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncssh
import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from backend.remote.target import SshTarget


class LoopThread:
    """An asyncio loop in a daemon thread; `call` runs a coroutine there and waits."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def call(self, coro: Any, timeout: float = 30) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


@dataclass
class ServerStats:
    commands: list[str] = field(default_factory=list)
    signals: list[str] = field(default_factory=list)
    sftp_opens_for_write: int = 0
    sftp_write_bytes: int = 0


@dataclass
class FakeDevice:
    """One running SSH server and what it saw."""

    name: str
    port: int
    host_key: asyncssh.SSHKey
    lab: SshLab
    acceptor: Any = None
    conns: list[asyncssh.SSHServerConnection] = field(default_factory=list)
    procs: list[asyncio.subprocess.Process] = field(default_factory=list)
    stats: ServerStats = field(default_factory=ServerStats)

    def target(self, **overrides: Any) -> SshTarget:
        fields = dict(
            name=self.name,
            host="127.0.0.1",
            port=self.port,
            user="omdp",
            identity=str(self.lab.client_key_path),
            known_hosts=str(self.lab.known_hosts),
            ssh_config=None,
            python=sys.executable,
            workdir=str(self.lab.tmp / f"{self.name}-work"),
            connect_timeout=5.0,
        )
        fields.update(overrides)
        return SshTarget(**fields)

    def known_hosts_line(self, key: asyncssh.SSHKey | None = None) -> str:
        pub = (key or self.host_key).export_public_key().decode().split()
        return f"[127.0.0.1]:{self.port} {pub[0]} {pub[1]}\n"

    def drop_connections(self) -> None:
        """Kill every client connection abruptly, as a network failure would."""

        def abort() -> None:
            for conn in self.conns:
                conn.abort()

        self.lab.loop.loop.call_soon_threadsafe(abort)

    def stop(self) -> None:
        async def close() -> None:
            self.acceptor.close()
            for conn in self.conns:
                conn.abort()

        self.lab.loop.call(close())


def _make_server(device: FakeDevice) -> type[asyncssh.SSHServer]:
    class Server(asyncssh.SSHServer):
        def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
            device.conns.append(conn)

    return Server


def _make_sftp(device: FakeDevice) -> type[asyncssh.SFTPServer]:
    class CountingSFTP(asyncssh.SFTPServer):
        def open(self, path: bytes, pflags: int, attrs: asyncssh.SFTPAttrs) -> object:
            if pflags & (asyncssh.FXF_WRITE | asyncssh.FXF_APPEND | asyncssh.FXF_CREAT):
                device.stats.sftp_opens_for_write += 1
            return super().open(path, pflags, attrs)

        def write(self, file_obj: object, offset: int, data: bytes) -> int:
            device.stats.sftp_write_bytes += len(data)
            return super().write(file_obj, offset, data)

    return CountingSFTP


def _make_process_handler(device: FakeDevice):
    """Like sshd: `sh -c command`; channel data → stdin (closed when the channel goes);
    stdout/stderr → channel (the pipes closed when the channel goes: the child gets EPIPE);
    exit status sent after all output."""

    async def feed_stdin(process: asyncssh.SSHServerProcess, proc: Any) -> None:
        while True:
            try:
                data = await process.stdin.read(1 << 16)
            except asyncssh.SignalReceived as sig:  # as OpenSSH: killpg(session, sig)
                device.stats.signals.append(sig.signal)
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, signal.Signals[f"SIG{sig.signal}"])
                continue
            except (asyncssh.Error, OSError, BrokenPipeError, ConnectionResetError):
                break
            if not data:
                break
            try:
                proc.stdin.write(data)
                await proc.stdin.drain()
            except (OSError, BrokenPipeError, ConnectionResetError):
                break
        with contextlib.suppress(Exception):
            proc.stdin.close()

    async def pump(reader: asyncio.StreamReader, writer: Any, fd: int, proc: Any) -> None:
        try:
            while data := await reader.read(1 << 16):
                writer.write(data)
                await writer.drain()
        except (asyncssh.Error, OSError, BrokenPipeError, ConnectionResetError):
            proc._transport.get_pipe_transport(fd).close()  # as sshd does: reader gone

    async def handle(process: asyncssh.SSHServerProcess) -> None:
        command = process.command or "exec /bin/sh"
        device.stats.commands.append(command)
        proc = await asyncio.create_subprocess_exec(
            "/bin/sh",
            "-c",
            command,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,  # sshd's setsid: the command leads its own group
        )
        device.procs.append(proc)
        stdin_task = asyncio.create_task(feed_stdin(process, proc))
        await asyncio.gather(
            pump(proc.stdout, process.stdout, 1, proc), pump(proc.stderr, process.stderr, 2, proc)
        )
        status = await proc.wait()
        stdin_task.cancel()
        with contextlib.suppress(Exception):
            process.exit(status)

    return handle


class SshLab:
    """Keys, known_hosts and any number of in-process SSH devices."""

    def __init__(self, tmp: Path, loop: LoopThread):
        self.tmp = tmp
        self.loop = loop
        self.client_key = asyncssh.generate_private_key("ssh-ed25519")
        self.client_key_path = tmp / "id_client"
        self.client_key.write_private_key(str(self.client_key_path))
        os.chmod(self.client_key_path, 0o600)
        self.other_key_path = tmp / "id_other"
        asyncssh.generate_private_key("ssh-ed25519").write_private_key(str(self.other_key_path))
        self.known_hosts = tmp / "known_hosts"
        self.known_hosts.write_text("")
        self.devices: list[FakeDevice] = []

    def device(self, name: str, trusted: bool = True) -> FakeDevice:
        host_key = asyncssh.generate_private_key("ssh-ed25519")
        device = FakeDevice(name, 0, host_key, self)
        authorized = asyncssh.import_authorized_keys(self.client_key.export_public_key().decode())

        async def start() -> Any:
            return await asyncssh.create_server(
                _make_server(device),
                "127.0.0.1",
                0,
                server_host_keys=[host_key],
                authorized_client_keys=authorized,
                process_factory=_make_process_handler(device),
                sftp_factory=_make_sftp(device),
                encoding=None,
                allow_scp=False,
                password_auth=False,
                kbdint_auth=False,
            )

        device.acceptor = self.loop.call(start())
        device.port = device.acceptor.sockets[0].getsockname()[1]
        if trusted:
            with self.known_hosts.open("a") as f:
                f.write(device.known_hosts_line())
        self.devices.append(device)
        return device

    def close(self) -> None:
        for device in self.devices:
            with contextlib.suppress(Exception):
                device.stop()
            for proc in device.procs:  # each leads its own group: take it all
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, signal.SIGKILL)


def free_port() -> int:
    """A loopback port nobody listens on (bound then closed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is dead for our purpose
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def processes_matching(text: str) -> list[int]:
    """PIDs whose command line contains `text` (to prove nothing was left running)."""
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if text in cmdline and pid_alive(int(entry.name)):
                out.append(int(entry.name))
    return out


async def left_running(text: str, timeout: float = 10.0) -> list[int]:
    """`processes_matching(text)` once they are gone, or after `timeout` s: a killed
    process takes a moment to exit (longer on a busy machine), a leftover stays."""
    deadline = time.monotonic() + timeout
    while (found := processes_matching(text)) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    return found


def chain_model(n: int = 6, width: int = 16, batch: int = 1, seed: int = 0) -> onnx.ModelProto:
    """A small real model: n × (MatMul → Relu), so positions 0..2n exist."""
    rng = np.random.default_rng(seed)
    nodes, inits, prev = [], [], "x"
    for i in range(n):
        w = numpy_helper.from_array(
            (rng.standard_normal((width, width)) * 0.3).astype(np.float32), f"w{i}"
        )
        inits.append(w)
        nodes.append(helper.make_node("MatMul", [prev, f"w{i}"], [f"m{i}"], name=f"mm{i}"))
        nodes.append(helper.make_node("Relu", [f"m{i}"], [f"r{i}"], name=f"relu{i}"))
        prev = f"r{i}"
    graph = helper.make_graph(
        nodes,
        "chain",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, width])],
        [helper.make_tensor_value_info(prev, TensorProto.FLOAT, [batch, width])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    return onnx.shape_inference.infer_shapes(model)
