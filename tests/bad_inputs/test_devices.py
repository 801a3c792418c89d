"""Bad inputs for `omdp devices check` and `omdp links measure`: broken inventories and
arguments, and devices that answer wrongly, hang or cannot run. Each is refused with exit
2, one line on stderr (device text inert, newlines included), no traceback, and neither
the inventory's folder nor the trusted hosts file changes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from fake_device import fake_python
from ssh.helpers import FakeDevice, LoopThread, SshLab

from backend.device.linkhelper import LinkSettings
from backend.remote import links

from .harness import expect_rejected

LOCAL = '[[device]]\nname = "glasses"\nkind = "local"\n'


@pytest.fixture(scope="module")
def loop() -> Iterator[LoopThread]:
    thread = LoopThread()
    yield thread
    thread.stop()


@pytest.fixture
def lab(tmp_path: Path, loop: LoopThread, monkeypatch: pytest.MonkeyPatch) -> Iterator[SshLab]:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    ssh_lab = SshLab(tmp_path, loop)
    yield ssh_lab
    ssh_lab.close()


@pytest.fixture
def inv(tmp_path: Path) -> Path:
    folder = tmp_path / "inventory"
    folder.mkdir()
    return folder


def ssh_table(dev: FakeDevice, **extra: object) -> str:
    t = dev.target()
    fields = {
        "name": dev.name,
        "kind": "ssh",
        "host": t.host,
        "port": t.port,
        "user": t.user,
        "identity": t.identity,
        "known_hosts": t.known_hosts,
        "python": t.python,
        "workdir": t.workdir,
        "runtime": "onnxruntime",
        **extra,
    }
    return "[[device]]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in fields.items())


# -- the inventory file ----------------------------------------------------------------------

INVENTORIES = {
    "no devices": ("", None),
    "not TOML": ("[[device]\nname = ", None),
    "ssh without host": ('[[device]]\nname = "x"\nkind = "ssh"\n', "needs `host`"),
    "a port that is text": (
        '[[device]]\nname = "x"\nkind = "ssh"\nhost = "h"\nport = "22"\n',
        "port",
    ),
    "a port too big": ('[[device]]\nname = "x"\nkind = "ssh"\nhost = "h"\nport = 70000\n', "port"),
    "a port that is a bool": (
        '[[device]]\nname = "x"\nkind = "ssh"\nhost = "h"\nport = true\n',
        "port",
    ),
    "a host that is an option": (
        '[[device]]\nname = "x"\nkind = "ssh"\nhost = "-oProxyCommand=sh"\n',
        "host",
    ),
    "a host with a space": ('[[device]]\nname = "x"\nkind = "ssh"\nhost = "a b"\n', "host"),
    "an identity that is not there": (
        '[[device]]\nname = "x"\nkind = "ssh"\nhost = "h"\nidentity = "/nope/id"\n',
        "does not exist",
    ),
    "a password": (
        '[[device]]\nname = "x"\nkind = "ssh"\nhost = "h"\npassword = "pw"\n',
        "password",
    ),
    "a NaN connect timeout": (
        '[[device]]\nname = "x"\nkind = "ssh"\nhost = "h"\nconnect_timeout = nan\n',
        "connect_timeout",
    ),
    "a zero connect timeout": (
        '[[device]]\nname = "x"\nkind = "ssh"\nhost = "h"\nconnect_timeout = 0\n',
        "connect_timeout",
    ),
    "an unclosed python quote": (
        '[[device]]\nname = "x"\nkind = "ssh"\nhost = "h"\npython = "\'unclosed"\n',
        "python",
    ),
    "an empty python": (
        '[[device]]\nname = "x"\nkind = "ssh"\nhost = "h"\npython = ""\n',
        "python",
    ),
}


@pytest.mark.parametrize("verb", [["devices", "check"], ["links", "measure"]])
@pytest.mark.parametrize("case", list(INVENTORIES))
def test_a_broken_inventory_is_refused(capsys, inv: Path, verb: list[str], case: str):
    text, says = INVENTORIES[case]
    path = inv / "devices.toml"
    path.write_text(text)
    expect_rejected(capsys, [*verb, path], watch=[inv], contains=says)


@pytest.mark.parametrize("verb", [["devices", "check"], ["links", "measure"]])
@pytest.mark.parametrize("what", ["missing", "a folder", "binary"])
def test_an_inventory_that_is_not_a_file_of_text_is_refused(
    capsys, inv: Path, verb: list[str], what: str
):
    path = inv / "devices.toml"
    if what == "a folder":
        path.mkdir()
    elif what == "binary":
        path.write_bytes(bytes(range(256)) * 8)
    expect_rejected(capsys, [*verb, path], watch=[inv])


# -- arguments -------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf", "3601", "abc"])
def test_a_bad_probe_timeout_is_refused(capsys, inv: Path, value: str):
    path = inv / "devices.toml"
    path.write_text(LOCAL)
    expect_rejected(capsys, ["devices", "check", path, "--timeout", value], watch=[inv])


@pytest.mark.parametrize(
    ("model", "says"),
    [
        ("no-such.onnx", "cannot read the model"),
        ("a folder", "cannot read the model"),
        ("random bytes", "cannot read the model"),
        ("empty", "cannot read the model"),
    ],
)
def test_a_model_to_check_against_that_is_not_one_is_refused(capsys, inv: Path, model, says):
    path = inv / "devices.toml"
    path.write_text(LOCAL)
    target = {"a folder": inv, "no-such.onnx": inv / "no-such.onnx"}.get(model, inv / "m.onnx")
    if model == "random bytes":
        target.write_bytes(bytes(range(256)) * 40)
    elif model == "empty":
        target.write_bytes(b"")
    expect_rejected(
        capsys, ["devices", "check", path, "--model", target], watch=[inv], contains=says
    )


@pytest.mark.parametrize("value", ["0", "-5", "nan", "inf", "2000", "0.01", "lots"])
def test_a_bad_payload_size_is_refused(capsys, inv: Path, value: str):
    path = inv / "devices.toml"
    path.write_text(LOCAL)
    expect_rejected(capsys, ["links", "measure", path, "--max-mib", value], watch=[inv])


@pytest.mark.parametrize("session", ["missing", "a folder", "random bytes", "the inventory"])
def test_a_session_that_is_not_one_is_refused_before_measuring(capsys, inv: Path, session: str):
    path = inv / "devices.toml"
    path.write_text(LOCAL + '[[device]]\nname = "phone"\n')
    target = {
        "missing": inv / "none.omdp",
        "a folder": inv,
        "the inventory": path,
        "random bytes": inv / "junk.omdp",
    }[session]
    if session == "random bytes":
        target.write_bytes(bytes(range(256)) * 40)
    expect_rejected(capsys, ["links", "measure", path, "--session", target], watch=[inv])


# -- devices that answer wrongly, hang or cannot run -----------------------------------------

PROBE_FACTS = """
FACTS = {"python": "3.11.7", "executable": "/usr/bin/python3", "version_info": [3, 11, 7],
         "workdir": "/tmp/w", "free_bytes": 10**9, "workdir_error": None,
         "packages": {"numpy": "2", "onnx": "1", "onnxruntime": "1", "openvino": None},
         "hostname": "h", "cpu": "c", "cores": 4, "usable_cores": 4, "machine": "x86_64",
         "os": "Linux"}
