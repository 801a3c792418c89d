"""The use-case layer (`backend.usecases`) on real parts: session files in a temporary
folder, local devices whose agents run as subprocesses, and small real models."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from source import parse_python

from backend.chain import Chain, DeviceSpec, LinkSpec
from backend.cli import main
from backend.device.protocol import TimingSettings
from backend.errors import OmdpError
from backend.export import read_export
from backend.model.analysis import analyze
from backend.profiling.session import Session
from backend.remote.links import ChainLinks, LinkMeasurement
from backend.solver.ranking import Ranker
from backend.usecases import demo, devices, exports, plans, rankings, runs, sessions, traces
from backend.usecases.candidates import CandidateChoice, choose
from backend.usecases.rankings import RankOptions
from backend.usecases.sessions import NewSession, OpenRequest

FAST = TimingSettings(warmup=1, min_runs=3, max_runs=5, max_seconds=0.2)
SLOWDOWN = {"glasses": 4.0, "phone": 2.0, "cloud": 1.0}


@pytest.fixture
def model_path(tmp_path: Path, make_conv_chain) -> Path:
    path = tmp_path / "net.onnx"
    onnx.save(make_conv_chain(blocks=2), path)
    return path


def three_devices(**link_values: tuple[float, float]) -> Chain:
    values = {"glasses-phone": (20.0, 5.0), "phone-cloud": (100.0, 10.0), **link_values}
    names = ["glasses", "phone", "cloud"]
    links = [LinkSpec(a, b, *values[f"{a}-{b}"]) for a, b in itertools.pairwise(names)]
    return Chain.of([DeviceSpec(n, threads=1) for n in names], links)


def fill(session: Session, analysis, candidates: list[int], chain: Chain) -> None:
    """Every planned segment 'measured' with a FLOP-proportional time: a profiled session
    without running anything."""
    plan = plans.build(analysis, chain, candidates)
    session.save_plan(plan)
    cum = np.concatenate([[0.0], np.cumsum([nd.flops or 0 for nd in analysis.nodes])])
    for it in plan.items:
        ms = ((cum[it.end] - cum[it.start]) / cum[-1] * 10.0 + 0.2) * SLOWDOWN[it.device]
        stats = {"median": ms, "p10": ms, "p90": ms, "mean": ms, "std": 0.0, "count": 3}
        session.record_result(it.device, it.segment, load_ms=1.0, samples=[ms] * 3, stats=stats)


@pytest.fixture
def profiled(tmp_path: Path, model_path: Path):
    """A session on three devices with every segment of its plan measured."""
    analysis = analyze(model_path)
    chain = three_devices()
    cands = analysis.candidates(3)
    session = Session.create(tmp_path / "profiled.omdp", analysis, chain, cands)
    fill(session, analysis, cands, chain)
    yield session, analysis
    session.close()


def test_the_use_cases_import_no_front_end():
    """Options arrive as dataclasses: no argparse, no textual, nothing of the TUI."""
    import ast

    offenders = []
    for path in Path(sessions.__file__).parent.glob("*.py"):
        for node in ast.walk(parse_python(path)):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else ([node.module] if isinstance(node, ast.ImportFrom) and node.module else [])
            )
            offenders += [
                f"{path.name}: {n}"
                for n in names
                if n.split(".")[0] in {"argparse", "textual", "rich", "omdp_tui"}
            ]
    assert offenders == []


# -- opening ----------------------------------------------------------------------------------


def test_create_then_resume_with_the_same_request(tmp_path: Path, model_path: Path):
    request = OpenRequest(tmp_path / "s.omdp", str(model_path), chain=three_devices())
    prepared = sessions.prepare(request)
    assert not prepared.resume and not request.path.exists()  # preparing writes nothing
    opened = sessions.open_prepared(prepared)
    assert not opened.resumed
    assert opened.candidates == opened.analysis.candidates(5)  # the default pick
    assert opened.session.chain().names == ["glasses", "phone", "cloud"]
    opened.session.set_candidates([3], opened.analysis)
    opened.session.close()

    again = sessions.open_session(request)
    assert again.resumed and again.candidates == [3]  # a resume keeps what is stored
    again.session.close()
    given = sessions.open_session(
        OpenRequest(request.path, str(model_path), candidates=CandidateChoice(("2", "4")))
    )
    assert given.candidates == [2, 4] and given.session.candidates() == [2, 4]
    given.session.close()


def test_resume_takes_the_sessions_own_model_and_refuses_another_chain(
    tmp_path: Path, model_path: Path
):
    path = tmp_path / "s.omdp"
    sessions.open_session(OpenRequest(path, str(model_path), chain=three_devices())).session.close()
    opened = sessions.open_session(OpenRequest(path))  # no model: the session's own
    assert opened.model_ref == str(model_path.resolve()) and opened.resumed
    opened.session.close()
    other = Chain.of([DeviceSpec("a"), DeviceSpec("b")])
    with pytest.raises(OmdpError, match="is for the chain glasses → phone → cloud"):
        sessions.open_session(OpenRequest(path, str(model_path), chain=other))
    with pytest.raises(OmdpError, match="no session at"):
        sessions.prepare(OpenRequest(tmp_path / "missing.omdp"))


def test_new_session_settings_are_stored_and_none_means_no_candidates(
    tmp_path: Path, model_path: Path
):
    new = NewSession(
        auto_candidates=None, timing={"warmup": 1}, node_times_runs=2, ui={"screen": "profile"}
    )
    opened = sessions.open_session(OpenRequest(tmp_path / "s.omdp", str(model_path), new=new))
    s = opened.session
    assert opened.candidates == [] and s.chain().names == ["local"]
    assert s.get_meta("timing") == {"warmup": 1} and s.get_meta("node_times_runs") == 2
    assert s.get_ui_state("screen") == "profile"
    s.close()


def test_candidates_given_then_auto_then_stored_then_default(model_path: Path):
    a = analyze(model_path)
    name = a.nodes[3].name
    assert choose(a, CandidateChoice((name, "0", str(a.n))), [7]) == [4]  # 0 and N drop out
    assert choose(a, CandidateChoice(auto=2), [7]) == a.candidates(2)
    assert choose(a, CandidateChoice(), [7]) == [7]
    assert choose(a, CandidateChoice(), None) == a.candidates(5)
    assert choose(a, CandidateChoice(), None, default_auto=None) == []


def test_demo_request_makes_the_demo_then_resumes_it(tmp_path: Path, model_path: Path):
    request = demo.demo_request(tmp_path / "demo.omdp", model=str(model_path), candidates=2)
    opened = sessions.open_session(request)
    s = opened.session
    assert s.chain().names == ["glasses", "phone", "cloud"]
    assert len(opened.candidates) == 2 and s.get_ui_state("screen") == "profile"
    assert s.get_meta("timing") == demo.TIMING
    assert s.get_meta("node_times_runs") == demo.NODE_TIMES_RUNS
    s.set_candidates([3], opened.analysis)
    s.close()
    again = sessions.open_session(request)
    assert again.resumed and again.candidates == [3]
    again.session.close()


# -- changing and copying -----------------------------------------------------------------------


def test_chain_change_before_measuring_keeps_the_file_and_its_settings(
    tmp_path: Path, model_path: Path
):
    new = NewSession(timing={"warmup": 2}, ui={"graph.node": 4})
    path = tmp_path / "s.omdp"
    opened = sessions.open_session(
        OpenRequest(path, str(model_path), chain=three_devices(), new=new)
    )
    inode = path.stat().st_ino
    two = Chain.of([DeviceSpec("glasses"), DeviceSpec("cloud")])
    session = sessions.change_chain(opened.session, opened.analysis, two)
    assert session.path == path and path.stat().st_ino == inode  # replaced in place
    assert session.chain().names == ["glasses", "cloud"]
    assert session.candidates() == opened.candidates
    assert session.get_meta("timing") == {"warmup": 2}
    assert session.get_ui_state("graph.node") == 4
    session.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["net.onnx", "s.omdp"]
    with Session.open(path) as s:  # a valid session for another reader too
        assert s.chain().names == ["glasses", "cloud"]


def test_chain_names_are_fixed_once_measured_but_options_may_change(profiled):
    session, analysis = profiled
    before = len(session.missing(session.plan_items()))
    with pytest.raises(OmdpError, match="can no longer change"):
        sessions.change_chain(session, analysis, Chain.of([DeviceSpec("glasses")]))
    chain = session.chain()
    chain.devices[0].threads = 2
    same = sessions.change_chain(session, analysis, chain)
    assert same is session and session.chain().device("glasses").threads == 2
    assert len(session.missing(session.plan_items())) > before  # measured under 1 thread


def test_copy_is_a_full_session_and_never_overwrites(profiled, tmp_path: Path):
    session, _ = profiled
    copy = sessions.copy_session(session, tmp_path / "copies" / "b.omdp")
    assert copy.progress() == session.progress() and copy.path != session.path
    copy.close()
    with pytest.raises(OmdpError, match="already exists"):
        sessions.copy_session(session, tmp_path / "copies" / "b.omdp")


# -- estimating and running ---------------------------------------------------------------------


def test_one_estimator_for_the_cli_and_the_tui(tmp_path: Path, model_path: Path, capsys):
    """`omdp profile --dry-run` says what the use case says (and the TUI shows the same)."""
    from omdp_tui.workspace import Workspace

    path = tmp_path / "s.omdp"
    devices_toml = tmp_path / "devices.toml"
    devices_toml.write_text(
        '[[device]]\nname = "glasses"\ngflops = 2\n\n[[device]]\nname = "phone"\ngflops = 8\n'
    )
    from backend.chain import load_devices

    timing = TimingSettings(1, 3, 5, 0.5, 0.02)  # as the command line below says
    request = OpenRequest(
        path,
        str(model_path),
        chain=load_devices(devices_toml),
        candidates=CandidateChoice(auto=3),
        new=NewSession(timing=dataclasses.asdict(timing)),
    )
    sessions.open_session(request).close()  # a dry run writes nothing: the session exists
    before = path.read_bytes()
    code = main(
        [
            "profile",
            str(model_path),
            "--devices",
            str(devices_toml),
            "--session",
            str(path),
            "--auto",
            "3",
            "--dry-run",
            "--json",
            "--warmup",
            "1",
            "--min-runs",
            "3",
            "--max-runs",
            "5",
            "--max-seconds",
            "0.5",
        ]
    )
    assert code == 0
    (event,) = [
        e for e in map(json.loads, capsys.readouterr().out.splitlines()) if e["event"] == "plan"
    ]
    assert path.read_bytes() == before
    with Session.open(path) as session:
        analysis = analyze(model_path)
        todo = session.missing(plans.build(analysis, session.chain(), session.candidates()))
        estimate = plans.estimate(session, analysis, session.chain(), todo, timing)
        assert event["estimate_s"] == round(estimate.seconds, 1) > 0
        assert event["todo"] == len(todo)
        ws = Workspace(analysis, str(model_path), session)
        assert ws.estimate_seconds(ws.missing()) == pytest.approx(estimate.seconds)


def test_estimate_uses_measured_speeds_and_shared_cpus_take_turns(profiled):
    session, analysis = profiled
    chain = session.chain()
    items = plans.build(analysis, chain, session.candidates()).items
    measured = plans.estimate(session, analysis, chain, items, FAST)
    assert measured.from_measurements
    assert measured.seconds == pytest.approx(sum(measured.per_device.values()))  # one CPU set
    overlapped = plans.estimate(session, analysis, chain, items, FAST, share_cpus=True)
    assert overlapped.seconds == pytest.approx(max(overlapped.per_device.values()))
    assert overlapped.seconds < measured.seconds
    assert plans.cpu_waits(chain) == {"phone": ["glasses"], "cloud": ["glasses", "phone"]}
    assert plans.cpu_waits(chain, share_cpus=True) == {}


def test_plan_run_profile_and_resume_with_one_claim(
    tmp_path: Path, model_path: Path, cache_dir: Path, monkeypatch
):
    claimed: list[Session] = []
    real_claim = runs.claim

    def spy(session: Session):
        claimed.append(session)
        return real_claim(session)

    monkeypatch.setattr(runs, "claim", spy)
    opened = sessions.open_session(
        OpenRequest(
            tmp_path / "s.omdp",
            str(model_path),
            chain=Chain.of([DeviceSpec("a", threads=1), DeviceSpec("b", threads=1)]),
            candidates=CandidateChoice(auto=2),
        )
    )
    session = opened.session
    settings = runs.RunSettings(FAST, node_times_runs=1, cache_dir=cache_dir)
    planned = runs.plan_run(session, opened.analysis, session.chain(), opened.candidates, settings)
    assert session.plan_items() == planned.plan.items  # the plan is saved
    assert planned.todo == planned.plan.items and planned.needs_node_times
    assert planned.estimate.seconds > 0
    events = []
    summary = asyncio.run(runs.run_plan(planned.profiler(events.append), planned.todo))
    assert (summary.measured, summary.errors, summary.failed) == (len(planned.todo), 0, {})
    assert claimed == [session]  # held once, for the whole run
    assert any(type(e).__name__ == "Measured" for e in events)
    again = runs.plan_run(session, opened.analysis, session.chain(), opened.candidates, settings)
    assert again.nothing_to_do and session.progress() == (len(planned.todo),) * 2
    session.close()


# -- ranking and exporting ----------------------------------------------------------------------


def test_rank_session_under_typed_link_values(profiled):
    session, _ = profiled
    typed = rankings.rank_session(session, RankOptions(k=3))
    assert [p.rank for p in typed.partitions] == [1, 2, 3]
    slow = rankings.rank_session(
        session, RankOptions(k=3, bandwidth=("glasses-phone=0.001",), latency=("phone-cloud=1",))
    )
    n = session.model().nodes
    assert slow.partitions[0].cuts == (n, n)  # a dead first link keeps everything local
    assert list(slow.instance.latency_ms) == [5.0, 1.0]
    assert session.bandwidths() == [(20.0, 5.0), (100.0, 10.0)]  # not saved unless asked
    rankings.rank_session(session, RankOptions(bandwidth=("glasses-phone=7",), save_links=True))
    assert session.bandwidths()[0] == (7.0, 5.0)
    with pytest.raises(OmdpError, match="unknown link"):
        rankings.rank_session(session, RankOptions(bandwidth=("glasses-cloud=5",)))
    with pytest.raises(OmdpError, match="no per-node times"):
        rankings.rank_session(session, RankOptions(cost_model="estimated"))


def test_rank_session_with_a_memory_limit_drops_what_does_not_fit(profiled):
    session, _ = profiled
    free = rankings.rank_session(session, RankOptions(k=50))
    tight = rankings.rank_session(session, RankOptions(k=50, memory=("glasses=0.001",)))
    assert len(tight.partitions) < len(free.partitions)
    assert all(p.stages[0].start == p.stages[0].end for p in tight.partitions)
    with pytest.raises(OmdpError, match="must be a number > 0 MiB"):
        rankings.rank_session(session, RankOptions(memory=("glasses=0",)))


def test_price_session_is_none_until_something_is_measured(tmp_path: Path, model_path: Path):
    analysis = analyze(model_path)
    with Session.create(tmp_path / "s.omdp", analysis, three_devices(), [3]) as session:
        assert rankings.price_session(session) is None
        fill(session, analysis, [3], session.chain())
        priced = rankings.price_session(session)
        assert priced is not None and list(priced.candidates) == [0, 3, analysis.n]


def test_both_front_ends_export_the_same_devices_without_the_labs_access(
    tmp_path: Path, model_path: Path
):
    analysis = analyze(model_path)
    secret = tmp_path / "keys" / "id_lab"
    phone = DeviceSpec(
        "phone",
        kind="ssh",
        host="10.0.0.7",
        user="lab",
        port=2222,
        identity=str(secret),
        known_hosts=str(tmp_path / "kh"),
        workdir="/srv/omdp",
        threads=2,
    )
    chain = Chain.of(
        [DeviceSpec("glasses", threads=1, cpus=[0]), phone],
        [LinkSpec("glasses", "phone", 20.0, 5.0)],
    )
    with Session.create(tmp_path / "s.omdp", analysis, chain, [3, 6]) as session:
        fill(session, analysis, [3, 6], Chain.of([DeviceSpec("glasses"), DeviceSpec("phone")]))
        out = tmp_path / "cli.json"
        done = exports.export_ranks(
            session, RankOptions(bandwidth=("glasses-phone=8",)), [1, 2], out
        )
        assert done.written == [out] and [p.rank for p in done.partitions] == [1, 2]
        assert [p["name"] for p in session.partitions()] == ["rank 1", "rank 2"]
        tui = exports.export_partition(
            session, analysis, done.partitions[0], [8.0], [5.0], tmp_path / "tui.json"
        )
    cli_doc, tui_doc = read_export(out), read_export(tui)
    assert (
        cli_doc["devices"]
        == tui_doc["devices"]
        == [
            {
                "name": "glasses",
                "kind": "local",
                "runtime": "onnxruntime",
                "config": {"name": "onnxruntime", "threads": 1, "graph_opt": "all"},
            },
            {
                "name": "phone",
                "kind": "ssh",
                "runtime": "onnxruntime",
                "config": {"name": "onnxruntime", "threads": 2, "graph_opt": "all"},
            },
        ]
    )
    assert (
        cli_doc["links"]
        == tui_doc["links"]
        == [
            {
                "name": "glasses-phone",
                "from": "glasses",
                "to": "phone",
                "bandwidth_mbps": 8.0,
                "latency_ms": 5.0,
            }
        ]
    )
    text = out.read_text() + tui.read_text()
    for lab_only in (
        "10.0.0.7",
        "id_lab",
        "/srv/omdp",
        '"host"',
        '"user"',
        '"port"',
        '"identity"',
        '"known_hosts"',
        '"workdir"',
        '"cpus"',
    ):
        assert lab_only not in text
    assert tui_doc["partitions"][0]["segments"] == cli_doc["partitions"][0]["segments"]


def test_export_of_a_rank_that_does_not_exist_writes_nothing(profiled, tmp_path: Path):
    session, _ = profiled
    out = tmp_path / "x.json"
    with pytest.raises(OmdpError, match="no rank 100000"):
        exports.export_ranks(session, RankOptions(), [1, 100000], out)
    assert not out.exists() and session.partitions() == []
    assert exports.default_export_path(Path("/s/run.omdp"), (3, 9)) == Path(
        "/s/run-partition-3_9.json"
    )


# -- devices, links, traces ---------------------------------------------------------------------


def test_a_local_device_answers_with_its_agents_hello(cache_dir: Path):
    answer = asyncio.run(devices.check_device(DeviceSpec("here")))
    assert answer.ok, answer.detail
    assert "said hello" in answer.detail and "onnxruntime" in answer.detail
    assert not list(cache_dir.glob("*.tmp"))


def test_a_local_agent_that_cannot_start_is_reported(tmp_path: Path):
    missing = str(tmp_path / "no-python")
    answer = asyncio.run(devices.agent_hello(tmp_path, python=missing))
    assert not answer.ok and answer.detail.startswith("agent did not start:")


def test_link_measurements_are_stored_beside_the_typed_values(profiled):
    session, _ = profiled

    def measured(src: str, dst: str, mbps: float) -> LinkMeasurement:
        return LinkMeasurement(src, dst, "tcp", mbps, 0.5, 1.0, 0.99)

    found = ChainLinks(chain=[measured("phone", "cloud", 321.0), measured("cloud", "moon", 1.0)])
    problems = devices.store_link_measurements(session, found)
    assert problems == [
        f"link cloud-moon: not in session {session.path} (its chain: glasses "
        "-> phone -> cloud); not stored"
    ]
    frame = session.links_frame()
    assert frame["measured_bandwidth_mbps"].tolist()[1] == 321.0
    assert np.isnan(frame["measured_bandwidth_mbps"].tolist()[0])
    assert session.bandwidths()[1] == (100.0, 10.0)  # the typed value stays the current one


def test_measure_links_between_two_local_devices(tmp_path: Path):
    chain = Chain.of([DeviceSpec("a"), DeviceSpec("b")])
    found = asyncio.run(
        devices.measure_links(devices.chain_targets(chain), max_bytes=1 << 20, lab_links=False)
    )
    assert found.failures == [] and found.lab == []
    (link,) = found.chain
    assert (link.src, link.dst) == ("a", "b") and link.bandwidth_mbps > 0


def test_trace_replay_ranks_every_step(profiled, tmp_path: Path):
    session, _ = profiled
    trace = tmp_path / "walk.tsv"
    trace.write_text("".join(f"{t} {bw}\n" for t, bw in enumerate([200, 200, 0.001, 200])))
    ranker = Ranker(rankings.price_session(session))
    replay = traces.replay_trace(
        ranker,
        ["glasses-phone", "phone-cloud"],
        [20.0, 100.0],
        [5.0, 10.0],
        str(trace),
        "phone-cloud",
    )
    assert replay.link_index == 1 and len(replay.timeline) == 4
    assert replay.analysis.optimal_cuts[0] != replay.analysis.optimal_cuts[2]
    with pytest.raises(OmdpError):
        traces.replay_trace(ranker, ["glasses-phone"], [20.0], [5.0], str(trace), "nope")
