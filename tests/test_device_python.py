"""What ships to devices runs on Python 3.8: statically (vermin, no syntax or library
feature newer than 3.8) and for real (compiled and imported by a Python 3.8)."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest
from pythons import find_python

from backend.remote.store import package_files

OLDEST = (3, 8)
VERMIN = [sys.executable, "-c", "import sys, vermin; sys.exit(vermin.main())"]


def test_vermin_finds_nothing_newer_than_python_3_8_in_the_device_package():
    files = [str(p) for p in package_files()]
    out = subprocess.run(
        [*VERMIN, "--target=3.8-", "--no-tips", "--violations", *files],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "Minimum required versions: 3.8" in out.stdout  # it did analyse the files


def test_vermin_flags_what_python_3_8_lacks(tmp_path):
    """The check above can fail: a 3.10 feature in a device file is reported."""
    bad = tmp_path / "agent.py"
    bad.write_text("pairs = dict(zip([1], [2], strict=True))\n")
    out = subprocess.run(
        [*VERMIN, "--target=3.8-", "--no-tips", "--violations", str(bad)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode != 0 and "zip(strict)" in out.stdout


@pytest.fixture(scope="module")
def python38() -> str:
    python, why = find_python(OLDEST)
    if python is None:
        pytest.skip(why)
    return python


def test_python_3_8_compiles_every_shipped_file_and_imports_the_stdlib_ones(python38, tmp_path):
    for path in package_files():  # as plain files side by side, the way a device has them
        shutil.copy(path, tmp_path / path.name)
    names = [p.name for p in package_files()]
    script = (
        "import py_compile, sys\n"
        f"for name in {names!r}:\n"
        "    py_compile.compile(name, doraise=True)\n"
        "import protocol, guard, probe, linkhelper, cache\n"  # the stdlib-only modules
        "job = protocol.Job.from_dict({'model_sha256': '0' * 64, 'items': [[0, 1]],"
        " 'runtime': {'name': 'onnxruntime'}})\n"
        "print(protocol.encode(protocol.Done(1, 0, False, 0.5)), job.items)\n"
    )
    out = subprocess.run(
        [python38, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert '"type":"done"' in out.stdout and "[(0, 1)]" in out.stdout