"""

PROBES = {
    "a broken answer": ('say("OMDP-PROBE {")', "malformed"),
    "an answer that is a list": ('say("OMDP-PROBE []")', "malformed"),
    "a version that is text": (
        'say("OMDP-PROBE " + json.dumps(dict(FACTS, version_info="3.11")))',
        "version_info",
    ),
    "packages that are a list": (
        'say("OMDP-PROBE " + json.dumps(dict(FACTS, packages=["numpy"])))',
        "packages",
    ),
    "free space that is text": (
        'say("OMDP-PROBE " + json.dumps(dict(FACTS, free_bytes="1 TB")))',
        "free_bytes",
    ),
    "a huge answer": ('say("OMDP-PROBE " + "9" * (3 << 20))', "over 1048576 bytes"),
    "no answer and escape codes": (
        'sys.stderr.write("\\x1b[2J\\x1b[31momdp: all good\\r"); sys.exit(1)',
        "\\x1b[2J",
    ),
    "an old python": (
        'say("OMDP-PROBE " + json.dumps(dict(FACTS, version_info=[3, 6, 9], python="3.6.9")))',
        "the agent needs 3.8+",
    ),
    "a python that hangs": ("time.sleep(300)", "did not answer within 1 s"),
}


@pytest.mark.parametrize("case", list(PROBES))
def test_a_device_whose_probe_misbehaves_is_one_line(capsys, lab: SshLab, inv: Path, case: str):
    body, says = PROBES[case]
    dev = lab.device("odroid")
    fake = fake_python(lab.tmp, PROBE_FACTS + body, hello=False, job=False)
    path = inv / "devices.toml"
    path.write_text(ssh_table(dev, python=str(fake)))
    # 1 s only where the wait itself is the case: an answer is read in ~0.1 s idle, but a
    # busy machine must not turn a lie into a timeout
    timeout = "1" if case == "a python that hangs" else "30"
    line = expect_rejected(
        capsys,
        ["devices", "check", path, "--timeout", timeout],
        watch=[inv, lab.known_hosts],
        contains=says,
    )
    assert line.startswith("omdp: error: device 'odroid': ")


def test_a_python_that_is_not_there_is_one_line(capsys, lab: SshLab, inv: Path):
    dev = lab.device("odroid")
    path = inv / "devices.toml"
    path.write_text(ssh_table(dev, python="/opt/nope/python3"))
    expect_rejected(
        capsys, ["devices", "check", path], watch=[inv, lab.known_hosts], contains="not found there"
    )


@pytest.mark.parametrize("key", ["unknown", "revoked"])
def test_an_unverifiable_host_is_one_line_and_nothing_runs(
    capsys, lab: SshLab, inv: Path, key: str
):
    dev = lab.device("cloud", trusted=False)
    if key == "revoked":
        pub = dev.host_key.export_public_key().decode().split()
        lab.known_hosts.write_text(f"@revoked [127.0.0.1]:{dev.port} {pub[0]} {pub[1]}\n")
    path = inv / "devices.toml"
    path.write_text(ssh_table(dev))
    expect_rejected(
        capsys,
        ["devices", "check", path],
        watch=[inv, lab.known_hosts],
        contains="REVOKED" if key == "revoked" else "is not in",
    )
    assert not dev.stats.commands


def test_links_to_a_device_without_python_is_one_line(capsys, lab: SshLab, inv: Path):
    dev = lab.device("odroid")
    path = inv / "devices.toml"
    path.write_text(ssh_table(dev, python="/opt/nope/python3"))
    expect_rejected(
        capsys,
        ["links", "measure", path, "--max-mib", "0.25"],
        watch=[inv, lab.known_hosts],
        contains="the link helper on 'odroid' stopped",
    )


@pytest.mark.parametrize(
    ("case", "script", "says"),
    [
        ("silent after ready", "printf R\nexec sleep 300\n", "no answer within"),
        ("garbage instead of ready", "printf X\nexec sleep 300\n", "did not start properly"),
        (
            "escape codes and exit",
            "printf '\\033[2J\\033[31momdp: all good\\r' >&2\nexit 1\n",
            "\\x1b[2J",
        ),
    ],
)
def test_links_to_a_misbehaving_helper_is_one_line(
    capsys,
    lab: SshLab,
    inv: Path,
    monkeypatch: pytest.MonkeyPatch,
    case: str,
    script: str,
    says: str,
):
    if case == "silent after ready":  # short waits only where the wait is the case
        monkeypatch.setattr(links, "REPLY_GRACE_S", 0.5)
        monkeypatch.setattr("backend.usecases.devices.LinkSettings", _short_settings)
    dev = lab.device("odroid")
    fake = lab.tmp / "fake-python"
    fake.write_text("#!/bin/sh\n" + script)
    fake.chmod(0o755)
    path = inv / "devices.toml"
    path.write_text(ssh_table(dev, python=str(fake)))
    expect_rejected(
        capsys,
        ["links", "measure", path, "--max-mib", "0.25"],
        watch=[inv, lab.known_hosts],
        contains=says,
    )


def _short_settings(**kwargs: object) -> LinkSettings:
    return LinkSettings(**{**kwargs, "max_seconds": 0.5})  # type: ignore[arg-type]
