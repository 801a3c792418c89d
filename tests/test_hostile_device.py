"""A device that lies, through the real profiler: every line is checked against the
protocol and the job; a bad line fails that device with a clear message, nothing from it
is stored, the other devices go on; device text is shown inert; every wait is bounded and
what a device left running is killed (item 8, 9 and 11 of the integrity issue)."""

from __future__ import annotations

import asyncio
import os
import re
import sys
import time
from pathlib import Path

import pytest
from fake_device import fake_python, honest_python

from backend.chain import Chain, DeviceSpec
from backend.device.protocol import TimingSettings
from backend.model.analysis import analyze
from backend.profiling import jobs
from backend.profiling.plan import build_plan
from backend.profiling.session import Session
from backend.profiling.watchdog import WatchdogSettings
from backend.remote.checks import check_local
from backend.remote.local import LocalTransport
from backend.remote.models import put_model
from backend.remote.target import LocalTarget
from backend.text import inert

CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")
QUICK = WatchdogSettings(floor_s=1.0, cap_s=2.0, factor=2.0, startup_s=3.0)


def setup(
    tmp_path: Path,
    model_path: Path,
    evil: Path | None,
    *,
    good: Path | None = None,
    watchdog: WatchdogSettings | None = None,
    events: list | None = None,
):
    """Two local devices, `evil` (run by the given interpreter) then `good`."""
    chain = Chain.of([DeviceSpec("evil"), DeviceSpec("good")])
    analysis = analyze(model_path)
    session_path = tmp_path / "run.omdp"
    if session_path.exists():
        session = Session.open(session_path)
    else:
        session = Session.create(session_path, analysis, chain, [4, 9])
        session.save_plan(build_plan(analysis.n, [4, 9], chain.names))
    cache = tmp_path / "cache"
    path, sha = put_model(analysis.model, cache)
    honest = good or honest_python(tmp_path)

    def factory(spec: DeviceSpec) -> LocalTransport:
        python = evil if spec.name == "evil" and evil is not None else honest
        return LocalTransport(cache, python=str(python))

    options = jobs.ProfileOptions(
        timing=TimingSettings(warmup=1, min_runs=3, max_runs=5),
        node_times_runs=0,
        watchdog=watchdog or WatchdogSettings(),
    )
    on_event = events.append if events is not None else None
    profiler = jobs.Profiler(
        session,
        chain,
        path,
        sha,
        options=options,
        cache_dir=cache,
        transport_factory=factory,
        on_event=on_event,
    )
    return profiler, session


def stored(session: Session, device: str) -> dict[tuple[int, int], str]:
    return {
        (r["seg_start"], r["seg_end"]): r["status"]
        for r in session.conn.execute(
            "SELECT seg_start, seg_end, status FROM measurements WHERE device = ?", (device,)
        )
    }


# Each: what the device sends after one valid result, and what the report must say.
LIES = {
    "a segment never asked for": ("say(result([0, 999999]))", "never asked for"),
    "a reversed segment": ("say(result([5, 3]))", "reversed"),
    "a 2^70 position": ("say(result([0, 2**70]))", "must be an integer in 0..2147483647"),
    "a string segment": ('say(result(["0", "4"]))', "must be an integer"),
    "NaN samples": (
        "say(json.dumps(result(items[1])).replace('[1.0,', '[NaN,'))",
        "not a JSON message",
    ),
    "an infinite load time": (
        "say(json.dumps(result(items[1], load_ms=1e400)))",
        "not a JSON message",
    ),
    "a negative time": ("say(result(items[1], samples=[-1.0, 1.0, 1.0]))", "finite number in 0"),
    "a sample list that is text": ('say(result(items[1], samples="1,2,3"))', "must be a list"),
    "a bool count": ("say(result(items[1], stats={'count': True, 'median': 1.0}))", "stats count"),
    "too many samples": (
        "say(result(items[1], samples=[1.0] * 6, stats={'count': 6}))",
        "the job allows 1..5",
    ),
    "a second answer": ("say(result(items[0]))", "a second answer"),
    "an unknown message": ('say({"type": "pwned", "cmd": "rm -rf /"})', "unknown message type"),
    "an unknown field": ("say(result(items[1], sql='DROP TABLE measurements'))", "unknown field"),
    "a missing field": ('say({"type": "done", "completed": 1})', "lacks field"),
    "node times nobody asked for": (
        'say({"type": "node_times", "runtime": "x", "runs": 1, "times": {"0": 1.0}, '
        '"unattributed_ms": 0, "total_ms": 1})',
        "did not ask",
    ),
    "a done that lies": ("say(done(7))", "'done' counts 7 results"),
    "a done that skips work": ("say(done(1))", "were not answered"),
    "a second hello": ("say(HELLO)", "a second 'hello'"),
    "progress past the total": (
        'say({"type": "progress", "done": 9, "total": 3, "segment": None, "phase": "load"})',
        "does not fit a job of 3",
    ),
    "an error of no segment but not the job": ("say(error(None, kind='run'))", "names no segment"),
    "bytes that are not UTF-8": ('say(b"\\xff\\xfe{}")', "not UTF-8"),
    "a 100,000-deep JSON": ('say("[" * 100000)', "not a JSON message"),
    "a huge line": ('say("x" * (17 << 20))', "longer than"),
    "a JSON array": ("say([1, 2, 3])", "not a JSON object"),
    "garbage": ('say("Segmentation fault (core dumped)")', "not a JSON message"),
}


