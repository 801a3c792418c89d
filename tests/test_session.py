"""Sessions in SQLite: schema, committed results, resume bookkeeping, bad files."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import onnx
import pytest

from backend.chain import Chain, DeviceSpec, LinkSpec
from backend.errors import OmdpError
from backend.model.analysis import analyze
from backend.profiling.plan import PlanItem, build_plan
from backend.profiling.session import SCHEMA_VERSION, Session, list_sessions

STATS = {"median": 2.0, "p10": 1.5, "p90": 3.0, "mean": 2.1, "std": 0.3, "rel_ci": 0.01}


def chain3() -> Chain:
    return Chain.of([DeviceSpec("glasses", threads=1), DeviceSpec("phone", runtime="openvino"),
                     DeviceSpec("cloud")], [LinkSpec("glasses", "phone", 20.0, 5.0)])


@pytest.fixture
def analysis(tiny_model_path):
    return analyze(tiny_model_path)


@pytest.fixture
def session(tmp_path, analysis):
    s = Session.create(tmp_path / "s.omdp", analysis, chain3(), [4, 9])
    s.save_plan(build_plan(analysis.n, [4, 9], chain3().names))
    yield s
    s.close()


def test_create_and_reopen(session, analysis, tiny_model_path):
    path = session.path
    session.close()
    s = Session.open(path)
    ref = s.model()
    assert ref.path == str(tiny_model_path.resolve()) and ref.sha256 == analysis.sha256
    assert ref.nodes == analysis.n and len(ref.node_names) == analysis.n
    assert s.summary()["nodes"] == analysis.n
    assert s.candidates() == [4, 9]
    assert s.chain().names == ["glasses", "phone", "cloud"]
    assert s.bandwidths() == [(20.0, 5.0), (100.0, 0.0)]
    assert s.conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"  # at rest: one file
    assert s.conn.execute("SELECT version FROM schema_version").fetchone()[0] == SCHEMA_VERSION
    assert len(s.plan_items()) == 3 + 6 + 3
    s.close()


def test_results_commit_with_samples_and_never_duplicate(session):
    item = PlanItem("phone", 4, 9)
    mid = session.record_result("phone", (4, 9), load_ms=12.0, samples=[1.0, 2.0, 3.0],
                                stats=STATS, runtime={"name": "openvino"}, stop="ci")
    assert session.samples(mid) == [1.0, 2.0, 3.0]
    # a second result for the same (device, segment, config) is refused: nothing doubles
    assert session.record_result("phone", (4, 9), load_ms=1.0, samples=[9.0], stats=STATS) is None
    assert session.record_error("phone", (4, 9), "boom") is None
    assert session.samples(mid) == [1.0, 2.0, 3.0]
    rows = session.conn.execute("SELECT COUNT(*) FROM measurements WHERE device='phone' AND "
                                "seg_start=4 AND seg_end=9").fetchone()[0]
    assert rows == 1
    assert item not in session.missing(session.plan_items())
    with pytest.raises(sqlite3.IntegrityError):  # the schema itself enforces it
        session.conn.execute("INSERT INTO measurements (device, seg_start, seg_end, config, "
                             "status, created_at, updated_at) SELECT device, seg_start, "
                             "seg_end, config, 'ok', 'x', 'x' FROM measurements")


def test_errors_pending_and_results_frame(session):
    plan = session.plan_items()
    session.mark_pending(plan[:3])
    session.record_result("glasses", (0, 9), load_ms=1.0, samples=[1.0] * 3, stats=STATS)
    eid = session.record_error("glasses", (0, 4), "Could not find an implementation")
    assert eid is not None
    missing = session.missing(plan)
    assert PlanItem("glasses", 0, 4) not in missing
    assert PlanItem("glasses", 0, 4) in session.missing(plan, retry_errors=True)
    # an error can later become ok (retry), keeping the same row
    mid = session.record_result("glasses", (0, 4), load_ms=1.0, samples=[1.0] * 5, stats=STATS)
    assert mid == eid
    frame = session.results_frame()
    assert list(frame.columns[:8]) == ["device", "start", "end", "median_ms", "p10_ms",
                                      "p90_ms", "samples", "status"]
    assert len(frame) == len(plan)
    assert frame.iloc[0][["device", "start", "end", "status", "samples"]].tolist() == [
        "glasses", 0, 4, "ok", 5]
    assert set(frame["status"]) == {"ok", "pending"}
    assert session.progress() == (2, len(plan))


def test_changed_device_options_need_new_measurements(session):
    session.record_result("cloud", (0, 20), load_ms=1.0, samples=[1.0], stats=STATS)
    assert PlanItem("cloud", 0, 20) not in session.missing(session.plan_items())
    chain = chain3()
    chain.devices[2].threads = 2
    session.update_chain(chain)
    assert PlanItem("cloud", 0, 20) in session.missing(session.plan_items())
    assert len(session.results_frame(all_configs=True)) == len(session.results_frame()) + 1
    with pytest.raises(OmdpError, match="glasses → phone → cloud"):
        session.update_chain(Chain.of([DeviceSpec("glasses"), DeviceSpec("cloud")]))


def test_node_times_links_partitions_ui_state(session):
    session.record_node_times("phone", {0: 0.5, 3: 1.5}, runtime="openvino", runs=3)
    assert session.has_node_times("phone") and not session.has_node_times("cloud")
    nt = session.node_times_frame()
    assert nt[["device", "position", "ms"]].values.tolist() == [["phone", 0, 0.5],
                                                                 ["phone", 3, 1.5]]
    assert nt["name"].tolist()[0] == session.model().node_names[0]
    session.set_bandwidths({1: (42.0, 7.0)})
    assert session.bandwidths() == [(20.0, 5.0), (42.0, 7.0)]
    with pytest.raises(OmdpError):
        session.set_bandwidths({0: (0.0, 1.0)})
    with pytest.raises(OmdpError):
        session.set_bandwidths({5: (1.0, 1.0)})
    session.set_link_measurement(0, 19.2, 0.4)
    links = session.links_frame()
    assert links.loc[0, "measured_bandwidth_mbps"] == 19.2
    session.save_partitions([{"name": "best", "positions": [0, 4, 9, 20], "cost_ms": 3.5,
                              "devices": ["glasses", "phone", "cloud"]}])
    assert session.partitions() == [{"name": "best", "positions": [0, 4, 9, 20],
                                     "cost_ms": 3.5, "devices": ["glasses", "phone", "cloud"]}]
    session.set_ui_state("screen", "results")
    session.set_ui_state("selection", {"row": 3})
    assert session.get_ui_state() == {"screen": "results", "selection": {"row": 3}}
    assert session.get_ui_state("theme", "dark") == "dark"


def test_a_reader_sees_commits_while_the_writer_keeps_the_file_open(session):
    reader = Session.open(session.path, check_model=False, readonly=True)
    assert reader.progress()[0] == 0
    session.record_result("cloud", (0, 20), load_ms=1.0, samples=[1.0], stats=STATS)
    assert reader.progress()[0] == 1
    reader.close()


def test_not_a_session(tmp_path):
    junk = tmp_path / "junk.omdp"
    junk.write_bytes(b"this is not sqlite at all" * 100)
    with pytest.raises(OmdpError, match=r"not an OMDP session \(not an SQLite file\)"):
        Session.open(junk)
    other = tmp_path / "other.omdp"
    sqlite3.connect(other).execute("CREATE TABLE t (x)").connection.close()
    with pytest.raises(OmdpError, match="SQLite file but not an OMDP session"):
        Session.open(other)
    with pytest.raises(OmdpError, match="no session at"):
        Session.open(tmp_path / "missing.omdp")


def test_newer_schema_is_refused(session):
    session.conn.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION + 1,))
    session.conn.commit()
    with pytest.raises(OmdpError, match="newer OMDP") as err:
        Session.open(session.path)
    assert err.value.fix == "upgrade omdp to open it"


def test_a_changed_model_file_is_refused(session, tiny_model_path, make_conv_chain, analysis):
    onnx.save(make_conv_chain(seed=7), tiny_model_path)
    with pytest.raises(OmdpError, match="changed since session"):
        Session.open(session.path)
    Session.open(session.path, check_model=False).close()  # results stay readable
    with pytest.raises(OmdpError, match="belongs to another model"):
        session.check_model(analyze(tiny_model_path))


def test_create_refuses_to_overwrite(session, analysis):
    with pytest.raises(OmdpError, match="already exists"):
        Session.create(session.path, analysis, chain3(), [])


def test_list_sessions(session, tmp_path: Path):
    session.record_result("cloud", (0, 20), load_ms=1.0, samples=[1.0], stats=STATS)
    session.record_result("glasses", (0, 9), load_ms=1.0, samples=[1.0], stats=STATS)
    session.record_error("glasses", (0, 4), "x")
    (tmp_path / "broken.omdp").write_text("garbage")
    infos = {Path(i.path).name: i for i in list_sessions(tmp_path)}
    good = infos["s.omdp"]
    assert (good.model, good.devices, good.done, good.total, good.errors) == (
        "tiny.onnx", ["glasses", "phone", "cloud"], 3, 12, 1)
    assert infos["broken.omdp"].problem and "not an OMDP session" in infos["broken.omdp"].problem
    with pytest.raises(OmdpError):
        list_sessions(tmp_path / "nope")
