"""Fixtures: an SSH lab of in-process asyncssh devices (see helpers.py) and a small model."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import onnx
import pytest

from .helpers import LoopThread, SshLab, chain_model


@pytest.fixture(autouse=True)
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Local probes and agents use a tmp cache, never the real ~/.cache/omdp."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))


@pytest.fixture(scope="session")
def server_loop() -> Iterator[LoopThread]:
    loop = LoopThread()
    yield loop
    loop.stop()


@pytest.fixture
def ssh_lab(tmp_path: Path, server_loop: LoopThread) -> Iterator[SshLab]:
    lab = SshLab(tmp_path, server_loop)
    yield lab
    lab.close()


@pytest.fixture
def small_model(tmp_path: Path) -> Path:
    path = tmp_path / "chain.onnx"
    onnx.save(chain_model(), str(path))
    return path
