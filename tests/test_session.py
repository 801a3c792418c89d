"""Sessions in SQLite: schema, committed results, resume bookkeeping, bad files."""

from __future__ import annotations

import errno
import os
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import onnx
import pytest
from old_sessions import make_version

from backend.chain import Chain, DeviceSpec, LinkSpec
from backend.errors import OmdpError
from backend.model.analysis import analyze
from backend.profiling import claim, noise
from backend.profiling.plan import PlanItem, build_plan
from backend.profiling.session import (
    SCHEMA_VERSION,
    ClaimLost,
    Session,
    SessionExists,
    default_path,
    list_sessions,
)

STATS = {"median": 2.0, "p10": 1.5, "p90": 3.0, "mean": 2.1, "std": 0.3, "rel_ci": 0.01}


def chain3() -> Chain:
    return Chain.of(
        [
            DeviceSpec("glasses", threads=1),
            DeviceSpec("phone", runtime="openvino"),
            DeviceSpec("cloud"),
        ],
        [LinkSpec("glasses", "phone", 20.0, 5.0)],
    )


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
    mid = session.record_result(
        "phone",
        (4, 9),
        load_ms=12.0,
        samples=[1.0, 2.0, 3.0],
        stats=STATS,
        runtime={"name": "openvino"},
        stop="ci",
    )
    assert session.samples(mid) == [1.0, 2.0, 3.0]
    # a second result for the same (device, segment, config) is refused: nothing doubles
    assert session.record_result("phone", (4, 9), load_ms=1.0, samples=[9.0], stats=STATS) is None
    assert session.record_error("phone", (4, 9), "boom") is None
    assert session.samples(mid) == [1.0, 2.0, 3.0]
    rows = session.conn.execute(
        "SELECT COUNT(*) FROM measurements WHERE device='phone' AND seg_start=4 AND seg_end=9"
    ).fetchone()[0]
    assert rows == 1
    assert item not in session.missing(session.plan_items())
    with pytest.raises(sqlite3.IntegrityError):  # the schema itself enforces it
        session.conn.execute(
            "INSERT INTO measurements (device, seg_start, seg_end, config, "
            "status, created_at, updated_at) SELECT device, seg_start, "
            "seg_end, config, 'ok', 'x', 'x' FROM measurements"
        )


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
    assert list(frame.columns[:8]) == [
        "device",
        "start",
        "end",
        "median_ms",
        "p10_ms",
        "p90_ms",
        "samples",
        "status",
    ]
    assert len(frame) == len(plan)
    assert frame.iloc[0][["device", "start", "end", "status", "samples"]].tolist() == [
        "glasses",
        0,
        4,
        "ok",
        5,
    ]
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
    assert nt[["device", "position", "ms"]].values.tolist() == [
        ["phone", 0, 0.5],
        ["phone", 3, 1.5],
    ]
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
    session.save_partitions(
        [
            {
                "name": "best",
                "positions": [0, 4, 9, 20],
                "cost_ms": 3.5,
                "devices": ["glasses", "phone", "cloud"],
            }
        ]
    )
    assert session.partitions() == [
        {
            "name": "best",
            "positions": [0, 4, 9, 20],
            "cost_ms": 3.5,
            "devices": ["glasses", "phone", "cloud"],
        }
    ]
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
        "tiny.onnx",
        ["glasses", "phone", "cloud"],
        3,
        12,
        1,
    )
    assert infos["broken.omdp"].problem and "not an OMDP session" in infos["broken.omdp"].problem
    with pytest.raises(OmdpError):
        list_sessions(tmp_path / "nope")


# -- created whole or not at all -------------------------------------------------------------


def test_create_puts_only_the_finished_file_in_place(tmp_path, analysis):
    path = tmp_path / "new" / "deeper" / "s.omdp"
    Session.create(path, analysis, chain3(), [4, 9]).close()
    assert [p.name for p in path.parent.iterdir()] == ["s.omdp"]  # no temporary, no journal
    with Session.open(path) as s:
        assert s.chain().names == ["glasses", "phone", "cloud"] and s.candidates() == [4, 9]


def test_create_never_replaces_a_file_that_appears_meanwhile(tmp_path, analysis, monkeypatch):
    path = tmp_path / "s.omdp"
    link = os.link

    def another_creator_first(src, dst):
        Path(dst).write_bytes(b"the other creator's session")
        return link(src, dst)

    monkeypatch.setattr(os, "link", another_creator_first)
    with pytest.raises(SessionExists, match="already exists"):
        Session.create(path, analysis, chain3(), [4])
    assert path.read_bytes() == b"the other creator's session"  # nothing deleted or replaced
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.omdp", "tiny.onnx"]


