"""Keystroke to updated top-K table on the partitions screen, against the bare re-rank.

The operator tunes a bandwidth with ↑/↓ and expects the ranking to follow at once. This
drives the real app headless (Textual's Pilot, 80×24) on YOLOv5n with 3 devices and a
session filled from fixed timings (FLOP-proportional, as a profiled session would hold),
presses ↑ or ↓ in the first bandwidth field many times and measures, per keystroke
(every keystroke also autosaves the link values into the session file, as in use):

- handled: key event in → table refilled (ranking, Partition objects, K rows);
- drawn: key event in → the next frame composed after the refill (the compositor's
  update handed to the driver; headless, so no terminal I/O is counted);

next to the baseline, the bare `Ranker.rank` call the screen makes for each keystroke.

A key reaches the app as the terminal driver delivers one (`--via driver`, the default:
the key event handed to the driver's message queue, the clock started just before), or
through Textual's Pilot (`--via pilot`: `pilot.press`, whose wait-for-idle polling runs
on the app's event loop while the key is handled, so it adds its own time to each
keystroke). Keys come at most every `--interval-ms` (40: a held-down arrow key repeats
at about 25 per second), the app idle before each; the wait is not timed. Textual draws
at most 60 frames a second, so a key arriving within 1/60 s of the last frame waits for
the next one: keys much faster than that measure the frame rate, not the app.

Run: .venv/bin/python benchmarks/bench_tui.py [--keys 300] [--candidates 16] [--k 10]
     [--via driver|pilot] [--interval-ms 40]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from backend.chain import Chain, DeviceSpec, LinkSpec
from backend.model.analysis import analyze
from backend.profiling.plan import build_plan
from backend.profiling.session import Session
from omdp_tui.workspace import Workspace

SLOWDOWN = {"glasses": 8.0, "phone": 3.0, "cloud": 1.0}


def fixed_session(path: Path, analysis, candidates: list[int]) -> Session:
    """A real session as if profiled: FLOP-proportional medians (cloud: 40 ms for the
    model, phone 3×, glasses 8×) for every segment of the plan."""
    chain = Chain.of(
        [DeviceSpec(n) for n in SLOWDOWN],
        [LinkSpec("glasses", "phone", 20.0, 5.0), LinkSpec("phone", "cloud", 100.0, 20.0)],
    )
    session = Session.create(path, analysis, chain, candidates, builtin="yolov5n")
    plan = build_plan(analysis.n, candidates, chain.names)
    session.save_plan(plan)
    cum = np.concatenate([[0.0], np.cumsum([nd.flops or 0 for nd in analysis.nodes])])
    for it in plan.items:
        ms = ((cum[it.end] - cum[it.start]) / cum[-1] * 40.0 + 0.5) * SLOWDOWN[it.device]
        stats = {"median": ms, "p10": ms, "p90": ms, "mean": ms, "std": 0.0, "count": 5}
        session.record_result(it.device, it.segment, load_ms=1.0, samples=[ms] * 5, stats=stats)
    return session


def stats(samples: list[float]) -> str:
    ms = sorted(s * 1000 for s in samples)
    p95 = ms[min(len(ms) - 1, round(0.95 * (len(ms) - 1)))]
    return f"median {statistics.median(ms):7.3f} ms   p95 {p95:7.3f} ms"


async def drive(
    ws: Workspace, keys: int, via: str = "driver", interval_s: float = 0.04
) -> tuple[list[float], list[float], list[float]]:
    from textual import events

    from omdp_tui.app import Launch, OmdpApp
    from omdp_tui.screens.partitions import PartitionsScreen

    app = OmdpApp(Launch("workspace", prepared=ws))
    handled, drawn, rank_only = [], [], []
    async with app.run_test(size=(80, 24)) as pilot:
        while not isinstance(app.screen, PartitionsScreen):
            await pilot.pause(0.05)
            if app.workspace is not None and app.screen.id != "partitions":
                await app.action_show("partitions")
        screen = app.screen
        await pilot.press("b")  # focus the first bandwidth field
        await pilot.pause()
        original_fill = screen._fill

        def timed_fill(ranking) -> None:
            original_fill(ranking)
            screen.filled_at = time.perf_counter()

        original_rank = ws.rank

        def timed_rank(*args, **kwargs):
            t0 = time.perf_counter()
            result = original_rank(*args, **kwargs)
            rank_only.append(time.perf_counter() - t0)
            return result

        frames: list[float] = []
        original_display = app._display

        def timed_display(screen_, renderable) -> None:
            frames.append(time.perf_counter())
            original_display(screen_, renderable)

        screen.filled_at = 0.0
        screen._fill = timed_fill
        ws.rank = timed_rank
        app._display = timed_display
        for i in range(keys):
            key = "up" if (i // 8) % 2 == 0 else "down"  # wander 20 → ~120 → 20 Mbit/s
            t0 = time.perf_counter()
            if via == "pilot":
                await pilot.press(key)  # returns once the key is handled and the screen idle
            else:
                app._driver.send_message(events.Key(key, None))  # as a terminal key arrives
            while screen.filled_at < t0 or not frames or frames[-1] < screen.filled_at:
                await asyncio.sleep(0.0005)
            handled.append(screen.filled_at - t0)
            drawn.append(next(f for f in frames if f >= screen.filled_at) - t0)
            await pilot.pause()  # the app idle again before the next key (not timed)
            await asyncio.sleep(max(0.0, t0 + interval_s - time.perf_counter()))
    return handled, drawn, rank_only


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=300)
    parser.add_argument("--candidates", type=int, default=16)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--via", choices=("driver", "pilot"), default="driver")
    parser.add_argument("--interval-ms", type=float, default=40.0)
    args = parser.parse_args()
    os.environ.setdefault("OMDP_CONFIG_DIR", tempfile.mkdtemp(prefix="omdp-bench-"))
    analysis = analyze("yolov5n")
    cands = analysis.candidates(args.candidates)
    folder = tempfile.mkdtemp(prefix="omdp-bench-")
    ws = Workspace(analysis, "yolov5n", fixed_session(Path(folder) / "bench.omdp", analysis, cands))
    ws.set_ranking_options(k=args.k)
    ws.rank()  # build the ranker once, as the screen does on first show
    handled, drawn, rank_only = asyncio.run(drive(ws, args.keys, args.via, args.interval_ms / 1000))
    print(
        f"bench_tui: YOLOv5n, {len(cands)} candidates, 3 devices, K={args.k}, "
        f"{args.keys} keystrokes at 80×24, keys via {args.via} "
        f"at most every {args.interval_ms:g} ms"
    )
    print(f"  baseline  Ranker.rank (bare call)       {stats(rank_only)}")
    print(f"  keystroke → top-K table refilled        {stats(handled)}")
    print(f"  keystroke → next frame composed         {stats(drawn)}")
    ratio = statistics.median(handled) / statistics.median(rank_only)
    print(f"  ratio refilled / bare rank (median)     {ratio:7.1f}×")
    return 0


if __name__ == "__main__":
    sys.exit(main())
