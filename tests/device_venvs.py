"""Virtual environments that stand for real devices: an old Python with the oldest device
stack OMDP supports (pip from the package index), built once and kept in the lab's cache
folder under a hash of the interpreter and the requirement list."""

from __future__ import annotations

import hashlib
import shutil
import subprocess

import pytest
from pythons import find_python

from backend.files import cache_root

PYTHON = (3, 8)
# The oldest device stack docs/devices.md states (backend.device.probe.OLDEST_SUPPORTED);
# protobuf: the oldest onnx 1.13 takes.
OLDEST_STACK = (
    "numpy==1.21.6",
    "onnx==1.13.1",
    "protobuf==3.20.3",
    "onnxruntime==1.12.1",
    "openvino==2022.3.0",
)
WITHOUT_ONNX = tuple(r for r in OLDEST_STACK if not r.startswith(("onnx==", "protobuf")))
PIP_TIMEOUT_S = 900


def device_python(requirements: tuple[str, ...], version: tuple[int, int] = PYTHON) -> str:
    """The python of a venv of that interpreter with exactly these requirements (built on
    first use, reused after); skips the test with the reason when there is no such
    interpreter or the packages cannot be installed (no network)."""
    base, why = find_python(version)
    if base is None:
        pytest.skip(why)
    tag = "Python {}.{}".format(*version)
    key = hashlib.sha256("\n".join([base, *requirements]).encode()).hexdigest()[:16]
    venv = cache_root() / "test-venvs" / f"py{version[0]}{version[1]}-{key}"
    python = venv / "bin" / "python"
    if (venv / ".complete").exists():
        return str(python)
    shutil.rmtree(venv, ignore_errors=True)  # a build that did not finish
    venv.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([base, "-m", "venv", str(venv)], check=True, timeout=300)
    pip = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", *requirements],
        capture_output=True,
        text=True,
        timeout=PIP_TIMEOUT_S,
    )
    if pip.returncode != 0:
        shutil.rmtree(venv, ignore_errors=True)
        last = (pip.stderr.strip().splitlines() or ["no output"])[-1]
        pytest.skip(f"cannot install {' '.join(requirements)} for {tag}: {last}")
    (venv / ".complete").touch()
    return str(python)