@pytest.mark.parametrize("unnamed", [True, False], ids=["O_TMPFILE", "named temporary"])
def test_create_on_a_filesystem_without_hard_links(tmp_path, analysis, monkeypatch, unnamed):
    def no_links(src, dst):
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_links)
    if not unnamed:
        monkeypatch.delattr(os, "O_TMPFILE", raising=False)
    path = tmp_path / "s.omdp"
    Session.create(path, analysis, chain3(), [4]).close()
    before = path.read_bytes()
    with pytest.raises(SessionExists):
        Session.create(path, analysis, chain3(), [9])
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.omdp", "tiny.onnx"]


@pytest.mark.parametrize("unnamed", [True, False], ids=["O_TMPFILE", "named temporary"])
def test_a_failed_create_leaves_nothing_behind(tmp_path, analysis, monkeypatch, unnamed):
    def disk_full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    if not unnamed:
        monkeypatch.delattr(os, "O_TMPFILE", raising=False)
    with pytest.raises(OmdpError, match="disk is full") as err:
        Session.create(tmp_path / "made" / "for" / "s.omdp", analysis, chain3(), [4])
    assert "\n" not in str(err.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.onnx"]  # folders made, removed


def test_a_kill_while_creating_leaves_nothing(tmp_path, analysis):
    """Killed at the worst moment (the file written, about to get its name): no session
    file, nothing else either, and the next create works."""
    path = tmp_path / "s.omdp"
    pid = os.fork()
    if pid == 0:
        try:
            os.link = lambda src, dst: os.kill(os.getpid(), 9)
            Session.create(path, analysis, chain3(), [4, 9])
        finally:
            os._exit(1)
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == 9
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.onnx"]
    Session.create(path, analysis, chain3(), [4, 9]).close()


def test_a_dry_run_session_writes_nothing(tmp_path, analysis, session):
    draft = Session.create(tmp_path / "d.omdp", analysis, chain3(), [4], in_memory=True)
    draft.save_plan(build_plan(analysis.n, [4], chain3().names))
    draft.record_result("cloud", (0, 20), load_ms=1.0, samples=[1.0], stats=STATS)
    draft.close()
    before = session.path.read_bytes()
    copy = Session.open(session.path, readonly=True).to_memory()
    copy.update_chain(chain3())
    copy.record_result("cloud", (0, 20), load_ms=1.0, samples=[1.0], stats=STATS)
    copy.close()
    assert not (tmp_path / "d.omdp").exists() and session.path.read_bytes() == before


@pytest.fixture
def small_fs(tmp_path):
    """A 1 MiB filesystem (a tmpfs; needs root)."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    if subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)], capture_output=True
    ).returncode:
        pytest.skip("needs permission to mount a tmpfs")
    yield mnt
    subprocess.run(["umount", str(mnt)], check=True)


def _fill(folder: Path) -> Path:
    filler = folder / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        while os.write(fd, b"\0" * 4096):
            pass
    except OSError:
        pass
    finally:
        os.close(fd)
    return filler


def test_a_full_disk_is_one_line_and_loses_nothing(small_fs, analysis):
    path = small_fs / "s.omdp"
    filler = _fill(small_fs)
    with pytest.raises(OmdpError, match="disk is full"):
        Session.create(path, analysis, chain3(), [4, 9])
    assert sorted(p.name for p in small_fs.iterdir()) == ["filler"]
    filler.unlink()
    s = Session.create(path, analysis, chain3(), [4, 9])
    s.save_plan(build_plan(analysis.n, [4, 9], chain3().names))
    filler = _fill(small_fs)
    stored = {}
    with pytest.raises(OmdpError, match="disk is full") as err:
        for it in s.plan_items() * 50:
            samples = [float(len(stored) + 1)] * 2000
            mid = s.record_result(
                it.device,
                it.segment,
                load_ms=1.0,
                samples=samples,
                stats=STATS,
                config=f"c{len(stored)}",
            )
            stored[mid] = samples
    assert str(s.path) in str(err.value) and "\n" not in str(err.value)
    s.close()
    filler.unlink()
    with Session.open(path) as again:  # whole, with every result committed before it
        assert {m: again.samples(m) for m in stored} == stored
        assert again.conn.execute("SELECT COUNT(*) FROM measurements").fetchone()[0] == len(stored)


# -- names are paths -----------------------------------------------------------------------

NAMES = [
    "other.db#run1.omdp",
    "net?mode=ro.omdp",
    "50%.omdp",
    "a%3Fb%20c.omdp",
    "sp ace.omdp",
    "new\nline.omdp",
    "ünïcödé.omdp",
    "-dash.omdp",
    "file:x.omdp",
    ":memory:",
    "x.omdp?mode=memory&cache=shared",
    "#",
    "%00.omdp",
]


@pytest.mark.parametrize("name", NAMES)
def test_any_file_name_names_exactly_that_file(tmp_path, analysis, monkeypatch, name):
    monkeypatch.chdir(tmp_path)
    other = sqlite3.connect(tmp_path / "other.db")
    other.execute("CREATE TABLE notes (x)")
    other.commit()
    other.close()
    before = (tmp_path / "other.db").read_bytes()
    Session.create(name, analysis, chain3(), [4]).close()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["other.db", "tiny.onnx", name])
    assert (tmp_path / "other.db").read_bytes() == before
    with Session.open(name, readonly=True) as s:
        assert s.candidates() == [4]
    with Session.open(tmp_path / name) as s:
        s.set_ui_state("seen", True)
    assert (tmp_path / "other.db").read_bytes() == before


def test_the_default_name_keeps_every_character_of_the_model_name():
    assert default_path("models/net#v2.onnx") == Path("sessions/net#v2.omdp")
    assert default_path("net?mode=ro.onnx", "f") == Path("f/net?mode=ro.omdp")
    assert default_path("yolov5n") == Path("sessions/yolov5n.omdp")


# -- one profiler per session ----------------------------------------------------------------


def test_a_second_profiler_stops_at_once_naming_the_first(session):
    with session.claim_profiler() as me:
        assert session.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        other = Session.open(session.path, check_model=False)
        held = rf"being profiled by pid {os.getpid()} on {socket.gethostname()} since"
        with pytest.raises(OmdpError, match=held) as err, other.claim_profiler():
            pass
        assert "\n" not in str(err.value)
        with pytest.raises(OmdpError, match="being profiled"):  # nor may it record quietly
            other.record_result("cloud", (0, 20), load_ms=1.0, samples=[9.0], stats=STATS)
        other.set_ui_state("screen", "results")  # other writes do not touch timings
        reader = Session.open(session.path, readonly=True)  # readers never wait
        session.record_result("cloud", (0, 20), load_ms=1.0, samples=[1.0], stats=STATS)
        assert reader.progress()[0] == 1 and reader.profiler().token == me.token
        reader.close()
        other.close()
    assert session.conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"  # at rest
    assert session.profiler() is None
    with Session.open(session.path) as other, other.claim_profiler():  # free again
        pass


def _plant(session: Session, holder: claim.Holder) -> None:
    with session._writing("plant a claim"):
        claim.write(session.conn, holder)


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_a_dead_profilers_claim_is_taken_over_and_its_runs_settled(session):
    run = session.start_run("cloud")
    session.record_result("cloud", (0, 20), load_ms=1.0, samples=[1.0], stats=STATS, run=run)
    last = session.conn.execute("SELECT updated_at FROM measurements").fetchone()[0]
    dead = claim.Holder(
        socket.gethostname(),
        claim._boot_id(),
        _dead_pid(),
        None,
        "earlier",
        time.time(),
        "deadbeef",
    )
    _plant(session, dead)
    with Session.open(session.path, readonly=True) as reader:  # inferred for readers
        assert reader.runs_frame()["status"].tolist() == ["interrupted"]
        assert reader.conn.execute("SELECT status FROM runs").fetchone()[0] is None
    with session.claim_profiler():
        r = session.conn.execute("SELECT status, finished_at, message FROM runs").fetchone()
    assert r["status"] == "interrupted" and r["finished_at"] == last
    assert f"pid {dead.pid} on {dead.host}" in r["message"]


def test_a_reused_pid_is_not_the_holder(session):
    me = claim.Holder.me()
    _plant(
        session,
        claim.Holder(
            me.host, me.boot, me.pid, (me.ticks or 0) + 12345, "earlier", time.time(), "reused"
        ),
    )
    with session.claim_profiler() as mine:
        assert mine.token != "reused"


def test_another_hosts_claim_holds_until_its_heartbeat_is_stale(session):
    _plant(session, claim.Holder("lab-2", "b", 4242, None, "10:00", time.time(), "fresh"))
    with (
        pytest.raises(OmdpError, match="being profiled by pid 4242 on lab-2 since 10:00"),
        session.claim_profiler(),
    ):
        pass
    _plant(
        session,
        claim.Holder("lab-2", "b", 4242, None, "10:00", time.time() - claim.STALE_S - 5, "stale"),
    )
    with session.claim_profiler() as mine:
        assert claim.read(session.conn).token == mine.token


def test_the_heartbeat_keeps_the_claim_and_a_takeover_stops_the_profiler(session, monkeypatch):
    monkeypatch.setattr(claim, "HEARTBEAT_S", 0.05)
    lost = threading.Event()
    with session.claim_profiler(on_lost=lost.set) as me:
        deadline = time.monotonic() + 10
        while claim.read(session.conn).heartbeat == me.heartbeat and time.monotonic() < deadline:
            time.sleep(0.02)
        assert claim.read(session.conn).heartbeat > me.heartbeat
        thief = claim.Holder("lab-2", "b", 7, None, "now", time.time(), "thief")
        conn = sqlite3.connect(session.path, timeout=10)
        with conn:
            claim.write(conn, thief)
        conn.close()
        assert lost.wait(10)
        with pytest.raises(ClaimLost, match="taken over by pid 7 on lab-2"):
            session.record_result("cloud", (0, 20), load_ms=1.0, samples=[1.0], stats=STATS)
        assert session.conn.execute("SELECT COUNT(*) FROM measurements").fetchone()[0] == 0
    assert claim.read(session.conn).token == "thief"  # leaving did not release the thief's


# -- read-only sessions ----------------------------------------------------------------------


def test_a_write_protected_session_reads_and_refuses_writes_in_one_line(session):
    session.record_result("cloud", (0, 20), load_ms=1.0, samples=[1.0], stats=STATS)
    path = session.path
    session.close()
    path.chmod(0o444)
    before = {p.name: p.read_bytes() for p in path.parent.iterdir() if p.is_file()}
    s = Session.open(path)
    assert not s.writable and s.progress()[0] == 1 and len(s.results_frame()) == 12
    writes = [
        lambda: s.set_ui_state("screen", "x"),
        lambda: s.save_partitions([]),
        lambda: s.record_result("phone", (0, 4), load_ms=1.0, samples=[1.0], stats=STATS),
        lambda: s.set_bandwidths({0: (1.0, 1.0)}),
        lambda: s.require_writable("export"),
        lambda: s.claim_profiler().__enter__(),
    ]
    for write in writes:
        with pytest.raises(
            OmdpError,
            match=r"session .* is read-only \(the file is "
            r"write-protected \(mode 0444\)\)",
        ) as err:
            write()
        assert "\n" not in str(err.value) and err.value.fix
    s.close()
    assert {p.name: p.read_bytes() for p in path.parent.iterdir() if p.is_file()} == before
    path.chmod(0o644)


@pytest.fixture
def remount(tmp_path):
    """A tmpfs, and a function that makes it read-only (needs root)."""
    mnt = tmp_path / "fs"
    mnt.mkdir()
    if subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mnt)], capture_output=True
    ).returncode:
        pytest.skip("needs permission to mount a tmpfs")
    yield mnt, lambda: subprocess.run(["mount", "-o", "remount,ro", str(mnt)], check=True)
    subprocess.run(["umount", str(mnt)], check=True)


def _killed_profiler(path: Path) -> None:
    """A child that claims the session, records one result in WAL mode and is killed."""
    pid = os.fork()
    if pid == 0:
        try:
            s = Session.open(path, check_model=False)
            with s.claim_profiler():
                s.record_result("cloud", (0, 20), load_ms=1.0, samples=[4.0], stats=STATS)
                os.kill(os.getpid(), 9)
        finally:
            os._exit(1)
    os.waitpid(pid, 0)


@pytest.mark.parametrize("state", ["at rest", "killed while profiling", "older WAL at rest"])
def test_a_session_on_a_read_only_filesystem_reads(remount, analysis, state):
    mnt, make_read_only = remount
    path = mnt / "s.omdp"
    Session.create(path, analysis, chain3(), [4, 9]).close()
    if state == "killed while profiling":
        _killed_profiler(path)
        assert (mnt / "s.omdp-wal").stat().st_size > 0
    elif state == "older WAL at rest":  # what OMDP before this one left behind
        conn = sqlite3.connect(path)
        conn.execute("PRAGMA journal_mode = WAL")
        conn.close()
    make_read_only()
    with Session.open(path, readonly=True) as s:
        assert s.chain().names == ["glasses", "phone", "cloud"]
        ok = (s.results_frame()["status"] == "ok").sum()
        assert ok == (1 if state == "killed while profiling" else 0)
    with Session.open(path) as s, pytest.raises(OmdpError, match="filesystem is read-only"):
        s.require_writable("store partitions")
    assert [p.name for p in list_sessions(mnt) if p.problem] == []


def test_reading_an_older_wal_session_leaves_nothing_beside_it(session):
    session.close()
    conn = sqlite3.connect(session.path)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.close()
    before = sorted(p.name for p in session.path.parent.iterdir())
    with Session.open(session.path, readonly=True) as s:
        assert len(s.results_frame()) == 12
    list_sessions(session.path.parent)
    assert sorted(p.name for p in session.path.parent.iterdir()) == before


def test_damaged_samples_are_named_when_read(session):
    mid = session.record_result("cloud", (0, 20), load_ms=1.0, samples=[1.0, 2.0], stats=STATS)
    session.conn.execute("UPDATE samples SET ms = 'fast' WHERE seq = 1")
    session.conn.commit()
    with pytest.raises(OmdpError, match=r"damaged: samples.ms holds 'fast' in sample 1"):
        session.samples(mid)


# -- spoiled configurations ------------------------------------------------------------------


def test_a_configuration_where_every_segment_failed_is_not_finished(session):
    glasses = [it for it in session.plan_items() if it.device == "glasses"]
    for it in glasses:
        session.record_error("glasses", it.segment, "CUDAExecutionProvider not available")
    assert session.spoiled() == {"glasses": "CUDAExecutionProvider not available"}
    assert session.progress() == (0, 12)
    assert all(it in session.missing(session.plan_items()) for it in glasses)
    session.record_result(
        "glasses", glasses[0].segment, load_ms=1.0, samples=[1.0], stats=STATS, config=None
    )
    assert session.spoiled() == {}  # an op one runtime lacks: the other errors are answers
    assert session.progress() == (3, 12)


@pytest.fixture
def newer_schema(monkeypatch):
    """This OMDP as if its schema had grown by one table and one column since the files
    the `session` fixture writes."""
    from backend.profiling import schema

    step = (
        "CREATE TABLE later (id INTEGER PRIMARY KEY, note TEXT);\n"
        "ALTER TABLE partitions ADD COLUMN label TEXT;"
    )
    newer = schema.VERSION + 1
    monkeypatch.setattr(schema, "SQL", schema.SQL + step)
    monkeypatch.setattr(schema, "UPGRADES", {**schema.UPGRADES, newer: step})
    monkeypatch.setattr(schema, "VERSION", newer)
    schema.columns.cache_clear()
    yield schema
    schema.columns.cache_clear()


def _old_file(session) -> Path:
    with session.conn:
        session.conn.execute(
            "INSERT INTO partitions (positions, created_at) VALUES ('[0, 3]', 'x')"
        )
    session.close()
    return session.path


def test_an_older_session_is_upgraded_in_place_keeping_its_rows(session, newer_schema):
    path = _old_file(session)
    with Session.open(path, check_model=False) as s:
        version = s.conn.execute("SELECT version FROM schema_version").fetchone()[0]
        assert version == newer_schema.VERSION
        assert s.conn.execute("SELECT positions, label FROM partitions").fetchall()[0][:] == (
            "[0, 3]",
            None,
        )
        s.conn.execute("SELECT id, note FROM later")


def test_an_older_session_read_only_is_upgraded_in_memory_never_on_disk(session, newer_schema):
    path = _old_file(session)
    before = path.read_bytes()
    path.chmod(0o444)
    try:
        with Session.open(path, check_model=False) as s:
            assert s.conn.execute("SELECT count(*) FROM later").fetchone()[0] == 0
            assert s.read_only
    finally:
        path.chmod(0o644)
    assert path.read_bytes() == before
    assert sorted(p.name for p in path.parent.iterdir() if p.name.startswith(path.name)) == [
        path.name
    ]


def test_a_schema_1_session_gains_the_device_conditions_columns_and_keeps_its_rows(session):
    """A file written before schema 3 (no `used`, `conditions`, `throttled`) opens upgraded;
    its measurements stay, unflagged, and a throttled one can then be recorded."""
    session.record_result("glasses", (0, 4), load_ms=1.0, samples=[2.0, 2.0], stats=STATS)
    make_version(session.conn, 1)
    path = session.path
    session.close()
    with Session.open(path, check_model=False) as s:
        assert s.conn.execute("SELECT version FROM schema_version").fetchone()[0] >= 3
        row = s.results_frame().query("device == 'glasses' and start == 0 and end == 4")
        assert row["median_ms"].item() == 2.0 and row["throttled"].isna().all()
        s.record_result(
            "glasses", (0, 9), load_ms=1.0, samples=[3.0], stats=STATS, used="CPU",
            conditions={"after": {"freq_ratio": 0.5}}, throttled="CPU 0 at 50%",
        )  # fmt: skip
        assert set(noise.throttled(s)) == {("glasses", 0, 9)}
