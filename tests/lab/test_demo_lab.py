"""`omdp demo --lab`: the demo chain comes up as a lab and the TUI opens on its devices."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from backend.lab import lifecycle
from omdp_tui.app import Launch

from .helpers import why_no_lab

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.skipif(why_no_lab() is not None, reason=str(why_no_lab())),
]


def test_demo_lab_opens_the_demo_on_the_lab_devices(tmp_path: Path) -> None:
    folder = tmp_path / "lab"
    args = argparse.Namespace(verb="demo", session=None, lab=True, lab_dir=str(folder))
    try:
        launch = Launch.from_args(args)
        request = launch.request()
        chain = request.new.chain
        assert chain is not None
        assert chain.names == ["glasses", "phone", "cloud"]
        assert all(d.kind == "ssh" for d in chain.devices)
        assert [(lk.bandwidth_mbps, lk.latency_ms) for lk in chain.links] == [(20, 5), (100, 20)]
        assert request.path == folder / "demo.omdp"
        assert lifecycle.status(folder).state == "up"
        again = Launch.from_args(args)  # a second start reuses the lab that is up
        assert again.lab_chain is not None and again.lab_chain.names == chain.names
    finally:
        lifecycle.down(folder)
