"""The agent path against its baselines, side by side in one run.

1. Overhead: the same segments, the same number of runs, timed (a) directly in this process
   (extract, create the session, warm up, time) and (b) through a local agent subprocess
   (spawn, hello, job, stream results). Reports wall time per segment, the ratio, and the
   ratio of the medians each path measured (the agent must not change the numbers).
2. Total work against OMDP's thesis scheme, which re-creates the session for every timed run
   and times that cold run: runs and seconds each needs until the median's 95% CI is
   within 2%, and what each reports as the latency.

Usage: .venv/bin/python benchmarks/bench_agent.py [--model NAME|PATH] [--runs 30]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

import onnx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from backend.device import protocol, runtimes
from backend.device.protocol import TimingSettings
from backend.device.runtimes import RuntimeConfig
from backend.model.analysis import analyze
from backend.profiling.plan import build_plan
from backend.remote.local import LocalTransport
from backend.remote.models import put_model

LIGHT = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light"


def direct(index, segments, config: RuntimeConfig, timing: TimingSettings, seed: int):
    """Baseline: what the agent does, in this process, no subprocess, no protocol."""
    cuts = index.all_crossings()
    medians = {}
    t0 = time.perf_counter()
    for a, b in segments:
        model = index.extract(a, b, inputs=cuts[a], outputs=cuts[b])
        feeds = {
            t: runtimes.random_tensor(runtimes.tensor_spec(index.value_info[t]), seed)
            for t in cuts[a]
        }
        runner = runtimes.load(model, config)
        medians[(a, b)] = runtimes.time_runner(runner, feeds, timing).stats.median
        runner.close()
    return time.perf_counter() - t0, medians


async def via_agent(
    model_path: Path,
    sha: str,
    cache: Path,
    segments,
    config: RuntimeConfig,
    timing: TimingSettings,
    seed: int,
):
    """The real path: LocalTransport (agent process, lines decoded strictly against the job)."""
    t0 = time.perf_counter()
    transport = LocalTransport(cache)
    job = protocol.Job(sha, list(segments), config.to_dict(), timing, seed, str(model_path))
    await transport.start(job)
    medians = {}
    while True:
        ev = await transport.next_event()
        if ev is None:
            raise RuntimeError(f"agent died: {transport.stderr_tail()}")
        if isinstance(ev, protocol.Result):
            medians[tuple(ev.segment)] = ev.stats["median"]
        elif isinstance(ev, protocol.SegmentError):
            raise RuntimeError(ev.message)
        elif isinstance(ev, protocol.Done):
            break
    await transport.finish(10)
    return time.perf_counter() - t0, medians


def ours_until_ci(model, feeds, config: RuntimeConfig, target: float, cap_s: float):
    t0 = time.perf_counter()
    runner = runtimes.load(model, config)
    t = runtimes.time_runner(
        runner,
        feeds,
        TimingSettings(
            warmup=3, min_runs=10, max_runs=100000, max_seconds=cap_s, target_rel_ci=target
        ),
    )
    return {
        "runs": len(t.samples) + 3,
        "seconds": time.perf_counter() - t0,
        "median_ms": t.stats.median,
        "rel_ci": t.stats.rel_ci,
        "stop": t.stop,
        "load_ms": runner.load_ms,
    }


def thesis_until_ci(model, feeds, config: RuntimeConfig, target: float, cap_s: float):
    """OMDP thesis: every sample = create a session + one cold run, timed together."""
    data = model.SerializeToString()
    samples: list[float] = []
    t0 = time.perf_counter()
    stop = "max_seconds"
    while time.perf_counter() - t0 < cap_s:
        s0 = time.perf_counter()
        runner = runtimes.load(data, config)
        runner.run(feeds)
        samples.append((time.perf_counter() - s0) * 1e3)
        runner.close()
        if len(samples) >= 10:
            st = runtimes.summarize(samples)
            if st.rel_ci is not None and st.rel_ci <= target:
                stop = "ci"
                break
    st = runtimes.summarize(samples)
    return {
        "runs": len(samples),
        "seconds": time.perf_counter() - t0,
        "median_ms": st.median,
        "rel_ci": st.rel_ci,
        "stop": stop,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=str(LIGHT / "light_squeezenet.onnx"))
    ap.add_argument("--runs", type=int, default=30, help="timed runs per segment (part 1)")
    ap.add_argument("--candidates", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--cap", type=float, default=30.0, help="seconds cap per scheme (part 2)")
    args = ap.parse_args()

    analysis = analyze(args.model)
    index = analysis.index
    cands = analysis.candidates(args.candidates)
    segments = [
        (it.start, it.end)
        for it in build_plan(analysis.n, cands, ["a", "mid", "c"]).items
        if it.device == "mid"
    ]
    config = RuntimeConfig("onnxruntime", threads=args.threads)
    timing = TimingSettings(warmup=3, min_runs=args.runs, max_runs=args.runs)
    name = Path(args.model).name
    print(
        f"model {name}: {analysis.n} nodes, candidates {cands}, {len(segments)} segments "
        f"(a middle device's plan), onnxruntime {runtimes.versions()['onnxruntime']}, "
        f"{args.threads} thread(s), {args.runs} timed runs + 3 warm-up per segment"
    )

    with tempfile.TemporaryDirectory(prefix="omdp-bench-") as tmp:
        cache = Path(tmp)
        model_path, sha = put_model(analysis.model, cache)
        # warm both paths once (imports, page cache), then measure
        direct(index, segments[:1], config, TimingSettings(0, 1, 1), 0)
        asyncio.run(
            via_agent(model_path, sha, cache, segments[:1], config, TimingSettings(0, 1, 1), 0)
        )
        d_s, d_med = direct(index, segments, config, timing, 0)
        a_s, a_med = asyncio.run(via_agent(model_path, sha, cache, segments, config, timing, 0))
    k = len(segments)
    ratios = sorted(a_med[s] / d_med[s] for s in segments)
    print("\n1. agent path vs in-process (same segments, same runs)")
    print(f"   {'':24}{'in-process':>14}{'agent':>14}{'ratio':>9}")
    print(f"   {'wall time, total':24}{d_s:>13.2f}s{a_s:>13.2f}s{a_s / d_s:>9.2f}")
    print(
        f"   {'wall time per segment':24}{d_s / k * 1e3:>12.1f}ms{a_s / k * 1e3:>12.1f}ms"
        f"{a_s / d_s:>9.2f}"
    )
    print(
        f"   overhead per segment: {(a_s - d_s) / k * 1e3:.1f} ms (agent start-up, model "
        f"load, protocol), i.e. {(a_s - d_s) * 1e3:.0f} ms per job"
    )
    print(
        f"   measured medians, agent / in-process: min {ratios[0]:.3f}, median "
        f"{ratios[len(ratios) // 2]:.3f}, max {ratios[-1]:.3f}"
    )

    whole = index.extract(0, analysis.n)
    seg_feeds = runtimes.random_inputs(runtimes.input_specs(whole))
    print(
        f"\n2. total work to a median within ±2% (95% CI), whole model [0, {analysis.n}), "
        f"cap {args.cap:.0f} s each"
    )
    ours = ours_until_ci(whole, seg_feeds, config, 0.02, args.cap)
    thesis = thesis_until_ci(whole, seg_feeds, config, 0.02, args.cap)
    print(f"   {'':26}{'OMDP (thesis)':>16}{'this tool':>14}{'ratio':>9}")
    print(
        f"   {'runs':26}{thesis['runs']:>16}{ours['runs']:>14}{thesis['runs'] / ours['runs']:>9.2f}"
    )
    print(
        f"   {'seconds':26}{thesis['seconds']:>15.2f}s{ours['seconds']:>13.2f}s"
        f"{thesis['seconds'] / ours['seconds']:>9.2f}"
    )
    print(
        f"   {'reported latency (median)':26}{thesis['median_ms']:>14.2f}ms"
        f"{ours['median_ms']:>12.2f}ms{thesis['median_ms'] / ours['median_ms']:>9.2f}"
    )
    print(f"   {'CI half-width reached':26}{_pct(thesis['rel_ci']):>16}{_pct(ours['rel_ci']):>14}")
    print(f"   {'stopped by':26}{thesis['stop']:>16}{ours['stop']:>14}")
    print(
        f"   session creation (recorded apart here): {ours['load_ms']:.1f} ms; the thesis "
        "scheme counts it in every sample"
    )
    return 0


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{v * 100:.2f}%"


if __name__ == "__main__":
    sys.exit(main())
