"""Chained validation on three local devices: real agents profile a small model, then each
chosen partition runs as a chain of real stage processes (onnxruntime, TCP between them)
and is compared with its prediction and with the full model's output."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import signal
import socket
from pathlib import Path

import numpy as np
import onnx
import pytest
from models import skip_model
from old_sessions import make_version

from backend.cli import main
from backend.device import tensorwire as wire
from backend.export import read_export
from backend.profiling import schema
from backend.profiling.session import Session
from backend.usecases import validations
from backend.usecases.validations import ValidateOptions, ValidationEvent

DEVICES = """
[[device]]
name = "glasses"
threads = 1

[[device]]
name = "phone"
threads = 1

[[device]]
name = "cloud"
threads = 1

[[link]]
from = "glasses"
to = "phone"
bandwidth_mbps = 20
latency_ms = 5

[[link]]
from = "phone"
to = "cloud"
bandwidth_mbps = 100
latency_ms = 1
"""
FAST = ["--warmup", "1", "--min-runs", "3", "--max-runs", "5", "--max-seconds", "0.2"]


@pytest.fixture(scope="module")
def profiled(tmp_path_factory) -> Path:
    """The skip model (a two-tensor cut, an intermediate output) profiled for real on
    three local devices, candidates 2 and 6."""
    folder = tmp_path_factory.mktemp("validate")
    os.environ.setdefault("OMDP_CACHE_DIR", str(folder / "cache"))
    model = folder / "skip.onnx"
    onnx.save(skip_model(), model)
    devices = folder / "devices.toml"
    devices.write_text(DEVICES)
    session = folder / "s.omdp"
    args = ["profile", model, "--devices", devices, "--candidates", "2,6", "--session", session]
    assert main([str(a) for a in [*args, *FAST]]) == 0
    return session


@pytest.fixture
def session_copy(profiled: Path, tmp_path: Path, monkeypatch) -> Path:
    monkeypatch.setenv("OMDP_CACHE_DIR", str(tmp_path / "cache"))
    path = tmp_path / "s.omdp"
    path.write_bytes(profiled.read_bytes())
    (tmp_path / "skip.onnx").write_bytes((profiled.parent / "skip.onnx").read_bytes())
    with Session.open(path) as s:  # the model is found where the session says
        assert s.model().path
    return path


def _plan(session: Session, **kw):
    options = ValidateOptions(frames=6, warmup=2, timeout_s=60, **kw)
    return validations.prepare(session, options)


def test_a_relay_chain_computes_the_model_and_is_stored(session_copy: Path):
    """glasses computes, phone only relays, cloud computes: every tensor of the two-tensor
    cut crosses two real TCP links; the output matches the full model's."""
    with Session.open(session_copy, check_model=False) as s:
        plan = _plan(s, top=30)
        relay = [
            r
            for r in plan.routes
            if [st.role for st in r.stages] == ["compute", "relay", "compute"]
        ]
        assert relay, [r.positions for r in plan.routes]
        plan = dataclasses.replace(plan, routes=relay[:1])
        events: list[ValidationEvent] = []
        outcome = asyncio.run(validations.run(plan, events.append))
        assert outcome.failed == {}
        (v,) = outcome.validations
        assert v.output.ok and v.output.max_abs < 1e-4
        assert [h.link for h in v.hops] == ["glasses-phone", "phone-cloud"]
        assert all(h.loopback for h in v.hops) and "loopback" in v.notes[0]
        # both hops carry the same cut, so the same predicted time under the same link values
        route = relay[0]
        assert [h.predicted_ms for h in v.hops] == [h.predicted_ms for h in route.hops]
        assert v.hops[0].bytes == v.hops[1].bytes > 0
        assert v.stages[1].measured is None and v.stages[1].role == "relay"
        # each computing segment was also timed alone, one device at a time, before frames
        assert v.stages[0].solo is not None and v.stages[2].solo is not None
        assert v.stages[1].solo is None
        assert [e.phase for e in events[:3]] == ["start", "solo", "solo"]
        assert all(st.measured.median > 0 for st in (v.stages[0], v.stages[2]))
        # end to end holds every stage and hop: what is left (hand-off) is small and ≥ 0
        parts = sum(st.measured.median for st in v.stages if st.measured) + sum(
            h.measured.median for h in v.hops
        )
        assert v.latency.median == pytest.approx(parts + v.handoff.median, rel=0.5)
        assert v.handoff.median > -0.5
        assert len(v.warmup_ms) == 2 and v.frames == 6
        assert [f["frame"] for f in v.per_frame] == [2, 3, 4, 5, 6, 7]
        assert v.latency.median == pytest.approx(
            float(np.median([f["end_to_end"] for f in v.per_frame]))
        )
        assert all(f["compute"][1] is None and len(f["transfer"]) == 2 for f in v.per_frame)
        predicted = route.partition.latency_ms
        assert v.predicted["measured"] == pytest.approx(predicted)
        assert v.error_pct["measured"] == pytest.approx(
            (predicted - v.latency.median) / v.latency.median * 100
        )
        assert events[0].phase == "start" and events[-1].phase == "done"
        assert [e.done for e in events if e.phase == "frames"] == list(range(1, 9))
        rows = s.validations()
    assert len(rows) == 1
    row = rows[0]
    assert row["positions"] == route.positions and row["objective"] == "latency"
    assert set(row["configs"]) == {"glasses", "phone", "cloud"}
    assert row["links"] == [[20.0, 5.0], [100.0, 1.0]] and row["output_ok"]
    assert row["measured"] == pytest.approx(v.latency.median)
    assert row["report"]["hops"][1]["link"] == "phone-cloud"


