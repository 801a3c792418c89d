"""Names and addresses of a lab: unique per folder, short enough for Linux, never shared."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from backend.errors import OmdpError
from backend.lab import layout


def test_ids_follow_the_real_path(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "a")
    assert layout.lab_id(tmp_path / "a") == layout.lab_id(tmp_path / "link")
    assert layout.lab_id(tmp_path / "a") != layout.lab_id(tmp_path / "b")
    assert layout.ID_RE.fullmatch(layout.lab_id(tmp_path))


def test_plan_of_three_devices() -> None:
    lay = layout.plan("abc123", ["glasses", "phone", "cloud"], [(5, 10), (20, 5)], "10.200.7.0/24")
    assert [d.namespace for d in lay.devices] == [
        "omdp-abc123-d0",
        "omdp-abc123-d1",
        "omdp-abc123-d2",
    ]
    assert [d.host for d in lay.devices] == ["10.200.7.2", "10.200.7.6", "10.200.7.10"]
    assert [d.lab_ip for d in lay.devices] == ["10.200.7.1", "10.200.7.5", "10.200.7.9"]
    # a device is reached by its upstream neighbour at its end of their link
    assert [d.address for d in lay.devices] == [None, "172.30.0.2", "172.30.1.2"]
    assert [d.next_ip for d in lay.devices] == ["172.30.0.1", "172.30.1.1", None]
    assert [(lk.src, lk.dst, lk.namespace) for lk in lay.links] == [
        ("glasses", "phone", "omdp-abc123-l0"),
        ("phone", "cloud", "omdp-abc123-l1"),
    ]
    assert lay.namespaces(relay=False) == [d.namespace for d in lay.devices]


def test_names_fit_linux_limits_for_the_largest_lab() -> None:
    names = [f"device-{i}" for i in range(32)]
    lay = layout.plan("ffffff", names, [(1, 0)] * 31, "10.239.255.0/24")
    assert all(len(d.mgmt_if) <= 15 for d in lay.devices)
    net = ipaddress.ip_network(lay.mgmt_net)
    assert all(ipaddress.ip_address(d.host) in net for d in lay.devices)
    assert len({d.host for d in lay.devices}) == 32


def test_ownership_is_by_exact_name() -> None:
    assert layout.owned_namespace("abc123", "omdp-abc123-d0")
    assert layout.owned_namespace("abc123", "omdp-abc123-l31")
    for other in (
        "omdp-abc124-d0",
        "omdp-abc123-d0x",
        "omdp-abc123-",
        "netns0",
        "xomdp-abc123-d0",
        "omdp-abc123-d0\n",
    ):
        assert not layout.owned_namespace("abc123", other), other
    assert layout.owned_interface("abc123", "omabc123m0")
    for other in ("eth0", "omabc123m", "omabc124m0", "omabc123m0x"):
        assert not layout.owned_interface("abc123", other), other


def test_management_network_avoids_what_is_taken() -> None:
    first = layout.choose_mgmt_net("000000", [])
    assert first == "10.200.0.0/24"
    taken = [ipaddress.ip_network("10.200.0.0/23"), ipaddress.ip_network("0.0.0.0/0")]
    assert layout.choose_mgmt_net("000000", taken) == "10.200.2.0/24"
    with pytest.raises(OmdpError, match="no free /24"):
        layout.choose_mgmt_net("000000", [ipaddress.ip_network("10.0.0.0/8")])


@pytest.mark.parametrize(
    "name,folder",
    [
        ("glasses", "00-glasses"),
        ("a b/c", "00-a_b_c"),
        ("..", "00-device"),
        ("ünï", "00-_n_"),
        ("x" * 80, "00-" + "x" * 40),
    ],
)
def test_device_folders_are_safe(name: str, folder: str) -> None:
    assert layout.device_folder(0, name) == folder


def test_folder_paths_go_into_sshd_configs(tmp_path: Path) -> None:
    assert layout.check_folder(Path("rel")).is_absolute()
    for bad in ('a"b', "a\nb"):
        with pytest.raises(OmdpError):
            layout.check_folder(tmp_path / bad)
