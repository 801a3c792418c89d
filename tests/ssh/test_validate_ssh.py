"""`omdp validate` over OpenSSH's own sshd on a loopback port: a local device, then two
ssh devices; the stages on the ssh devices are uploaded and run under the guard, and
tensors go device to device (the ssh device listens when it is downstream, and also when
only the upstream one is ssh)."""

from __future__ import annotations

import json
from pathlib import Path

import onnx
import pytest

from backend.cli import main
from backend.profiling.session import Session
from backend.remote.target import SshTarget

from .helpers import chain_model
from .test_sshd_integration import pytestmark as sshd_marks
from .test_sshd_integration import sshd  # noqa: F401 (the fixture)

pytestmark = sshd_marks


def _devices(sshd: SshTarget) -> str:  # noqa: F811
    ssh = {
        "kind": "ssh",
        "host": sshd.host,
        "port": sshd.port,
        "user": sshd.user,
        "identity": sshd.identity,
        "known_hosts": sshd.known_hosts,
        "python": sshd.python,
        "workdir": sshd.workdir,
    }
    text = '[[device]]\nname = "glasses"\nthreads = 1\n\n'
    for name in ("phone", "cloud"):
        text += f'[[device]]\nname = "{name}"\nthreads = 1\n'
        text += "".join(f"{k} = {json.dumps(v)}\n" for k, v in ssh.items()) + "\n"
    text += '[[link]]\nfrom = "glasses"\nto = "phone"\nbandwidth_mbps = 1000\n\n'
    text += '[[link]]\nfrom = "phone"\nto = "cloud"\nbandwidth_mbps = 1000\n'
    return text


def test_validate_across_local_and_ssh_devices(
    sshd: SshTarget,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
):
    monkeypatch.setenv("OMDP_CACHE_DIR", str(tmp_path / "cache"))
    model = tmp_path / "m.onnx"
    onnx.save(chain_model(), str(model))
    devices = tmp_path / "devices.toml"
    devices.write_text(_devices(sshd))
    session = tmp_path / "s.omdp"
    fast = ["--warmup", "1", "--min-runs", "3", "--max-runs", "5", "--max-seconds", "0.2"]
    args = ["profile", str(model), "--devices", str(devices), "--candidates", "4,8"]
    assert main([*args, "--session", str(session), *fast]) == 0, capsys.readouterr().err
    capsys.readouterr()
    code = main(["validate", str(session), "--top", "12", "--frames", "4", "--json"])
    doc = json.loads(capsys.readouterr().out)
    assert code == 0 and doc["failed"] == {}
    runs = doc["validations"]
    assert all(v["output"]["ok"] for v in runs)
    # some partition crosses both links, through the ssh devices
    both = [v for v in runs if [h["link"] for h in v["hops"]] == ["glasses-phone", "phone-cloud"]]
    assert both and all(h["measured"]["median"] > 0 for h in both[0]["hops"])
    assert any(s["device"] == "cloud" and s["measured"] for s in both[0]["stages"])
    with Session.open(session, check_model=False) as s:
        assert len(s.validations()) == len(runs)