@pytest.mark.parametrize("lie", list(LIES))
async def test_a_lying_device_fails_alone_and_nothing_of_the_lie_is_stored(
    lie: str, tmp_path: Path, tiny_model_path: Path
):
    body, says = LIES[lie]
    evil = fake_python(tmp_path, f"say(result(items[0]))\n{body}\ntime.sleep(60)")
    events: list = []
    profiler, session = setup(tmp_path, tiny_model_path, evil, events=events)
    t0 = time.monotonic()
    summary = await profiler.run()
    # the lie ends the device at once, not when the liar exits 60 s later (idle: < 1 s)
    assert time.monotonic() - t0 < 40
    assert list(summary.failed) == ["evil"]
    message = summary.failed["evil"]
    assert says in message, message
    assert not CONTROL.search(message)
    plan = session.plan_items()
    evil_items = [(it.start, it.end) for it in plan if it.device == "evil"]
    # the one valid answer is kept; nothing else of the device is, whatever the lie named
    assert stored(session, "evil") == {
        evil_items[0]: "ok",
        **{s: "pending" for s in evil_items[1:]},
    }
    assert set(stored(session, "good").values()) == {"ok"}  # the other device went on
    assert session.runs_frame().set_index("device").loc["evil", "status"] == "failed"
    failed = [e for e in events if isinstance(e, jobs.DeviceFailed)]
    assert [e.device for e in failed] == ["evil"]
    session.close()


async def test_device_text_is_inert_everywhere_it_is_kept_or_shown(
    tmp_path: Path, tiny_model_path: Path
):
    spoof = "\x1b[2J\x1b[H\nomdp: all good\r\u202e"
    hello = (
        f"HELLO = dict(HELLO, agent={spoof!r}, versions={{'python': {spoof!r}}}, "
        f"host={{'hostname': {spoof!r}, 'cpu': {spoof!r}}})"
    )
    evil = fake_python(
        tmp_path,
        f"""
        say(error(items[0], message={spoof!r}))
        say(error(None, message={spoof!r}, kind="inputs"))
        for seg in items[1:]:
            say(result(seg, runtime={{"name": {spoof!r}, "version": "1", "options": {{}}}}))
        say(done(len(items) - 1, 1))
    """,
        before=hello,
    )
    events: list = []
    profiler, session = setup(tmp_path, tiny_model_path, evil, events=events)
    summary = await profiler.run()
    assert summary.failed == {}
    shown = [repr(e) for e in events]
    assert not any(CONTROL.search(str(getattr(e, "message", "") or "")) for e in events)
    started = next(e for e in events if isinstance(e, jobs.DeviceStarted) and e.device == "evil")
    assert started.host["hostname"] == inert(spoof) and "\\x1b[2J" in started.host["hostname"]
    notice = next(e for e in events if isinstance(e, jobs.Notice))
    assert notice.message == inert(spoof)
    rows = session.conn.execute(
        "SELECT message, runtime FROM measurements WHERE device = 'evil'"
    ).fetchall()
    hello = session.conn.execute("SELECT hello FROM runs WHERE device = 'evil'").fetchone()[0]
    for value in [*(v for r in rows for v in r if v), hello]:
        assert not CONTROL.search(
            value.encode().decode("unicode_escape", "ignore") if "\\u001b" in value else value
        ), value
    assert any(r[0] == inert(spoof) for r in rows)
    assert shown  # events were produced
    session.close()


