"""Shaping commands and the check of what is in force (no root needed)."""

from __future__ import annotations

from backend.lab import shaping
from backend.lab.shaping import Shape


def test_bucket_is_one_frame_at_low_rates_and_200us_at_high() -> None:
    assert Shape(5, 10).burst_bytes == shaping.FRAME_BYTES
    assert Shape(20, 5).burst_bytes == shaping.FRAME_BYTES
    assert Shape(1000, 0).burst_bytes == 25_000
    assert Shape(5, 10).limit_bytes == 1 << 20
    assert Shape(1000, 0).limit_bytes == 25_000_000


def test_relay_lab_shapes_the_rate_only() -> None:
    (cmd,) = shaping.commands("next", Shape(20, 5), shaping.RELAY)
    assert cmd[:6] == ["qdisc", "replace", "dev", "next", "root", "handle"]
    assert cmd[7:] == ["tbf", "rate", "20000000bit", "burst", "1600", "limit", str(1 << 20)]


def test_netem_lab_delays_then_shapes() -> None:
    root, child = shaping.commands("next", Shape(5, 10), shaping.NETEM)
    assert root[root.index("netem") : root.index("netem") + 3] == ["netem", "delay", "10ms"]
    assert child[4:6] == ["parent", "1:1"] and "tbf" in child


def test_problem_names_what_differs() -> None:
    tbf = {"kind": "tbf", "options": {"rate": 625000, "burst": 1600}}
    assert shaping.problem([tbf], Shape(5, 10), shaping.RELAY) is None
    assert "rate" in (shaping.problem([tbf], Shape(20, 10), shaping.RELAY) or "")
    assert "no rate limit" in (shaping.problem([], Shape(5, 10), shaping.RELAY) or "")
    assert "netem" in (shaping.problem([tbf], Shape(5, 10), shaping.NETEM) or "")
    assert shaping.problem([{"kind": "netem"}, tbf], Shape(5, 10), shaping.NETEM) is None