def test_top_k_on_the_cli_and_again_replaces_not_duplicates(session_copy: Path, capsys):
    args = ["validate", str(session_copy), "--top", "2", "--frames", "3", "--warmup", "1"]
    assert main([*args, "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [v["rank"] for v in doc["validations"]] == [1, 2] and doc["failed"] == {}
    assert all(v["output"]["ok"] for v in doc["validations"])
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "#1 positions" in text and "matches the full model" in text
    with Session.open(session_copy, check_model=False) as s:
        assert len(s.validations()) == 2  # same partitions, links, configs: replaced
    assert main([*args, "--bw", "glasses-phone=50"]) == 0  # other link values: new rows
    with Session.open(session_copy, check_model=False) as s:
        rows = s.validations()
    assert len(rows) == 4
    capsys.readouterr()
    # the export carries them with the partition, both link settings
    out = session_copy.parent / "p.json"
    assert main(["export", str(session_copy), "--rank", "1,2", "-o", str(out)]) == 0
    doc = read_export(out)
    for part in doc["partitions"]:
        runs = part["validations"]
        assert sorted(r["links"][0][0] for r in runs) == [20.0, 50.0]
        assert all(r["output_ok"] and r["measured"] > 0 for r in runs)
        stored = [r for r in rows if r["positions"] == [0, *[s["end"] for s in part["segments"]]]]
        assert sorted(r["measured"] for r in runs) == sorted(r["measured"] for r in stored)


def test_throughput_reports_frames_per_second(session_copy: Path):
    with Session.open(session_copy, check_model=False) as s:
        plan = _plan(s, ranks=(1,), objective="throughput")
        outcome = asyncio.run(validations.run(plan))
    (v,) = outcome.validations
    assert v.fps is not None and v.fps > 0 and v.measured_value == v.fps
    assert v.predicted["measured"] == pytest.approx(1000 / plan.routes[0].partition.total_ms)


def test_a_device_failing_mid_run_fails_that_partition_only(session_copy: Path):
    """phone is killed after three frames of the partition that uses it: that one is
    reported with the device's name and not stored; the next partition still runs."""
    with Session.open(session_copy, check_model=False) as s:
        plan = _plan(s, top=30)
        uses_phone = next(r for r in plan.routes if r.stages[1:2] and r.stages[1].segment)
        other = next(r for r in plan.routes if r is not uses_phone)
        plan = dataclasses.replace(plan, routes=[uses_phone, other])
        killed: list[int] = []

        def kill_phone(e: ValidationEvent) -> None:
            if e.rank == uses_phone.partition.rank and e.phase == "frames" and e.done == 3:
                os.kill(e.pids["phone"], signal.SIGKILL)
                killed.append(e.pids["phone"])

        outcome = asyncio.run(validations.run(plan, kill_phone))
        assert killed
        assert list(outcome.failed) == [uses_phone.partition.rank]
        assert "'phone'" in outcome.failed[uses_phone.partition.rank]
        assert [v.rank for v in outcome.validations] == [other.partition.rank]
        assert [r["positions"] for r in s.validations()] == [other.positions]


def test_an_input_file_is_the_chains_input(session_copy: Path, tmp_path: Path):
    x = np.random.default_rng(3).standard_normal((1, 3, 8, 8)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    with Session.open(session_copy, check_model=False) as s:
        plan = _plan(s, ranks=(2,), input_npy=str(tmp_path / "x.npy"))
        assert np.array_equal(plan.inputs["x"], x)
        outcome = asyncio.run(validations.run(plan))
    assert outcome.validations[0].output.ok


def test_an_older_session_gains_the_validations_table(session_copy: Path):
    import sqlite3

    conn = sqlite3.connect(session_copy)
    make_version(conn, 1)
    conn.close()
    with Session.open(session_copy, check_model=False) as s:
        assert s.validations() == []
    conn = sqlite3.connect(session_copy)
    assert conn.execute("SELECT version FROM schema_version").fetchone()[0] == schema.VERSION
    conn.close()


# -- the wire between stages ---------------------------------------------------------------------


def _pair(token: bytes = b"t" * 64) -> tuple[wire.Link, wire.Link]:
    srv = wire.listen("127.0.0.1")
    port = srv.getsockname()[1]
    up = wire.connect("127.0.0.1", port, token, 5.0, 1 << 20)
    down = wire.accept(srv, b"t" * 64, 5.0, 1 << 20)
    return up, down


def test_frames_cross_whole_and_the_clock_offset_on_one_host_is_near_zero():
    up, down = _pair()
    arrays = {"a": np.arange(12, dtype=np.float32).reshape(3, 4), "b": np.array(7, np.int64)}
    up.send_frame(5, arrays)
    assert down.read_kind() == wire.FRAME
    frame, got, raw = down.read_frame_body()
    assert frame == 5 and set(got) == {"a", "b"}
    assert np.array_equal(got["a"], arrays["a"]) and got["b"] == 7
    assert raw.startswith(wire.FRAME)

    import threading

    t = threading.Thread(
        target=lambda: [down.read_kind() and down.answer_clock() for _ in range(8)]
    )
    t.start()
    offset, trip = up.clock_rounds(8)
    t.join()
    assert abs(offset) < 2e-3 and 0 < trip < 0.05  # one clock: the offset is noise
    up.close()
    down.close()


def test_a_wrong_token_is_refused_and_a_bad_header_rejected():
    srv = wire.listen("127.0.0.1")
    port = srv.getsockname()[1]
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(b"x" * 64)
    with pytest.raises(PermissionError, match="wrong token"):
        wire.accept(srv, b"t" * 64, 5.0, 1 << 20)
    sock.close()
    for head, why in (
        (b'{"i": 0, "t": [["a", "|O", [1], 8]]}', "not a plain number"),
        (b'{"i": 0, "t": [["a", "<f4", [2], 4]]}', "do not match"),
        (b'{"i": 0, "t": [["a", "<f4", [-1], 4]]}', "malformed shape"),
        (b'{"t": []}', "malformed frame header"),
    ):
        with pytest.raises(ValueError, match=why):
            wire.parse_header(head)


def test_a_peer_beyond_its_byte_budget_is_cut_off():
    srv = wire.listen("127.0.0.1")
    port = srv.getsockname()[1]
    up = wire.connect("127.0.0.1", port, b"t" * 64, 5.0, 1 << 30)
    down = wire.accept(srv, b"t" * 64, 5.0, 1000)
    up.send_frame(0, {"a": np.zeros(10_000, np.float32)})
    down.read_kind()
    with pytest.raises(OverflowError):
        down.read_frame_body()
    up.close()
    down.close()


# -- link models --------------------------------------------------------------------------------


def test_the_fitted_link_model_keeps_each_links_measured_efficiency():
    from backend.solver.link_models import effective_links

    configured = [(20.0, 5.0), (100.0, 1.0)]
    measured = [(19.0, 5.5), (None, None)]
    bw, lat = effective_links("typed", [40.0, 100.0], [5.0, 1.0], configured, measured)
    assert bw.tolist() == [40.0, 100.0] and lat.tolist() == [5.0, 1.0]
    bw, lat = effective_links("fitted", [40.0, 100.0], [5.0, 1.0], configured, measured)
    assert bw.tolist() == pytest.approx([38.0, 100.0])  # 95 % of any typed rate
    assert lat.tolist() == pytest.approx([5.5, 1.0])  # unmeasured: as typed


def test_validations_carry_both_link_models_and_rank_with_the_chosen_one(session_copy: Path):
    with Session.open(session_copy, check_model=False) as s:
        s.set_link_measurement(0, 10.0, 7.0)  # glasses-phone: half its 20 Mbit/s, +2 ms
        typed = _plan(s, ranks=(2,), bandwidth=("glasses-phone=40",))
        fitted = _plan(s, ranks=(2,), bandwidth=("glasses-phone=40",), link_model="fitted")
        assert typed.links == fitted.links == [(40.0, 5.0), (100.0, 1.0)]  # typed values
        route = fitted.routes[0]
        assert any(h.link == "glasses-phone" for h in route.hops)
        for hop, t_ms, f_ms in zip(
            route.hops, route.link_ms["typed"], route.link_ms["fitted"], strict=True
        ):
            if hop.link == "glasses-phone":
                assert t_ms == pytest.approx(hop.bytes * 8 / 40e3 + 5.0)
                assert f_ms == pytest.approx(hop.bytes * 8 / 20e3 + 7.0)
            assert hop.predicted_ms == pytest.approx(f_ms)  # ranked with the fitted model
        outcome = asyncio.run(validations.run(fitted))
    (v,) = outcome.validations
    assert v.link_model == "fitted" and set(v.by_link_model) == {"typed", "fitted"}
    assert v.by_link_model["fitted"] == pytest.approx(v.predicted[v.cost_model])
    assert all(set(h.by_link_model) == {"typed", "fitted"} for h in v.hops)


def test_the_output_goes_on_to_a_sink_after_the_last_computing_device(session_copy: Path):
    with Session.open(session_copy, check_model=False) as s:
        plan = _plan(s, top=30, sink="cloud")
        to_sink = [r for r in plan.routes if r.stages[-1].role == "sink"]
        assert to_sink, [r.positions for r in plan.routes]
        plan = dataclasses.replace(plan, routes=to_sink[:1])
        outcome = asyncio.run(validations.run(plan))
    (v,) = outcome.validations
    assert v.output.ok and v.stages[-1].device == "cloud" and v.stages[-1].measured is None
    assert v.hops[-1].dst == "cloud" and v.hops[-1].position == v.positions[-1]


def test_a_partition_ranked_by_layer_sums_is_predicted_by_that_model_too(session_copy: Path):
    with Session.open(session_copy, check_model=False) as s:
        plan = _plan(s, ranks=(1,), cost_model="layer-sum")
        outcome = asyncio.run(validations.run(plan))
    (v,) = outcome.validations
    assert v.cost_model == "layer-sum"
    assert {"measured", "estimated", "layer-sum"} <= set(v.predicted)
    assert v.predicted["layer-sum"] == pytest.approx(plan.routes[0].partition.total_ms)