def test_inert_escapes_what_a_terminal_would_obey():
    assert (
        inert("ok\x1b[31mred\x07\n\tnext\x9b\u2028\u202e")
        == "ok\\x1b[31mred\\x07\\x0a\\x09next\\x9b\\u2028\\u202e"
    )
    assert inert("plain text, ünïcode and 中文 stay") == "plain text, ünïcode and 中文 stay"
    assert inert("x" * 5000) == "x" * 1999 + "…"


async def test_silence_after_hello_is_bounded_and_a_resumed_run_retries(
    tmp_path: Path, tiny_model_path: Path
):
    evil = fake_python(tmp_path, "say(result(items[0]))\ntime.sleep(300)")
    profiler, session = setup(tmp_path, tiny_model_path, evil, watchdog=QUICK)
    t0 = time.monotonic()
    summary = await profiler.run()
    took = time.monotonic() - t0
    assert took < 30, took  # the cap is 2 s (idle: about 1 s); unbounded, it would be 300 s
    message = summary.failed["evil"]
    # it answered one segment, so its speed is known: the next gets 2 × its estimate,
    # which the floor (1 s) raises
    assert "segment [0, 9) took longer than 1 s" in message, message
    assert "its agent was stopped" in message
    assert set(stored(session, "good").values()) == {"ok"}
    hello = session.conn.execute("SELECT hello FROM runs WHERE device = 'evil'").fetchone()[0]
    pid = int(re.search(r'"pid": ?(\d+)', hello).group(1))
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert "pending" in stored(session, "evil").values()
    session.close()
    # resumed, with an honest device now: it retries what the stuck one left
    profiler, session = setup(tmp_path, tiny_model_path, None, watchdog=QUICK)
    again = await profiler.run()
    assert again.failed == {} and session.missing(session.plan_items()) == []
    session.close()


async def test_silence_before_hello_is_bounded(tmp_path: Path, tiny_model_path: Path):
    evil = fake_python(tmp_path, "", before="time.sleep(300)")
    profiler, session = setup(
        tmp_path, tiny_model_path, evil, watchdog=WatchdogSettings(floor_s=1, cap_s=2, startup_s=1)
    )
    t0 = time.monotonic()
    summary = await profiler.run()
    assert time.monotonic() - t0 < 30  # idle: about 1 s; unbounded, it would be 300 s
    assert "no hello within 1 s" in summary.failed["evil"]
    session.close()


def _alive(marker: str) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
                state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
            except (OSError, IndexError):
                continue
            if marker in cmd and state != "Z":
                out.append(int(entry.name))
    return out


@pytest.mark.parametrize("twice", [False, True])
async def test_cancel_ends_even_an_agent_that_ignores_sigterm(
    twice: bool, tmp_path: Path, tiny_model_path: Path
):
    marker = f"omdp-stubborn-{twice}-{os.getpid()}"
    evil = fake_python(
        tmp_path,
        f"""
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)", "{marker}"])
        say(result(items[0]))
        while True:
            time.sleep(1)
    """,
    )
    events: list = []
    profiler, session = setup(tmp_path, tiny_model_path, evil, events=events)

    seen_child: list[int] = []
    cancelled_at: list[float] = []

    async def ctrl_c() -> None:
        while not any(isinstance(e, jobs.Measured) and e.device == "evil" for e in events):
            await asyncio.sleep(0.05)
        seen_child.extend(_alive(marker))
        cancelled_at.append(time.monotonic())
        profiler.cancel()
        if twice:
            profiler.cancel()

    task = asyncio.ensure_future(ctrl_c())
    summary = await asyncio.wait_for(profiler.run(), 60)
    await task
    took = time.monotonic() - cancelled_at[0]  # from the cancel: starting is not timed
    assert summary.stopped
    # twice: killed at once, before the grace a single cancel gives (idle: about 0.1 s);
    # once: killed when the grace is over (idle: about 2.1 s), not left running
    limit = jobs.STOP_GRACE_S if twice else jobs.STOP_GRACE_S + 10
    assert took < limit, took
    deadline = time.monotonic() + 10
    while _alive(marker) and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    assert _alive(marker) == []  # the agent's whole process group is gone
    assert seen_child, "the stubborn agent's child never started: the test proves nothing"
    session.close()


