"""Processes racing to create and to profile one session, many times over: nothing lost.

Each try starts RACERS processes at one barrier. Each creates the session (or, having lost
that race, opens the winner's), then claims it as its profiler and measures what is
missing. Whatever the interleaving: exactly one creates the file, no two hold the claim at
once, every result a profiler committed is in the file as it was written, the plan is
measured once, and the folder holds the session and nothing else.
"""

from __future__ import annotations

import itertools
import multiprocessing as mp
import os
import time
import traceback
from pathlib import Path

import pytest

from backend.chain import Chain, DeviceSpec
from backend.errors import OmdpError
from backend.model.analysis import analyze
from backend.profiling.plan import build_plan
from backend.profiling.session import Session, SessionExists

TRIES = 50
RACERS = 4
CANDIDATES = [4, 9]
STATS = {"median": 1.0, "p10": 1.0, "p90": 1.0, "mean": 1.0, "std": 0.0, "rel_ci": 0.0}


def chain() -> Chain:
    return Chain.of([DeviceSpec("glasses"), DeviceSpec("phone"), DeviceSpec("cloud")])


def racer(path: Path, analysis, barrier, out) -> None:
    """One process of the race (forked): reports what it did on `out`."""
    try:
        barrier.wait(30)
        try:
            s = Session.create(path, analysis, chain(), CANDIDATES, claim_profiler=True)
            created = True
        except SessionExists:
            s = Session.open(path, check_model=False)
            created = False
        with s:
            try:
                with s.claim_profiler():
                    start = time.monotonic()  # system-wide on Linux: comparable across racers
                    s.save_plan(build_plan(analysis.n, CANDIDATES, chain().names))
                    committed = []
                    for it in s.missing(s.plan_items()):
                        samples = [float(os.getpid()), float(it.start), float(it.end)]
                        mid = s.record_result(
                            it.device, it.segment, load_ms=1.0, samples=samples, stats=STATS
                        )
                        committed.append((mid, samples))
                    end = time.monotonic()
                out.put(("profiled", os.getpid(), created, start, end, committed))
            except OmdpError as exc:
                out.put(("refused", os.getpid(), created, str(exc)))
    except BaseException:
        out.put(("crashed", os.getpid(), traceback.format_exc()))


def one_race(folder: Path, analysis, ctx) -> list[tuple]:
    path = folder / "race.omdp"
    barrier = ctx.Barrier(RACERS)
    out = ctx.Queue()
    procs = [ctx.Process(target=racer, args=(path, analysis, barrier, out)) for _ in range(RACERS)]
    for p in procs:
        p.start()
    reports = [out.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(30)
    return reports


def check_race(folder: Path, reports: list[tuple], pids: set[int], n_items: int) -> None:
    crashed = [r[2] for r in reports if r[0] == "crashed"]
    assert not crashed, crashed[0]
    assert sum(r[2] for r in reports) == 1, "exactly one racer creates the session"
    profiled = sorted((r for r in reports if r[0] == "profiled"), key=lambda r: r[3])
    assert profiled, "someone profiled it"
    for a, b in itertools.pairwise(profiled):
        assert a[4] <= b[3], "two profilers held the session at once"
    for r in reports:
        if r[0] == "refused":
            assert "is being profiled by pid" in r[3] and any(str(p) in r[3] for p in pids)
    committed = {mid: samples for r in profiled for mid, samples in r[5]}
    assert None not in committed and len(committed) == n_items  # the plan, measured once
    with Session.open(folder / "race.omdp", check_model=False, readonly=True) as s:
        assert {m: s.samples(m) for m in committed} == committed  # nothing lost or changed
        assert s.progress() == (n_items, n_items)
        assert s.profiler() is None
    assert sorted(p.name for p in folder.iterdir()) == ["race.omdp"]


@pytest.mark.skipif("fork" not in mp.get_all_start_methods(), reason="needs fork")
def test_racing_creators_and_profilers_lose_nothing(tmp_path, tiny_model_path):
    analysis = analyze(tiny_model_path)
    n_items = len(build_plan(analysis.n, CANDIDATES, chain().names))
    ctx = mp.get_context("fork")
    started = time.monotonic()
    for i in range(TRIES):
        folder = tmp_path / f"try{i}"
        folder.mkdir()
        reports = one_race(folder, analysis, ctx)
        check_race(folder, reports, {r[1] for r in reports}, n_items)
    assert time.monotonic() - started < 120
