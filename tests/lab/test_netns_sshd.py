"""Namespaces and an sshd inside one, as the lab uses them, without a whole lab: the sshd
answers on its management address, accepts the lab key and is verified by its host key."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from backend.lab import host, layout, netns, sshd
from backend.lab.processes import kill_all, spawn
from backend.remote.connection import connect
from backend.remote.target import SshTarget

from .helpers import why_no_lab


def test_config_is_keys_only(tmp_path: Path) -> None:
    text = sshd.config_text("10.200.0.2", 22, tmp_path / "a b", tmp_path / "keys")
    assert "ListenAddress 10.200.0.2:22" in text
    assert f'HostKey "{tmp_path}/a b/{sshd.HOST_KEY}"' in text
    for line in ("PasswordAuthentication no", "KbdInteractiveAuthentication no", "UsePAM no"):
        assert line in text.splitlines()


def test_known_hosts_lines() -> None:
    assert sshd.known_hosts_line("10.0.0.2", 22, "ssh-ed25519 AAA") == "10.0.0.2 ssh-ed25519 AAA"
    assert sshd.known_hosts_line("10.0.0.2", 2222, "k") == "[10.0.0.2]:2222 k"


@pytest.mark.integration
@pytest.mark.skipif(why_no_lab() is not None, reason=str(why_no_lab()))
def test_sshd_in_a_namespace(tmp_path: Path) -> None:
    tag = f"{os.getpid() % 100000:05d}"
    ns, dev = f"omdp-st{tag}", f"omst{tag}"
    tools = host.require_tools()
    host.ensure_privsep_dir()
    sshd.keygen(tmp_path / "lab_key", "test")
    sshd.keygen(tmp_path / sshd.HOST_KEY, "test-host")
    sshd.keygen(tmp_path / sshd.HOST_KEY, "again")  # kept: known_hosts stays valid
    (tmp_path / "keys").write_text(sshd.public_key(tmp_path / "lab_key") + "\n")
    proc = None
    try:
        netns.add(ns)
        assert ns in netns.names()
        net = layout.choose_mgmt_net("00" + tag[:4], netns.taken_networks())
        lay = layout.plan("000000", ["x"], [], net)
        slot = lay.devices[0]
        netns.veth(dev, None, "mgmt", ns)
        netns.address(None, dev, f"{slot.lab_ip}/30")
        netns.address(ns, "mgmt", f"{slot.host}/30")
        netns.up(None, dev)
        netns.up(ns, "mgmt")
        config = sshd.write_config(tmp_path, slot.host, 22, tmp_path / "keys")
        proc = spawn(
            netns.exec_argv(ns, sshd.argv(tools["sshd"], config, tmp_path / "log")),
            tmp_path / "out",
        )
        assert sshd.wait_listening(slot.host, 22, proc.alive), sshd.log_tail(tmp_path / "log")
        assert proc.pid in netns.pids(ns)  # `ip netns exec` became sshd: same pid
        (tmp_path / "known_hosts").write_text(
            sshd.known_hosts_line(slot.host, 22, sshd.public_key(tmp_path / sshd.HOST_KEY)) + "\n"
        )
        target = SshTarget(
            "x",
            slot.host,
            22,
            "root",
            str(tmp_path / "lab_key"),
            str(tmp_path / "known_hosts"),
            None,
        )

        async def hello() -> str:
            async with await connect(target) as conn:
                done = await conn.run("cat /proc/self/net/dev | grep -c mgmt", check=True)
                return str(done.stdout).strip()

        assert asyncio.run(hello()) == "1"  # the session runs inside the device's namespace
    finally:
        if proc:
            kill_all([proc.pid])
        netns.delete_link(dev)
        netns.delete(ns)
    assert ns not in netns.names()
    assert not any(i.get("ifname") == dev for i in netns.links())
