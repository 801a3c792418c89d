"""The devices.toml a lab writes reads back through backend.chain as the same chain of
ssh devices, whatever the device names hold."""

from __future__ import annotations

from pathlib import Path

import pytest

from backend.chain import load_devices
from backend.lab import chainfile, layout
from backend.lab.spec import load_lab_spec
from backend.remote.target import SshTarget, target_from_spec

from .helpers import write_chain


@pytest.mark.parametrize(
    "names", [["glasses", "phone", "cloud"], ['a "quoted" one', "it's #1", "ünïcode"]]
)
def test_written_chain_reads_back(tmp_path: Path, names: list[str]) -> None:
    devices = [{"name": n, "runtime": "onnxruntime", "threads": 1} for n in names]
    devices[0]["cpus"] = [0]
    links = [
        {"from": a, "to": b, "bandwidth_mbps": bw, "latency_ms": lat}
        for a, b, bw, lat in zip(names, names[1:], (5, 20), (10, 5), strict=False)
    ]
    spec = load_lab_spec(write_chain(tmp_path / "chain.toml", devices, links))
    folder = tmp_path / "lab dir"
    folder.mkdir()
    (folder / "lab_key").write_text("key")  # the identity must exist to be accepted
    lay = layout.plan("abc123", [d.name for d in spec.devices], [(5, 10), (20, 5)], "10.200.3.0/24")
    text = chainfile.render(spec, lay, folder, "root", ["/opt/py 3/bin/python"] * 3)
    (folder / "devices.toml").write_text(text)
    chain = load_devices(folder / "devices.toml")
    assert chain.names == [d.name for d in spec.devices]
    assert [(lk.bandwidth_mbps, lk.latency_ms) for lk in chain.links] == [(5, 10), (20, 5)]
    targets = [target_from_spec(d) for d in chain.devices]
    assert all(isinstance(t, SshTarget) for t in targets)
    first, second = targets[0], targets[1]
    assert isinstance(first, SshTarget) and isinstance(second, SshTarget)
    assert (first.host, first.port, first.user) == ("10.200.3.2", 22, "root")
    assert first.identity == str(folder / "lab_key")
    assert first.known_hosts == str(folder / "known_hosts")
    assert first.python_argv == ["/opt/py 3/bin/python"]
    assert first.address is None and second.address == "172.30.0.2"
    assert chain.devices[0].cpus == [0] and chain.devices[0].threads == 1


def test_ssh_fields_of_the_source_are_replaced(tmp_path: Path) -> None:
    key = tmp_path / "real_key"
    key.write_text("k")
    devices = [
        {
            "name": "a",
            "kind": "ssh",
            "host": "odroid.local",
            "identity": str(key),
            "python": "python3",
            "workdir": "~/x",
        },
        {"name": "b"},
    ]
    spec = load_lab_spec(write_chain(tmp_path / "c.toml", devices, []))
    (tmp_path / "lab_key").write_text("key")
    lay = layout.plan("abc123", ["a", "b"], [(100, 0)], "10.200.3.0/24")
    text = chainfile.render(spec, lay, tmp_path, "me", ["/usr/bin/python3"] * 2)
    assert "odroid.local" not in text and "real_key" not in text and "~/x" not in text
    assert text.count('kind = "ssh"') == 2
