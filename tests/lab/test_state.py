"""The lab's state file is read as untrusted input: a damaged or foreign file is refused
with one line, never trusted to name what `down` removes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from backend.errors import OmdpError
from backend.lab import layout, state
from backend.lab.processes import Proc
from backend.lab.spec import Limits
from backend.lab.state import DeviceState, LabState, LinkState


def sample(folder: Path) -> LabState:
    return LabState(
        str(folder),
        layout.lab_id(folder),
        "0123456789abcdef",
        "chain.toml",
        "relay",
        1,
        "10.200.3.0/24",
        "root",
        [DeviceState("a", Limits(cpu=0.25, cpus=(0, 1)), Proc(1234, 99)), DeviceState("b")],
        [LinkState("a", "b", 5.0, 10.0, Proc(1235, 100))],
    )


def test_round_trip(tmp_path: Path) -> None:
    st = sample(tmp_path)
    st.save()
    assert (tmp_path / "lab.json").stat().st_mode & 0o777 == 0o600
    back = state.load(tmp_path)
    assert back == st
    assert back is not None and back.layout().devices[1].address == "172.30.0.2"


def test_no_state() -> None:
    assert state.load(Path("/nonexistent-omdp-lab")) is None


def edit(tmp_path: Path, change) -> None:
    st = sample(tmp_path)
    data = json.loads(st.to_json())
    change(data)
    (tmp_path / "lab.json").write_text(json.dumps(data))


DAMAGE = {
    "format": lambda d: d.update(format=2),
    "lab_id": lambda d: d.update(lab_id="../../x"),
    "other-id": lambda d: d.update(lab_id="abcdef"),
    "moved": lambda d: d.update(folder="/elsewhere"),
    "latency": lambda d: d.update(latency="tc"),
    "cgroup": lambda d: d.update(cgroup=3),
    "net-outside-pool": lambda d: d.update(mgmt_net="192.168.1.0/24"),
    "net-wide": lambda d: d.update(mgmt_net="10.0.0.0/8"),
    "pid-1": lambda d: d["devices"][0].update(sshd={"pid": 1, "started": 5}),
    "pid-string": lambda d: d["devices"][0].update(sshd={"pid": "1234", "started": 5}),
    "pid-huge": lambda d: d["devices"][0].update(sshd={"pid": 2**70, "started": 5}),
    "no-devices": lambda d: d.update(devices=[]),
    "links-count": lambda d: d.update(links=[]),
    "link-order": lambda d: d["links"][0].update(src="b", dst="a"),
    "nan-rate": lambda d: d["links"][0].update(bandwidth_mbps=float("nan")),
    "dup-names": lambda d: d["devices"][1].update(name="a"),
    "cpus-huge": lambda d: d["devices"][0]["limits"].update(cpus="0-4000000000"),
    "cpu-negative": lambda d: d["devices"][0]["limits"].update(cpu=-1),
    "devices-dict": lambda d: d.update(devices={"a": 1}),
    "name-null": lambda d: d["devices"][0].update(name=None),
}


@pytest.mark.parametrize("damage", DAMAGE.values(), ids=DAMAGE.keys())
def test_damaged_state_is_one_line(tmp_path: Path, damage) -> None:
    edit(tmp_path, damage)
    with pytest.raises(OmdpError) as err:
        state.load(tmp_path)
    assert "lab.json is damaged" in str(err.value) and "\n" not in str(err.value)
    assert "omdp lab down" in str(err.value)


@pytest.mark.parametrize("text", ["", "{", "[]", "null", "\xff\xfe", '{"format": 1}'])
def test_unreadable_state(tmp_path: Path, text: str) -> None:
    (tmp_path / "lab.json").write_bytes(text.encode("latin-1"))
    with pytest.raises(OmdpError, match="damaged"):
        state.load(tmp_path)
