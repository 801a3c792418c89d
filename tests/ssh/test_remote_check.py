"""`devices check` pieces against real SSH servers: facts, and each failure's message."""

from __future__ import annotations

import shlex
import socket
import stat
import sys
import time

import asyncssh

from backend.remote.checks import check_all, check_ssh
from backend.remote.target import LocalTarget, SshTarget

from .helpers import SshLab, free_port


async def test_check_reports_facts_and_makes_workdir_private(ssh_lab: SshLab):
    dev = ssh_lab.device("glasses")
    check = await check_ssh(dev.target(), "onnxruntime")
    assert check.ok, check.problems
    assert check.host_key == "trusted"
    facts = check.facts
    assert facts["python"] == ".".join(map(str, sys.version_info[:3]))
    for pkg in ("numpy", "onnx", "onnxruntime", "openvino"):
        assert facts["packages"][pkg], pkg
    assert facts["cores"] >= 1 and facts["cpu"] and facts["free_bytes"] > 0
    workdir = ssh_lab.tmp / "glasses-work"
    assert stat.S_IMODE(workdir.stat().st_mode) == 0o700


async def test_wrong_client_key_is_refused(ssh_lab: SshLab):
    dev = ssh_lab.device("phone")
    check = await check_ssh(dev.target(identity=str(ssh_lab.other_key_path)))
    assert not check.ok and check.host_key == "-"
    (problem,) = check.problems
    assert f"127.0.0.1:{dev.port} refused the key ({ssh_lab.other_key_path})" in problem
    assert f"ssh-copy-id -i {ssh_lab.other_key_path} -p {dev.port} omdp@127.0.0.1" in problem


async def test_unknown_host_says_how_to_trust_it(ssh_lab: SshLab):
    dev = ssh_lab.device("cloud", trusted=False)
    check = await check_ssh(dev.target())
    assert check.host_key == "unknown"
    (problem,) = check.problems
    assert f"is not in {ssh_lab.known_hosts}" in problem
    assert dev.host_key.get_fingerprint() in problem  # what to compare before trusting
    assert f"ssh-keyscan -p {dev.port} 127.0.0.1 >> {ssh_lab.known_hosts}" in problem


async def test_changed_host_key_is_refused_plainly(ssh_lab: SshLab):
    dev = ssh_lab.device("cloud", trusted=False)
    old = asyncssh.generate_private_key("ssh-ed25519")
    ssh_lab.known_hosts.write_text(dev.known_hosts_line(old))
    check = await check_ssh(dev.target())
    assert check.host_key == "changed" and not check.reachable
    (problem,) = check.problems
    assert "has CHANGED since it was trusted" in problem and "refusing to connect" in problem
    assert f"ssh-keygen -R '[127.0.0.1]:{dev.port}'" in problem
    assert not dev.stats.commands  # nothing ran on an unverified host


async def test_missing_packages_give_the_install_command(ssh_lab: SshLab):
    dev = ssh_lab.device("odroid")
    python = f"{sys.executable} -I -S"  # no site-packages: numpy, onnx, onnxruntime missing
    target = dev.target(python=python)
    check = await check_ssh(target, "onnxruntime")
    assert check.reachable and not check.ok
    (problem,) = check.problems
    install = shlex.quote(f"{python} -m pip install numpy onnxruntime")  # onnx: optional
    assert f"lacks numpy, onnxruntime — install: ssh -p {dev.port} -i " in problem
    assert problem.endswith(f"omdp@127.0.0.1 {install}")


async def test_python_not_found(ssh_lab: SshLab):
    dev = ssh_lab.device("odroid")
    check = await check_ssh(dev.target(python="/opt/nope/python3"))
    (problem,) = check.problems
    assert "`/opt/nope/python3` not found there" in problem
    assert "set `python` to its full path" in problem


async def test_connection_refused(ssh_lab: SshLab):
    target = ssh_lab.device("x").target(port=free_port())
    check = await check_ssh(target)
    assert check.problems == [
        f"device 'x': connection refused by omdp@127.0.0.1:{target.port} — "
        "is sshd running on the device, and is `port` right?"
    ]


async def test_silent_port_times_out_quickly():
    with socket.socket() as silent:  # accepts TCP (backlog) but never speaks SSH
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        port = silent.getsockname()[1]
        target = SshTarget(
            "mute",
            "127.0.0.1",
            port=port,
            known_hosts="/nonexistent",
            ssh_config=None,
            connect_timeout=1.0,
        )
        t0 = time.perf_counter()
        check = await check_ssh(target)
        assert time.perf_counter() - t0 < 4  # not the default 5 s (idle: about 1 s)
    (problem,) = check.problems
    assert f"no SSH answer from 127.0.0.1:{port} within 1 s" in problem


async def test_dns_failure():
    host = "a." * 130 + "invalid"  # too long for DNS: fails in the resolver, sends nothing
    check = await check_ssh(SshTarget("ghost", host, known_hosts="/nonexistent", ssh_config=None))
    (problem,) = check.problems
    assert problem.startswith(f"device 'ghost': cannot resolve host name '{host}'")


async def test_check_all_runs_local_and_ssh_in_parallel(ssh_lab: SshLab):
    devs = [ssh_lab.device(f"d{i}") for i in range(3)]
    targets = [(d.target(), "onnxruntime") for d in devs]
    targets.append((LocalTarget("here", workdir=str(ssh_lab.tmp / "local-work")), "openvino"))
    t0 = time.perf_counter()
    checks = await check_all(targets)
    assert [c.name for c in checks] == ["d0", "d1", "d2", "here"]
    assert all(c.ok for c in checks), [c.problems for c in checks]
    assert checks[-1].kind == "local" and checks[-1].facts["packages"]["openvino"]
    assert time.perf_counter() - t0 < 10


async def test_passphrase_protected_identity_points_to_ssh_agent(ssh_lab: SshLab):
    dev = ssh_lab.device("phone")
    locked = ssh_lab.tmp / "id_locked"
    asyncssh.generate_private_key("ssh-ed25519").write_private_key(
        str(locked), format_name="pkcs8-pem", passphrase="pw"
    )
    check = await check_ssh(dev.target(identity=str(locked)))
    (problem,) = check.problems
    assert f"device 'phone': cannot use identity {locked}" in problem
    assert f"load it into ssh-agent (ssh-add {locked}) and remove `identity`" in problem


async def test_ssh_config_alias_is_honoured(ssh_lab: SshLab):
    dev = ssh_lab.device("phone")
    config = ssh_lab.tmp / "ssh_config"
    config.write_text(
        f"Host phone-alias\n  HostName 127.0.0.1\n  Port {dev.port}\n  User omdp\n"
        f"  IdentityFile {ssh_lab.client_key_path}\n"
    )
    target = SshTarget(
        "phone",
        "phone-alias",
        known_hosts=str(ssh_lab.known_hosts),
        ssh_config=str(config),
        python=sys.executable,
        workdir=str(ssh_lab.tmp / "alias-work"),
    )
    check = await check_ssh(target)
    assert check.ok, check.problems
