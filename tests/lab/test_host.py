"""What the lab needs from the machine: each lack is one line with its fix."""

from __future__ import annotations

import pytest

from backend.errors import OmdpError
from backend.lab import host


def test_root_has_what_it_needs() -> None:
    host.require_privileges(caps=(1 << 12) | (1 << 21))


@pytest.mark.parametrize(
    "caps,missing",
    [
        (0, "CAP_NET_ADMIN and CAP_SYS_ADMIN"),
        (1 << 21, "CAP_NET_ADMIN"),
        (1 << 12, "CAP_SYS_ADMIN"),
    ],
)
def test_missing_privileges_are_named(caps: int, missing: str) -> None:
    with pytest.raises(OmdpError) as err:
        host.require_privileges(caps=caps)
    text = str(err.value)
    assert f"lacks {missing} " in text and "needs root" in text
    assert "omdp demo" in text  # the local-device demo needs none


def test_caps_are_read_from_proc_status() -> None:
    assert host.effective_caps("Name:\tx\nCapEff:\t000001ffffffffff\n") == 0x1FFFFFFFFFF
    assert host.effective_caps("Name:\tx\n") == 0


def test_missing_tools_give_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.setattr(host, "SBIN_DIRS", ())
    with pytest.raises(OmdpError) as err:
        host.require_tools()
    assert "apt-get install -y iproute2 openssh-client openssh-server" in str(err.value)