async def test_a_real_agent_goes_on_beside_a_lying_device(tmp_path: Path, tiny_model_path: Path):
    evil = fake_python(tmp_path, "say(result([0, 999999]))")
    profiler, session = setup(tmp_path, tiny_model_path, evil, good=Path(sys.executable))
    summary = await profiler.run()
    assert list(summary.failed) == ["evil"] and "never asked for" in summary.failed["evil"]
    assert set(stored(session, "good").values()) == {"ok"}
    assert set(stored(session, "evil").values()) == {"pending"}
    session.close()


# -- the probe of `devices check` ----------------------------------------------------------

PROBE_LIES = {
    "not JSON": ('say("OMDP-PROBE {nope")', "not JSON"),
    "not an object": ('say("OMDP-PROBE [1, 2]")', "must be an object"),
    "a string version": (
        'say("OMDP-PROBE " + json.dumps(dict(FACTS, version_info="3.11")))',
        "version_info",
    ),
    "packages as a list": ('say("OMDP-PROBE " + json.dumps(dict(FACTS, packages=[])))', "packages"),
    "free bytes as text": (
        'say("OMDP-PROBE " + json.dumps(dict(FACTS, free_bytes="lots")))',
        "free_bytes",
    ),
    "negative cores": ('say("OMDP-PROBE " + json.dumps(dict(FACTS, cores=-4)))', "cores"),
    "NaN free bytes": (
        'say("OMDP-PROBE " + json.dumps(dict(FACTS, free_bytes=float("nan"))))',
        "not JSON",
    ),
    "an unknown package": (
        'say("OMDP-PROBE " + json.dumps(dict(FACTS, packages={"evil": "1"})))',
        "packages",
    ),
    "an unknown field": (
        'say("OMDP-PROBE " + json.dumps(dict(FACTS, shell="sh")))',
        "the probe's fields only",
    ),
    "a huge line": ('say("OMDP-PROBE " + "x" * (2 << 20))', "over 1048576 bytes"),
}

FACTS = """
FACTS = {"python": "3.11.7", "executable": "/usr/bin/python3", "version_info": [3, 11, 7],
         "workdir": "/tmp/w", "free_bytes": 10**9, "workdir_error": None,
         "packages": {"numpy": "2", "onnx": "1", "onnxruntime": "1", "openvino": None},
         "hostname": "h", "cpu": "c", "cores": 4, "usable_cores": 4, "machine": "x86_64",
         "os": "Linux"}
"""


@pytest.mark.parametrize("lie", list(PROBE_LIES))
async def test_a_malformed_probe_answer_is_a_problem_of_that_device(lie: str, tmp_path: Path):
    body, says = PROBE_LIES[lie]
    fake = fake_python(tmp_path, FACTS + body, hello=False, job=False)
    check = await check_local(LocalTarget("odd", python=str(fake)), "onnxruntime", timeout=30)
    assert not check.ok
    (problem,) = check.problems
    assert problem.startswith("device 'odd': ") and says in problem, problem
    assert not CONTROL.search(problem)


async def test_an_honest_looking_probe_answer_passes(tmp_path: Path):
    fake = fake_python(
        tmp_path, FACTS + 'say("banner\\nOMDP-PROBE " + json.dumps(FACTS))', hello=False, job=False
    )
    check = await check_local(LocalTarget("fine", python=str(fake)), "onnxruntime", timeout=30)
    assert check.ok, check.problems
    assert check.facts["cores"] == 4


async def test_a_probe_that_hangs_is_killed_with_its_group(tmp_path: Path):
    marker = f"omdp-hung-probe-{os.getpid()}"
    fake = tmp_path / "hung"
    sleep = f'{sys.executable} -c "import time; time.sleep(300)" {marker}'
    fake.write_text(f"#!/bin/sh\n{sleep} &\nexec {sleep}\n")
    fake.chmod(0o755)
    t0 = time.monotonic()
    check = await check_local(LocalTarget("hung", python=str(fake)), None, timeout=1.0)
    assert time.monotonic() - t0 < 30  # idle: about 1 s; unbounded, it would be 300 s
    assert "did not answer within 1 s and was stopped" in check.problems[0]
    deadline = time.monotonic() + 10
    while _alive(marker) and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    assert _alive(marker) == []
    assert "omdp-hung-probe" in fake.read_text()
