"""`omdp profile MODEL --devices devices.toml`: measure the plan, live, into a session.

Prints the plan (counts, what is already done, an estimated duration) first, then one
line per measured segment. Ctrl-C stops cleanly: everything measured is already committed,
and running the same command again resumes with only what is missing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from pathlib import Path

from backend.errors import OmdpError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("profile", help="profile the plan's segments on every device",
                       description=__doc__.split("\n\n")[0])
    p.add_argument("model", help="ONNX file or built-in model name")
    p.add_argument("--devices", required=True, help="devices.toml (chain and links)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--candidates", help="split positions: indices or node names, comma-separated")
    g.add_argument("--auto", type=int, metavar="K", help="pick K candidates (default 5)")
    p.add_argument("--session", help="session file (default: sessions/<model>.omdp; an "
                   "existing one is resumed)")
    p.add_argument("--input-shape", action="append", default=[], metavar="NAME=D0,D1,...")
    p.add_argument("--json", action="store_true", help="JSON lines events, then a summary")
    t = p.add_argument_group("timing")
    t.add_argument("--warmup", type=int, default=3, help="warm-up runs (default 3)")
    t.add_argument("--min-runs", type=int, default=10, help="timed runs at least (default 10)")
    t.add_argument("--max-runs", type=int, default=1000, help="timed runs at most (default 1000)")
    t.add_argument("--max-seconds", type=float, default=10.0,
                   help="time budget per segment once --min-runs are done (default 10)")
    t.add_argument("--target-ci", type=float, default=2.0, metavar="PCT",
                   help="stop when the median's 95%% CI half-width is below PCT %% (default 2)")
    i = p.add_argument_group("inputs")
    i.add_argument("--seed", type=int, default=0, help="seed of the random inputs")
    i.add_argument("--input-npy", action="append", default=[], metavar="[NAME=]FILE.npy",
                   help="real model input: segments then get real intermediate tensors")
    i.add_argument("--node-times", type=int, default=5, metavar="RUNS",
                   help="profiled whole-model runs for per-node times (0: skip)")
    o = p.add_argument_group("other")
    o.add_argument("--share-cpus", action="store_true",
                   help="run local devices that share CPUs at the same time (faster, noisier)")
    o.add_argument("--retry-errors", action="store_true", help="measure failed segments again")
    o.add_argument("--cache", help="model cache folder for the agents")
    o.add_argument("--dry-run", action="store_true", help="show the plan, measure nothing")
    p.set_defaults(func=run)


def _npy_inputs(specs: list[str], input_names: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for spec in specs:
        name, sep, path = spec.rpartition("=")
        if not sep:
            if len(input_names) != 1:
                raise OmdpError(f"--input-npy {spec}: the model has inputs "
                                f"{', '.join(input_names)}", "write NAME=FILE.npy")
            name, path = input_names[0], spec
        if name not in input_names:
            raise OmdpError(f"--input-npy names '{name}', which is not a model input",
                            f"the inputs are: {', '.join(input_names)}")
        if not Path(path).is_file():
            raise OmdpError(f"--input-npy: no file {path}", "give an existing .npy file")
        out[name] = str(Path(path).resolve())
    return out


class _Printer:
    """Live output: one line per result (text) or per event (JSON lines)."""

    def __init__(self, as_json: bool):
        self.as_json = as_json

    def out(self, obj: dict) -> None:
        print(json.dumps(obj, default=str), flush=True)

    def text(self, line: str) -> None:
        print(line, flush=True)

    def __call__(self, event) -> None:
        from backend.profiling import jobs

        if self.as_json:
            if not isinstance(event, jobs.RunFinished):
                self.out(jobs.event_dict(event))
            return
        if isinstance(event, jobs.DeviceStarted):
            h = event.host
            self.text(f"[{event.device}] agent up on {h.get('hostname')} ({h.get('cpu')}), "
                      f"{event.total} segments to measure")
        elif isinstance(event, jobs.Progress) and event.last is not None:
            m = event.last
            a, b = m.segment
            eta = f", ETA {event.eta_s:.0f} s" if event.eta_s is not None else ""
            head = f"[{event.device} {event.done}/{event.total}{eta}] [{a}, {b})"
            if m.status == "ok":
                self.text(f"{head} {m.median_ms:.3f} ms median, {m.samples} runs, "
                          f"load {m.load_ms:.0f} ms")
            else:
                self.text(f"{head} error: {m.message}")
        elif isinstance(event, jobs.Notice):
            self.text(f"[{event.device}] note: {event.message}")
        elif isinstance(event, jobs.DeviceFailed):
            self.text(f"[{event.device}] FAILED: {event.message}")
        elif isinstance(event, jobs.DeviceFinished):
            how = "stopped" if event.stopped else "done"
            self.text(f"[{event.device}] {how}: {event.done}/{event.total} "
                      f"({event.errors} errors) in {event.seconds:.1f} s")


def run(args: argparse.Namespace) -> int:
    from backend.chain import load_devices
    from backend.device.runtimes import TimingSettings

    printer = _Printer(args.json)
    chain = load_devices(args.devices)
    for w in chain.warnings:
        if args.json:
            printer.out({"event": "warning", "message": w})
        else:
            print(f"omdp: warning: {w}", file=sys.stderr)
    if args.auto is not None and args.auto < 1:
        raise OmdpError(f"--auto {args.auto}", "ask for at least 1 candidate")
    if args.min_runs < 1 or args.max_runs < args.min_runs or args.warmup < 0 \
            or args.max_seconds <= 0 or args.target_ci <= 0:
        raise OmdpError("inconsistent timing options", "need 1 ≤ --min-runs ≤ --max-runs, "
                        "--warmup ≥ 0, --max-seconds > 0, --target-ci > 0")
    timing = TimingSettings(args.warmup, args.min_runs, args.max_runs, args.max_seconds,
                            args.target_ci / 100.0)
    session, analysis, cands, resumed = _open_session(args, chain)
    try:
        return _profile(args, session, analysis, chain, cands, timing, resumed, printer)
    finally:
        session.close()


def _open_session(args, chain):
    """Resume the session if the file exists (same model, same chain), else create it."""
    from backend.model.analysis import parse_input_shapes
    from backend.profiling.session import default_path
    from backend.usecases.candidates import CandidateChoice
    from backend.usecases.sessions import OpenRequest, open_session

    given = None
    if args.candidates:
        given = tuple(s for s in args.candidates.split(",") if s.strip())
        if not given:
            raise OmdpError("--candidates is empty", "give positions or node names, e.g. 12,40")
    path = Path(args.session) if args.session else default_path(args.model)
    opened = open_session(OpenRequest(path, args.model, parse_input_shapes(args.input_shape),
                                      chain=chain, candidates=CandidateChoice(given, args.auto)))
    return opened.session, opened.analysis, opened.candidates, opened.resumed


def _profile(args, session, analysis, chain, cands, timing, resumed, printer) -> int:
    from backend.profiling import plan
    from backend.usecases.plans import cpu_waits
    from backend.usecases.runs import RunSettings, plan_run

    npy = _npy_inputs(args.input_npy, [t.name for t in analysis.inputs])
    settings = RunSettings(timing, seed=args.seed, npy=npy, node_times_runs=args.node_times,
                           share_cpus=args.share_cpus, retry_errors=args.retry_errors,
                           cache_dir=Path(args.cache) if args.cache else None)
    planned = plan_run(session, analysis, chain, cands, settings)
    the_plan, todo, est = planned.plan, planned.todo, planned.estimate
    waits = cpu_waits(chain, args.share_cpus)
    counts = the_plan.counts()
    todo_counts = {n: sum(it.device == n for it in todo) for n in chain.names}
    if args.json:
        printer.out({"event": "plan", "session": str(session.path), "resumed": resumed,
                     "nodes": analysis.n, "candidates": cands, "segments": len(the_plan),
                     "per_device": counts, "todo": len(todo), "todo_per_device": todo_counts,
                     "estimate_s": round(est.seconds, 1), "waits_for": waits})
    else:
        per = ", ".join(f"{n} {counts[n]}" for n in chain.names)
        print(f"model: {analysis.path or args.model} ({analysis.n} nodes), candidates: "
              f"{', '.join(map(str, cands)) or 'none'}")
        print(f"plan: {len(the_plan)} segments ({per}); {len(the_plan) - len(todo)} done, "
              f"{len(todo)} to measure, estimated {plan.format_duration(est.seconds)}"
              f"{' (from earlier measurements)' if est.from_measurements else ''}")
        if waits:
            said = "; ".join(f"{n} waits for {' and '.join(w)}" for n, w in waits.items())
            print(f"note: devices sharing CPUs measure one at a time: {said} "
                  "(--share-cpus overlaps them, at the cost of noisier timings)")
        print(f"session: {session.path}" + (" (resumed)" if resumed else ""), flush=True)
    if args.dry_run:
        return 0
    if planned.nothing_to_do:
        if args.json:
            printer.out({"event": "summary", "measured": 0, "errors": 0, "stopped": False,
                         "done": session.progress()[0], "total": len(the_plan),
                         "session": str(session.path)})
        else:
            print("nothing to measure: the session is complete")
        return 0

    profiler = planned.profiler(on_event=printer)
    summary = asyncio.run(_run_with_signals(profiler, todo))
    done, total = session.progress()
    if args.json:
        printer.out({"event": "summary", "measured": summary.measured, "errors": summary.errors,
                     "failed": summary.failed, "stopped": summary.stopped,
                     "seconds": round(summary.seconds, 2), "done": done, "total": total,
                     "session": str(session.path)})
    else:
        print(f"measured {summary.measured} segments ({summary.errors} errors) in "
              f"{summary.seconds:.1f} s; session {done}/{total} complete: {session.path}")
        if summary.stopped or done < total:
            why = "stopped early" if summary.stopped else \
                f"{', '.join(summary.failed) or 'a device'} did not finish"
            print(f"{why}: everything measured is saved; run the same command again to "
                  "measure the rest")
    if summary.stopped:
        return 130
    return 1 if summary.failed else 0


async def _run_with_signals(profiler, todo):
    from backend.usecases.runs import run_plan

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, profiler.cancel)
    try:
        return await run_plan(profiler, todo)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
