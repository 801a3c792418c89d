"""Fixtures for the lab: chains written to tmp files, and labs brought up with a finalizer
that takes them down and checks that nothing of theirs is left on the machine."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from backend.lab import layout, lifecycle

from .helpers import lab_objects, write_chain


@pytest.fixture(autouse=True)
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Local probes and agents use a tmp cache, never the real ~/.cache/omdp."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))


@pytest.fixture
def make_lab(tmp_path: Path) -> Iterator[Callable[..., lifecycle.Report]]:
    """`make_lab(devices, links, name=...)` brings a lab up in tmp_path/<name>; every lab
    is taken down at the end, and the test fails if anything of it remains."""
    folders: list[Path] = []

    def make(devices: list[dict], links: list[dict], name: str = "lab") -> lifecycle.Report:
        folder = tmp_path / name
        folders.append(folder)
        chain = write_chain(tmp_path / f"{name}.toml", devices, links)
        return lifecycle.up(chain, folder)

    yield make
    for folder in folders:
        lifecycle.down(folder)
        left = lab_objects(layout.lab_id(folder), folder)
        assert not any(left.values()), f"lab {folder} left {left}"
