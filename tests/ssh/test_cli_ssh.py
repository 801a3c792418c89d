"""`omdp devices check` and `omdp links measure` end to end, against real SSH servers."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from backend.chain import DeviceSpec
from backend.cli import main
from backend.errors import OmdpError
from backend.remote.target import LocalTarget, SshTarget, ssh_fields_from_table, target_from_spec

from .helpers import FakeDevice, SshLab


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


def inventory(lab: SshLab, *tables: str, links: str = "") -> Path:
    local = '[[device]]\nname = "glasses"\nkind = "local"\nruntime = "openvino"\n'
    path = lab.tmp / "devices.toml"
    path.write_text(local + "".join(tables) + links)
    return path


def test_devices_check_all_good(ssh_lab: SshLab, capsys: pytest.CaptureFixture[str]):
    a, b = ssh_lab.device("phone"), ssh_lab.device("cloud")
    path = inventory(ssh_lab, ssh_table(a), ssh_table(b))
    assert main(["devices", "check", str(path)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split()[:5] == ["device", "kind", "address", "status", "host"]
    rows = {line.split()[0]: line.split() for line in out[2 : out.index("")]}
    assert list(rows) == ["glasses", "phone", "cloud"]
    assert rows["phone"][1:5] == ["ssh", f"omdp@127.0.0.1:{a.port}", "ok", "trusted"]
    assert rows["glasses"][1:5] == ["local", "local", "ok", "-"]

    assert main(["devices", "check", str(path), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [d["name"] for d in data] == ["glasses", "phone", "cloud"]
    assert all(d["ok"] and d["facts"]["packages"]["onnx"] for d in data)


def test_devices_check_reports_each_problem_and_exits_2(
    ssh_lab: SshLab, capsys: pytest.CaptureFixture[str]
):
    good, stranger = ssh_lab.device("phone"), ssh_lab.device("cloud", trusted=False)
    path = inventory(
        ssh_lab, ssh_table(good, python=f"{sys.executable} -I -S"), ssh_table(stranger)
    )
    assert main(["devices", "check", str(path)]) == 2
    captured = capsys.readouterr()
    errors = captured.err.strip().splitlines()
    assert len(errors) == 2
    assert errors[0].startswith("omdp: error: device 'phone': ")
    assert "lacks numpy, onnxruntime — install: ssh -p" in errors[0]
    assert errors[1].startswith(
        f"omdp: error: device 'cloud': host omdp@127.0.0.1:{stranger.port} is not in"
    )
    assert "PROBLEM" in captured.out


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("port", "abc", "`port` must be an integer in 1..65535, got 'abc'"),
        ("port", 70000, "`port` must be an integer in 1..65535, got 70000"),
        ("host", "", "`host` must be a non-empty string, got ''"),
        ("host", "-oProxyCommand=x", "`host` must be a host name or address"),
        ("identity", "/nope/id_ed25519", "identity file /nope/id_ed25519 does not exist"),
        ("password", "hunter2", "passwords are not supported"),
        ("connect_timeout", 0, "`connect_timeout` must be seconds in (0, 120], got 0"),
        ("python", "'unclosed", "`python` must be an interpreter command"),
    ],
)
def test_ssh_field_errors_name_device_and_field(field: str, value: object, message: str):
    table = {"name": "phone", "kind": "ssh", "host": "127.0.0.1", field: value}
    with pytest.raises(OmdpError) as info:
        ssh_fields_from_table(table, "devices.toml:7: ")
    assert str(info.value).startswith("devices.toml:7: device 'phone': ")
    assert message in str(info.value)


def test_cli_inventory_error_is_one_line_exit_2(
    ssh_lab: SshLab, capsys: pytest.CaptureFixture[str]
):
    dev = ssh_lab.device("phone")
    path = inventory(ssh_lab, ssh_table(dev, port="abc"))
    assert main(["devices", "check", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"omdp: error: {path}") and "\n" not in err
    assert "device 'phone'" in err and "port" in err and "'abc'" in err


def test_devices_spec_becomes_a_target():
    """The path `omdp devices check` takes once devices.py accepts kind = "ssh"."""
    spec = DeviceSpec(
        name="cloud",
        kind="ssh",
        host="10.0.0.5",
        port=2222,
        user="me",
        python="/opt/py/bin/python3",
        workdir="/srv/omdp",
        line=12,
    )
    target = target_from_spec(spec, "devices.toml")
    assert target == SshTarget(
        "cloud", "10.0.0.5", port=2222, user="me", python="/opt/py/bin/python3", workdir="/srv/omdp"
    )
    with pytest.raises(OmdpError, match=r"^devices.toml:12: device 'cloud': `port` must"):
        target_from_spec(
            DeviceSpec(name="cloud", kind="ssh", host="h", port=0, line=12), "devices.toml"
        )
    assert isinstance(target_from_spec(DeviceSpec(name="here")), LocalTarget)


def test_local_only_inventory_goes_through_backend_devices(
    ssh_lab: SshLab, capsys: pytest.CaptureFixture[str]
):
    path = ssh_lab.tmp / "local.toml"
    path.write_text(
        '[[device]]\nname = "here"\n[[device]]\nname = "there"\n'
        'runtime = "openvino"\n[[link]]\nfrom = "here"\nto = "there"\n'
        "bandwidth_mbps = 50\n"
    )
    assert main(["devices", "check", str(path), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [(d["name"], d["kind"], d["ok"]) for d in data] == [
        ("here", "local", True),
        ("there", "local", True),
    ]
    path.write_text('[[device]]\nname = "here"\nthreads = 0\n')
    assert main(["devices", "check", str(path)]) == 2
    assert f"{path}:3: device 'here': threads must be at least 1" in capsys.readouterr().err


def test_ssh_fields_defaults():
    t = ssh_fields_from_table({"name": "odroid", "kind": "ssh", "host": "odroid.local"})
    assert (t.port, t.user, t.python, t.workdir, t.known_hosts) == (
        None,
        None,
        "python3",
        "~/.cache/omdp",
        "~/.ssh/known_hosts",
    )
    assert t.label == "odroid.local:22"
    assert (
        t.remote_command("python3 -m pip install onnx")
        == "ssh odroid.local 'python3 -m pip install onnx'"
    )
    with pytest.raises(Exception, match="ssh device needs `host`"):
        ssh_fields_from_table({"name": "x", "kind": "ssh"})


def test_links_measure(ssh_lab: SshLab, capsys: pytest.CaptureFixture[str]):
    a, b = ssh_lab.device("phone"), ssh_lab.device("cloud")
    links = '[[link]]\nfrom = "glasses"\nto = "phone"\nbandwidth_mbps = 20\nlatency_ms = 5\n'
    path = inventory(ssh_lab, ssh_table(a), ssh_table(b), links=links)
    assert main(["links", "measure", str(path), "--max-mib", "0.25", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [(m["src"], m["dst"]) for m in data["lab"]] == [("lab", "phone"), ("lab", "cloud")]
    assert [(m["src"], m["dst"]) for m in data["chain"]] == [
        ("glasses", "phone"),
        ("phone", "cloud"),
    ]
    assert all(m["bandwidth_mbps"] > 0 for m in data["lab"] + data["chain"])
    assert data["typed"] == {"glasses-phone": {"bandwidth_mbps": 20, "latency_ms": 5}}
    assert data["failures"] == []

    assert main(["links", "measure", str(path), "--max-mib", "0.25", "--no-lab"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in out[2:]] == ["glasses-phone", "phone-cloud"]
    assert out[2].split()[-3:-1] == ["20.0", "5.000"]  # typed beside measured


def test_links_measure_reports_a_dead_device_and_measures_the_rest(
    ssh_lab: SshLab, capsys: pytest.CaptureFixture[str]
):
    a, b = ssh_lab.device("phone"), ssh_lab.device("cloud")
    path = inventory(ssh_lab, ssh_table(a), ssh_table(b))
    b.stop()
    assert main(["links", "measure", str(path), "--max-mib", "0.25", "--json"]) == 2
    captured = capsys.readouterr()
    data = json.loads(captured.out)
    assert [(m["src"], m["dst"]) for m in data["chain"]] == [("glasses", "phone")]
    assert data["failures"] == [
        f"link lab-cloud: device 'cloud': connection refused by omdp@127.0.0.1:{b.port} — "
        "is sshd running on the device, and is `port` right?",
        "link phone-cloud: not measured (see the error above)",
    ]
    assert captured.err.count("omdp: error: link") == 2


def test_links_measure_stores_measured_links_in_the_session(
    ssh_lab: SshLab, small_model: Path, capsys: pytest.CaptureFixture[str]
):
    from backend.chain import Chain, LinkSpec
    from backend.model.analysis import analyze
    from backend.profiling.session import Session

    a = ssh_lab.device("phone")
    path = inventory(ssh_lab, ssh_table(a))
    chain = Chain.of(
        [DeviceSpec("glasses", runtime="openvino"), DeviceSpec("phone", kind="ssh")],
        [LinkSpec("glasses", "phone", 20.0, 5.0)],
    )
    session_path = ssh_lab.tmp / "s.omdp"
    analysis = analyze(small_model)
    Session.create(session_path, analysis, chain, [0, analysis.n]).close()
    args = ["links", "measure", str(path), "--max-mib", "0.25", "--session", str(session_path)]
    assert main(args) == 0, capsys.readouterr().err
    with Session.open(session_path, check_model=False) as s:
        row = s.links_frame().iloc[0]
    assert (row.bandwidth_mbps, row.latency_ms) == (20.0, 5.0)  # typed values untouched
    assert row.measured_bandwidth_mbps > 1 and row.measured_latency_ms >= 0
    assert row.measured_at

    assert main(["links", "measure", str(path), "--session", str(ssh_lab.tmp / "no.omdp")]) == 2
    assert "no session at" in capsys.readouterr().err
