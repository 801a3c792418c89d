"""A whole lab on this machine (root): up, status, repair, down, and nothing left after.

The shaping is measured here independently of `omdp links measure` (tests/lab/probe.py:
TCP ping-pong for the latency, the rate from two warm transfers); what `links measure`
itself reports is checked in test_lab_end_to_end.py.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from backend.chain import load_devices
from backend.cli import main
from backend.lab import cgroups, layout, lifecycle, netns
from backend.lab import state as lab_state

from .helpers import crash, kill_device, lab_objects, probe_link, why_no_lab

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(why_no_lab() is not None, reason=str(why_no_lab())),
]

DEVICES = [
    {"name": "glasses", "threads": 1, "lab": {"cpu": 0.25}},
    {"name": "phone", "threads": 1, "lab": {"cpu": 0.5, "memory_mib": 1024}},
    {"name": "cloud", "threads": 1},
]
LINKS = [
    {"from": "glasses", "to": "phone", "bandwidth_mbps": 5, "latency_ms": 10},
    {"from": "phone", "to": "cloud", "bandwidth_mbps": 20, "latency_ms": 5},
]


def test_up_status_down_leaves_nothing(make_lab, tmp_path: Path, capsys) -> None:
    folder = tmp_path / "lab"
    lid = layout.lab_id(folder)
    assert not any(lab_objects(lid, folder).values())
    report = make_lab(DEVICES, LINKS)
    assert (report.state, report.action, report.problems) == ("up", "built", [])
    during = lab_objects(lid, folder)
    assert len(during["namespaces"]) == 5  # 3 devices, 2 link relays (this kernel: no netem)
    assert len(during["interfaces"]) == 3 and during["cgroups"]
    assert sum("sshd" in p for p in during["processes"]) == 3
    assert sum("relay.py" in p for p in during["processes"]) == 2
    listening = [
        subprocess.run(
            ["ip", "netns", "exec", d["namespace"], "ss", "-ltnH"], capture_output=True, text=True
        ).stdout
        for d in report.status["devices"]
    ]
    assert all(":22 " in out for out in listening)

    devices = report.status["devices"]
    assert devices[0]["in_force"] == {"cpu": 0.25, "cpu_period_us": 100000}
    assert devices[1]["in_force"]["memory_mib"] == 1024
    assert devices[2]["in_force"] == {}
    assert [lk["shaped"] for lk in report.status["links"]] == [{"forward": True, "back": True}] * 2
    assert report.status["latency_method"] in ("relay", "netem")

    chain = load_devices(folder / "devices.toml")
    assert chain.names == ["glasses", "phone", "cloud"]
    assert all(d.kind == "ssh" for d in chain.devices)

    again = lifecycle.up(tmp_path / "lab.toml", folder)
    assert (again.state, again.action) == ("up", "already up")
    assert main(["lab", "status", str(folder), "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["state"] == "up" and shown["devices"][1]["address"] == "172.30.0.2"

    sessions = during["processes"]
    gone = lifecycle.down(folder)
    assert (gone.state, gone.action, gone.problems) == ("down", "removed", [])
    assert not any(lab_objects(lid, folder).values())
    for line in sessions:
        assert (
            not Path(f"/proc/{line.split()[0]}/cmdline").exists()
            or Path(f"/proc/{line.split()[0]}/stat").read_text().split(")")[1].split()[0] == "Z"
        )
    assert lifecycle.down(folder).action == "nothing"  # twice is harmless
    assert main(["lab", "down", str(folder)]) == 0
    assert not (folder / "devices.toml").exists()  # it would name a lab that is gone

    def host_keys() -> set[str]:
        return {
            " ".join(line.split()[1:]) for line in (folder / "known_hosts").read_text().splitlines()
        }

    keys = host_keys()
    assert lifecycle.up(tmp_path / "lab.toml", folder).action == "built"
    assert host_keys() == keys  # the same devices: what the user trusted stays valid


def test_devices_check_over_the_lab(make_lab, tmp_path: Path, capsys) -> None:
    make_lab(DEVICES[1:], LINKS[1:])
    assert main(["devices", "check", str(tmp_path / "lab" / "devices.toml"), "--json"]) == 0
    checks = json.loads(capsys.readouterr().out)
    assert [(c["name"], c["ok"], c["host_key"]) for c in checks] == [
        ("phone", True, "trusted"),
        ("cloud", True, "trusted"),
    ]


def test_dead_processes_are_repaired(make_lab, tmp_path: Path) -> None:
    folder = tmp_path / "lab"
    make_lab(DEVICES, LINKS)
    st = lab_state.load(folder)
    assert st is not None and st.links[0].relay is not None
    kill_device(folder, 1)
    crash([st.links[0].relay.pid])
    broken = lifecycle.status(folder)
    assert broken.state == "degraded"
    assert any("'phone': sshd is not running" in p for p in broken.problems), broken.problems
    assert any("relay is not running" in p for p in broken.problems), broken.problems
    fixed = lifecycle.up(tmp_path / "lab.toml", folder)
    assert (fixed.state, fixed.action, fixed.problems) == ("up", "repaired", [])
    assert lifecycle.status(folder).state == "up"


def test_a_lab_whose_up_died_comes_down(tmp_path: Path) -> None:
    """No state file, but objects with the lab's names (an `up` killed halfway): status
    says so, down removes them, and nothing else is touched."""
    folder = tmp_path / "lab"
    folder.mkdir()
    lid = layout.lab_id(folder)
    bystander = f"omdp-{lid[:5]}x-d0"  # close to the lab's names, not one of them
    try:
        netns.add(f"omdp-{lid}-d0")
        netns.add(bystander)
        netns.veth(f"om{lid}m0", None, "mgmt", f"omdp-{lid}-d0")
        groups = cgroups.LabCgroups(cgroups.detect(), lid)
        from backend.lab.spec import Limits

        groups.create("d0", Limits(cpu=0.5))
        report = lifecycle.status(folder)
        assert report.state == "degraded" and "run omdp lab down" in report.problems[0]
        gone = lifecycle.down(folder)
        assert (gone.action, gone.problems) == ("removed", [])
        assert not any(lab_objects(lid, folder).values())
        assert bystander in netns.names()
    finally:
        netns.delete(bystander)
        lifecycle.down(folder)


@pytest.mark.parametrize(
    "links",
    [
        [(5, 10), (20, 5)],
        pytest.param([(100, 10), (100, 5)], marks=pytest.mark.slow),
    ],
    ids=["5-20Mbit", "100Mbit"],
)
def test_shaping_measured_independently(make_lab, links) -> None:
    """Each device-to-device link as TCP sees it: latency within 1 ms (the quickest
    ping-pong / 2, the round trip crosses both ways) and goodput within 10 % of the shaped
    rate, upstream to downstream; at 100 Mbit/s also downstream to upstream.

    Other work on the machine wakes the relays and the probe up late: that lengthens most
    round trips (measured with both CPUs busy: a median of 20 ms for 8 ms shaped) but
    rarely the quickest, and it can hold a transfer up, never let more through than the
    shaper does. So the quickest round trip is judged, and a link that misses is probed once
    more; a link shaped wrong misses both times."""
    names = ["a", "b", "c"]
    report = make_lab(
        [{"name": n} for n in names],
        [
            {"from": x, "to": y, "bandwidth_mbps": bw, "latency_ms": lat}
            for x, y, (bw, lat) in zip(names, names[1:], links, strict=False)
        ],
    )
    devices = report.status["devices"]
    for i, (bw, lat) in enumerate(links):
        up, down = devices[i], devices[i + 1]
        tries = _probe(up["namespace"], down["namespace"], down["address"], bw, lat)
        print(f"link {i}: shaped {bw} Mbit/s {lat} ms -> {tries}")
        assert _close(tries[-1], bw, lat), (i, tries)
        if bw >= 100:
            address = layout.CHAIN_NET.format(i=i, host=1)
            back = _probe(down["namespace"], up["namespace"], address, bw, None)
            print(f"link {i} back: {back}")
            assert _close(back[-1], bw, None), (i, back)


def _probe(up_ns: str, down_ns: str, address: str, bw: float, lat: float | None) -> list:
    """(latency ms, goodput Mbit/s) of one probe of the link, and of a second one when
    the first misses."""
    tries: list[tuple[float, float]] = []
    for _ in range(2):
        found = probe_link(up_ns, down_ns, address, bw)
        tries.append((min(found["rtt_ms"]) / 2, found["goodput_mbps"]))
        if _close(tries[-1], bw, lat):
            break
    return tries


def _close(found: tuple[float, float], bw: float, lat: float | None) -> bool:
    latency, goodput = found
    return abs(goodput - bw) <= 0.1 * bw and (lat is None or abs(latency - lat) <= 1.0)
