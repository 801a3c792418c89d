"""The chain a lab emulates: `[device.lab]` read beside backend.chain's own checks."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from backend.chain import load_devices
from backend.errors import OmdpError
from backend.lab.spec import Limits, load_lab_spec

CHAIN = """\
[[device]]
name = "glasses"
threads = 1

[device.lab]
cpu = 0.25
cpus = "0"
memory_mib = 512

[[device]]
name = "phone"
lab = { cpu = 1 }

[[device]]
name = "cloud"

[[link]]
from = "glasses"
to = "phone"
bandwidth_mbps = 5
latency_ms = 10

[[link]]
from = "phone"
to = "cloud"
bandwidth_mbps = 20
latency_ms = 5
"""


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "devices.toml"
    p.write_text(text)
    return p


def test_chain_lets_the_lab_table_through(tmp_path: Path) -> None:
    chain = load_devices(write(tmp_path, CHAIN))
    assert chain.names == ["glasses", "phone", "cloud"]
    assert chain.devices[0].threads == 1
    assert "lab" not in chain.devices[0].to_dict()  # sessions never see the lab's limits


def test_limits_per_device(tmp_path: Path) -> None:
    spec = load_lab_spec(write(tmp_path, CHAIN))
    assert spec.limits == [Limits(cpu=0.25, cpus=(0,), memory_mib=512), Limits(cpu=1.0), Limits()]
    assert spec.limits[0].to_dict() == {"cpu": 0.25, "cpus": "0", "memory_mib": 512}


def test_python_is_resolved_to_a_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    exe = Path(sys.executable)
    text = CHAIN.replace("memory_mib = 512", f'memory_mib = 512\npython = "{exe.name}"')
    p = write(tmp_path, text)
    monkeypatch.setenv("PATH", f"{exe.parent}:{os.environ.get('PATH', '')}")
    python = load_lab_spec(p).limits[0].python
    assert python is not None and Path(python).is_absolute() and Path(python).exists()


def test_digest_follows_what_is_emulated_not_the_text(tmp_path: Path) -> None:
    a = load_lab_spec(write(tmp_path, CHAIN)).digest()
    assert load_lab_spec(write(tmp_path, "# a comment\n" + CHAIN)).digest() == a
    assert load_lab_spec(write(tmp_path, CHAIN.replace("0.25", "0.5"))).digest() != a
    assert load_lab_spec(write(tmp_path, CHAIN.replace("= 20", "= 21"))).digest() != a


@pytest.mark.parametrize(
    "old,new,line,words",
    [
        ("memory_mib = 512", "memory = 512", 8, "did you mean 'memory_mib'"),
        ("cpu = 0.25", "cpu = -1", 6, "cpu must be a share"),
        ("lab = { cpu = 1 }", "lab = { cpu = 0 }", 12, "cpu must be a share"),
        ('cpus = "0"', 'cpus = "0-999"', 7, "does not exist"),
    ],
)
def test_errors_name_the_line(tmp_path: Path, old: str, new: str, line: int, words: str) -> None:
    with pytest.raises(OmdpError) as err:
        load_lab_spec(write(tmp_path, CHAIN.replace(old, new)))
    assert f"devices.toml:{line}: " in str(err.value)
    assert words in str(err.value)


def test_missing_links_get_the_chain_defaults(tmp_path: Path) -> None:
    text = CHAIN.split("[[link]]")[0]
    spec = load_lab_spec(write(tmp_path, text))
    assert [(lk.bandwidth_mbps, lk.latency_ms) for lk in spec.chain.links] == [(100, 0)] * 2
    assert len(spec.warnings) == 2


def test_demo_chain(tmp_path: Path) -> None:
    from backend.lab import demo

    spec = load_lab_spec(demo.write_chain(tmp_path / "demo"))
    assert spec.chain.names == ["glasses", "phone", "cloud"]
    assert [lim.cpu for lim in spec.limits] == [0.25, 0.5, 1.0]
    assert [lk.bandwidth_mbps for lk in spec.chain.links] == [20, 100]
    assert not spec.warnings
