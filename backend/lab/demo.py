"""The demo chain as a lab: glasses → phone → cloud with a quarter, a half and a whole CPU,
over 20 and 100 Mbit/s links (what `omdp demo --lab` brings up)."""

from __future__ import annotations

from pathlib import Path

from backend.files import atomic_write

CHAIN = """\
# The demo chain as an emulated lab (docs/lab.md): one onnxruntime thread per device,
# made different by their CPU shares, over the demo's links.

[[device]]
name = "glasses"
threads = 1
[device.lab]
cpu = 0.25

[[device]]
name = "phone"
threads = 1
[device.lab]
cpu = 0.5

[[device]]
name = "cloud"
threads = 1
[device.lab]
cpu = 1.0

[[link]]
from = "glasses"
to = "phone"
bandwidth_mbps = 20
latency_ms = 5

[[link]]
from = "phone"
to = "cloud"
bandwidth_mbps = 100
latency_ms = 20
"""


def write_chain(folder: Path) -> Path:
    """The demo chain as `folder/demo-chain.toml` (the file `omdp lab up` reads)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "demo-chain.toml"
    atomic_write(path, CHAIN)
    return path
