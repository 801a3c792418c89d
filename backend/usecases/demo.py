"""The demo session: YOLOv5n on three local devices made to differ like a real chain.

The glasses get 1 thread on CPU 0 with onnxruntime's graph optimisations off (a weak
device, ~70 ms for the model here), the phone 1 optimised thread on CPU 1 (~40 ms), the
cloud both CPUs (~25 ms); lab-like links; quick timing, so profiling takes well under a
minute. Opening it again resumes it: the chain and settings only make a new demo session.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from backend.chain import Chain, DeviceSpec, LinkSpec, load_devices
from backend.usecases.sessions import NewSession, OpenRequest, sessions_dir

MODEL = "yolov5n"
CANDIDATES = 6
DEVICES: list[dict[str, Any]] = [
    {
        "name": "glasses",
        "runtime": "onnxruntime",
        "threads": 1,
        "cpus": [0],
        "graph_opt": "disable",
    },
    {"name": "phone", "runtime": "onnxruntime", "threads": 1, "cpus": [1]},
    {"name": "cloud", "runtime": "onnxruntime", "threads": 2},
]
LINKS = {("glasses", "phone"): (20.0, 5.0), ("phone", "cloud"): (100.0, 20.0)}
TIMING: dict[str, Any] = {"warmup": 2, "min_runs": 5, "max_runs": 60, "max_seconds": 1.2}
NODE_TIMES_RUNS = 3
FIRST_SCREEN = "profile"  # one key (s) from there starts profiling


def demo_chain() -> Chain:
    """The demo's chain, with CPU pins this machine does not have dropped."""
    available = (
        set(os.sched_getaffinity(0))
        if hasattr(os, "sched_getaffinity")
        else set(range(os.cpu_count() or 1))
    )
    devices = []
    for table in DEVICES:
        d = dict(table)
        if any(c not in available for c in d.get("cpus", [])):
            d.pop("cpus")
        devices.append(DeviceSpec.from_dict(d))
    links = [LinkSpec(a, b, bw, lat) for (a, b), (bw, lat) in LINKS.items()]
    return Chain.of(devices, links)


def demo_request(
    path: Path | None = None,
    *,
    model: str = MODEL,
    candidates: int = CANDIDATES,
    timing: dict[str, Any] | None = None,
    node_times_runs: int = NODE_TIMES_RUNS,
    input_shapes: dict[str, list[int]] | None = None,
) -> OpenRequest:
    """Open the demo session at `path` (default `<sessions>/demo.omdp`); the keywords
    shrink it (tests use a tiny model and quicker timing)."""
    return OpenRequest(
        path=Path(path) if path is not None else sessions_dir() / "demo.omdp",
        model=model,
        input_shapes=dict(input_shapes or {}),
        new=NewSession(
            auto_candidates=candidates,
            chain=demo_chain(),
            timing=dict(timing if timing is not None else TIMING),
            node_times_runs=node_times_runs,
            ui={"screen": FIRST_SCREEN},
        ),
    )


def lab_chain(folder: Path) -> tuple[Chain, list[str]]:
    """Bring the demo chain up as an emulated lab in `folder` (or reuse it if it is up
    already, repairing what died) and return the lab's chain, with the lab's warnings.
    Needs root; without it the error says so in one line (docs/lab.md)."""
    from backend.lab import demo as lab_demo
    from backend.lab import lifecycle

    report = lifecycle.up(lab_demo.write_chain(folder), folder)
    return load_devices(folder / "devices.toml"), list(report.warnings)
