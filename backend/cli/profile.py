"""`omdp profile MODEL --devices devices.toml`: measure the plan, live, into a session.

`omdp profile --session S.omdp` resumes a session with its own model and chain.

Prints the plan (counts, what is already done, an estimated duration) first, then one
line per measured segment. Ctrl-C stops cleanly: everything measured is already committed,
and running the same command again resumes with only what is missing.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import signal
import sys
from pathlib import Path

from backend import units
from backend.errors import OmdpError

MAX_RUNS = 1_000_000
MAX_WARMUP = MAX_NODE_RUNS = 10_000
MAX_SECONDS = 86_400.0  # a day per segment
MAX_SEED = 2**63 - 1
MAX_AUTO = 1_000


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "profile",
        description=" ".join(__doc__.split("\n\n")[:2]),
    )
    p.add_argument(
        "model", nargs="?", help="ONNX file or built-in model name (resuming: the session's)"
    )
    p.add_argument(
        "--devices", help="devices.toml (chain and links; resuming: the session's chain)"
    )
    g = p.add_mutually_exclusive_group()
    g.add_argument("--candidates", help="split positions: indices or node names, comma-separated")
    g.add_argument("--auto", type=int, metavar="K", help="pick K candidates (default 5)")
    p.add_argument(
        "--session",
        help="session file (default: sessions/<model>.omdp; an existing one is resumed)",
    )
    p.add_argument("--input-shape", action="append", default=[], metavar="NAME=D0,D1,...")
    p.add_argument("--json", action="store_true", help="JSON lines events, then a summary")
    t = p.add_argument_group("timing (not given: the session's own when resuming)")
    t.add_argument("--warmup", type=int, help="warm-up runs (default 3)")
    t.add_argument("--min-runs", type=int, help="timed runs at least (default 10)")
    t.add_argument("--max-runs", type=int, help="timed runs at most (default 1000)")
    t.add_argument(
        "--max-seconds",
        type=float,
        help="time budget per segment once --min-runs are done (default 10)",
    )
    t.add_argument(
        "--target-ci",
        type=float,
        metavar="PCT",
        help="stop when the median's 95%% CI half-width is below PCT %% (default 2)",
    )
    i = p.add_argument_group("inputs")
    i.add_argument("--seed", type=int, default=0, help="seed of the random inputs")
    i.add_argument(
        "--input-npy",
        action="append",
        default=[],
        metavar="[NAME=]FILE.npy",
        help="real model input: segments then get real intermediate tensors",
    )
    i.add_argument(
        "--node-times",
        type=int,
        default=5,
        metavar="RUNS",
        help="profiled whole-model runs for per-node times (0: skip)",
    )
    o = p.add_argument_group("other")
    o.add_argument(
        "--share-cpus",
        action="store_true",
        help="run local devices that share CPUs at the same time (faster, noisier)",
    )
    o.add_argument("--retry-errors", action="store_true", help="measure failed segments again")
    o.add_argument(
        "--remeasure",
        metavar="WHAT",
        help="measure again: noisy (CI missed the target), throttled (timed on a hot or "
        "slowed-down CPU), a DEVICE, a segment a:b on every device, or DEVICE@a:b (earlier "
        "results stay in the session's history)",
    )
    o.add_argument("--cache", help="model cache folder for the agents")
    o.add_argument("--dry-run", action="store_true", help="show the plan, measure nothing")
    p.set_defaults(func=run)


def _npy_inputs(specs: list[str], inputs: list) -> dict[str, str]:
    """Model input -> absolute .npy path, each file checked (an array of numbers of the
    input's shape) before anything is written."""
    by_name = {t.name: t for t in inputs}
    out: dict[str, str] = {}
    for spec in specs:
        name, sep, path = spec.rpartition("=")
        if not sep:
            if len(by_name) != 1:
                raise OmdpError(
                    f"--input-npy {spec}: the model has inputs {', '.join(by_name)}",
                    "write NAME=FILE.npy",
                )
            name, path = next(iter(by_name)), spec
        if name not in by_name:
            raise OmdpError(
                f"--input-npy names '{name}', which is not a model input",
                f"the inputs are: {', '.join(by_name)}",
            )
        if name in out:
            raise OmdpError(f"--input-npy gives input '{name}' twice", "give each input once")
        if not Path(path).is_file():
            raise OmdpError(f"--input-npy: no file {path}", "give an existing .npy file")
        _check_npy(Path(path), by_name[name])
        out[name] = str(Path(path).resolve())
    return out


def _check_npy(path: Path, want) -> None:
    import numpy as np

    fix = "save one array of the input's shape with numpy.save"
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise OmdpError(f"--input-npy {path} is not a readable .npy file ({exc})", fix) from None
    if not isinstance(arr, np.ndarray):
        arr.close()
        raise OmdpError(f"--input-npy {path} is an .npz archive, not one array", fix)
    if arr.dtype.kind not in "biufc":
        raise OmdpError(f"--input-npy {path} holds {arr.dtype}, not numbers", fix)
    shape = want.shape
    if (
        shape is not None
        and all(isinstance(d, int) for d in shape)
        and tuple(arr.shape) != tuple(shape)
    ):
        raise OmdpError(
            f"--input-npy {path} has shape {tuple(arr.shape)}, input "
            f"'{want.name}' needs {tuple(shape)}",
            fix,
        )


def _check_numbers(args: argparse.Namespace) -> None:
    """Every number in range and finite before anything is read or written."""

    def need(ok: bool, flag: str, value, rule: str) -> None:
        if not ok:
            raise OmdpError(f"{flag} {value}: {rule}", f"e.g. {flag} {p_defaults[flag]}")

    p_defaults = {
        "--warmup": 3,
        "--min-runs": 10,
        "--max-runs": 1000,
        "--max-seconds": 10,
        "--target-ci": 2,
        "--seed": 0,
        "--node-times": 5,
        "--auto": 5,
    }
    need(
        0 <= args.warmup <= MAX_WARMUP,
        "--warmup",
        args.warmup,
        f"warm-up runs go from 0 to {MAX_WARMUP}",
    )
    need(
        1 <= args.min_runs <= MAX_RUNS,
        "--min-runs",
        args.min_runs,
        f"timed runs go from 1 to {MAX_RUNS}",
    )
    need(
        args.min_runs <= args.max_runs <= MAX_RUNS,
        "--max-runs",
        args.max_runs,
        f"must be at least --min-runs ({args.min_runs}) and at most {MAX_RUNS}",
    )
    need(
        math.isfinite(args.max_seconds) and 0 < args.max_seconds <= MAX_SECONDS,
        "--max-seconds",
        args.max_seconds,
        f"a time budget is a number of seconds > 0 and ≤ {MAX_SECONDS:g}",
    )
    need(
        math.isfinite(args.target_ci) and 0 < args.target_ci <= 100,
        "--target-ci",
        args.target_ci,
        "a precision target is a percentage > 0 and ≤ 100",
    )
    need(0 <= args.seed <= MAX_SEED, "--seed", args.seed, "a seed goes from 0 to 2^63 - 1")
    need(
        0 <= args.node_times <= MAX_NODE_RUNS,
        "--node-times",
        args.node_times,
        f"profiled runs go from 0 (skip) to {MAX_NODE_RUNS}",
    )
    if args.auto is not None:
        need(
            1 <= args.auto <= MAX_AUTO, "--auto", args.auto, f"pick from 1 to {MAX_AUTO} candidates"
        )
    if args.cache and Path(args.cache).exists() and not Path(args.cache).is_dir():
        raise OmdpError(
            f"--cache {args.cache} is not a folder",
            "give a folder for the model cache (it is created if missing)",
        )


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
            self.text(
                f"[{event.device}] agent up on {h.get('hostname')} ({h.get('cpu')}), "
                f"{units.plural(event.total, 'segment')} to measure"
                + (
                    " (segments mode: no onnx there, the lab cut them)"
                    if event.mode == "segments"
                    else ""
                )
            )
        elif isinstance(event, jobs.Progress) and event.last is not None:
            m = event.last
            a, b = m.segment
            eta = f", ETA {event.eta_s:.0f} s" if event.eta_s is not None else ""
            head = f"[{event.device} {event.done}/{event.total}{eta}] [{a}, {b})"
            if m.status == "ok":
                flag = f" [THROTTLED: {m.throttled}]" if m.throttled else ""
                self.text(
                    f"{head} {m.median_ms:.3f} ms median, {m.samples} runs, load {m.load_ms:.0f} ms"
                    f"{flag}"
                )
            else:
                self.text(f"{head} error: {m.message}")
        elif isinstance(event, jobs.Notice):
            self.text(f"[{event.device}] note: {event.message}")
        elif isinstance(event, jobs.DeviceFailed):
            self.text(f"[{event.device}] FAILED: {event.message}")
        elif isinstance(event, jobs.DeviceFinished):
            how = "stopped" if event.stopped else "done"
            self.text(
                f"[{event.device}] {how}: {event.done}/{event.total} "
                f"({event.errors} errors) in {event.seconds:.1f} s"
            )


def run(args: argparse.Namespace) -> int:
    from backend.chain import load_devices
    from backend.device.protocol import TimingSettings

    stored = _stored(args)
    _fill_timing(args, stored.timing if stored else None)
    _check_numbers(args)
    printer = _Printer(args.json)
    chain = load_devices(args.devices) if args.devices else _stored_chain(args, stored)
    timing = TimingSettings(
        args.warmup, args.min_runs, args.max_runs, args.max_seconds, args.target_ci / 100.0
    )
    with _open_session(args, chain) as (opened, npy, target):
        for w in chain.warnings:  # once every input is known good: a refusal is one line
            if args.json:
                printer.out({"event": "warning", "message": w})
            else:
                print(f"omdp: warning: {w}", file=sys.stderr)
        return _profile(args, opened, npy, chain, timing, printer, target)


def _session_path(args: argparse.Namespace) -> Path:
    from backend.profiling.session import default_path

    if args.session:
        return Path(args.session)
    if args.model is None:
        raise OmdpError(
            "no model and no session given",
            "give MODEL --devices devices.toml for a new session, or --session S.omdp to resume",
        )
    return default_path(args.model)


# flag -> TimingSettings field; --target-ci is in %
TIMING_FLAGS = {
    "warmup": "warmup",
    "min_runs": "min_runs",
    "max_runs": "max_runs",
    "max_seconds": "max_seconds",
    "target_ci": "target_rel_ci",
}


def _stored(args: argparse.Namespace):
    """The chain and timing settings of the session this run resumes (None: a new one)."""
    from backend.profiling.sessionfile import present
    from backend.usecases.sessions import stored_settings

    path = _session_path(args)
    return stored_settings(path) if present(path) else None


def _fill_timing(args: argparse.Namespace, stored) -> None:
    """Timing flags not given: those the session was last measured with when resuming
    (`stored`: so going on, or re-measuring, times as before and judges noise by the same
    target), else the defaults."""
    from backend.device.protocol import TimingSettings

    timing = stored or TimingSettings()
    for flag, name in TIMING_FLAGS.items():
        if getattr(args, flag) is None:
            value = getattr(timing, name)
            setattr(args, flag, value * 100 if flag == "target_ci" else value)


def _stored_chain(args: argparse.Namespace, stored):
    """Resuming without --devices: the chain the session was profiled with."""
    if stored is None:
        raise OmdpError(
            f"no session at {_session_path(args)}, and no --devices for a new one",
            "give --devices devices.toml (its chain of devices), e.g. examples/devices.toml",
        )
    return stored.chain


@contextlib.contextmanager
def _open_session(args, chain):
    """Resume the session if the file exists (same model, same chain), else create it,
    whole and already claimed by this profiler. Every input (the .npy files too) is
    checked before the file is touched; a dry run writes nothing anywhere."""
    from backend.model.analysis import parse_input_shapes
    from backend.usecases.candidates import CandidateChoice
    from backend.usecases.sessions import OpenRequest, open_prepared, prepare

    given = None
    if args.candidates:
        given = tuple(s for s in args.candidates.split(",") if s.strip())
        if not given:
            raise OmdpError("--candidates is empty", "give positions or node names, e.g. 12,40")
    path = _session_path(args)
    request = OpenRequest(
        path,
        args.model,
        parse_input_shapes(args.input_shape),
        chain=chain,
        candidates=CandidateChoice(given, args.auto),
        claim=not args.dry_run,
        dry_run=args.dry_run,
    )
    prepared = prepare(request)
    npy = _npy_inputs(args.input_npy, prepared.analysis.inputs)
    target = None
    if args.remeasure is not None:
        from backend.usecases.remeasure import parse_target

        target = parse_target(args.remeasure, chain, prepared.analysis.n)
    with open_prepared(prepared) as opened:
        yield opened, npy, target


def _profile(args, opened, npy, chain, timing, printer, target=None) -> int:
    from backend.profiling import plan
    from backend.usecases.plans import cpu_waits
    from backend.usecases.runs import RunSettings, plan_run

    session, resumed = opened.session, opened.resumed
    analysis, cands = opened.analysis, opened.candidates
    settings = RunSettings(
        timing,
        seed=args.seed,
        npy=npy,
        node_times_runs=args.node_times,
        share_cpus=args.share_cpus,
        retry_errors=args.retry_errors,
        cache_dir=Path(args.cache) if args.cache else None,
    )
    if target is not None:
        _remeasure(args, session, opened, chain, target, printer)
    planned = plan_run(session, opened.analysis, chain, opened.candidates, settings)
    the_plan, todo, est = planned.plan, planned.todo, planned.estimate
    waits = cpu_waits(chain, args.share_cpus)
    counts = the_plan.counts()
    todo_counts = {n: sum(it.device == n for it in todo) for n in chain.names}
    if args.json:
        printer.out(
            {
                "event": "plan",
                "session": str(session.path),
                "resumed": resumed,
                "nodes": analysis.n,
                "candidates": cands,
                "segments": len(the_plan),
                "per_device": counts,
                "todo": len(todo),
                "todo_per_device": todo_counts,
                "estimate_s": round(est.seconds, 1),
                "waits_for": waits,
            }
        )
    else:
        per = ", ".join(f"{n} {counts[n]}" for n in chain.names)
        print(
            f"model: {analysis.path or opened.model_ref} ({analysis.n} nodes), candidates: "
            f"{', '.join(map(str, cands)) or 'none'}"
        )
        print(
            f"plan: {units.plural(len(the_plan), 'segment')} ({per}); "
            f"{len(the_plan) - len(todo)} done, "
            f"{len(todo)} to measure, estimated {plan.format_duration(est.seconds)}"
            f"{' (from earlier measurements)' if est.from_measurements else ''}"
        )
        if waits:
            said = "; ".join(f"{n} waits for {' and '.join(w)}" for n, w in waits.items())
            print(
                f"note: devices sharing CPUs measure one at a time: {said} "
                "(--share-cpus overlaps them, at the cost of noisier timings)"
            )
        note = " (resumed)" if resumed else ""
        if args.dry_run:
            note += " (dry run: nothing written)"
        print(f"session: {session.path}{note}", flush=True)
    if args.dry_run:
        return 0
    if planned.nothing_to_do:
        if args.json:
            printer.out(
                {
                    "event": "summary",
                    "measured": 0,
                    "errors": 0,
                    "stopped": False,
                    "done": session.progress()[0],
                    "total": len(the_plan),
                    "session": str(session.path),
                }
            )
        else:
            print("nothing to measure: the session is complete")
        return 0

    profiler = planned.profiler(on_event=printer)
    summary = asyncio.run(_run_with_signals(profiler, todo))
    failed = dict(summary.failed)
    if not summary.stopped:
        for name, message in _measured_nothing(session, profiler).items():
            failed.setdefault(name, message)
    done, total = session.progress()
    if args.json:
        printer.out(
            {
                "event": "summary",
                "measured": summary.measured,
                "errors": summary.errors,
                "failed": failed,
                "stopped": summary.stopped,
                "seconds": round(summary.seconds, 2),
                "done": done,
                "total": total,
                "session": str(session.path),
            }
        )
    else:
        print(
            f"measured {units.plural(summary.measured, 'segment')} "
            f"({units.plural(summary.errors, 'error')}) in "
            f"{summary.seconds:.1f} s; session {done}/{total} complete: {session.path}"
        )
        for name, message in failed.items():
            if name not in summary.failed:
                print(f"[{name}] {message}")
        if summary.stopped or done < total:
            why = (
                "stopped early"
                if summary.stopped
                else f"{', '.join(failed) or 'a device'} did not finish"
            )
            # again with --remeasure would move what was just measured to the history
            again = (
                f"`omdp profile --session {session.path}` measures the rest"
                if args.remeasure
                else "run the same command again to measure the rest"
            )
            print(f"{why}: everything measured is saved; {again}")
    if summary.stopped:
        return 130
    return 1 if failed else 0


def _remeasure(args, session, opened, chain, target, printer) -> None:
    """Move what `--remeasure` names into the history, so the plan measures it again."""
    from backend.usecases import plans
    from backend.usecases.remeasure import remeasure

    items = plans.build(opened.analysis, chain, opened.candidates).items
    chosen = remeasure(session, items, target)
    cells = [f"{it.device} [{it.start}, {it.end})" for it in chosen]
    if args.json:
        printer.out({"event": "remeasure", "target": args.remeasure, "cells": cells})
        return
    if not chosen:
        print(f"nothing to re-measure: {target.nothing()}")
        return
    shown = ", ".join(cells[:6]) + (f" and {len(cells) - 6} more" if len(cells) > 6 else "")
    verb = "would re-measure" if args.dry_run else "re-measuring"
    print(f"{verb} {len(chosen)} ({target.describe()}): {shown}; earlier results kept")


def _measured_nothing(session, profiler) -> dict[str, str]:
    """Devices that had segments to measure and measured none of them (every one failed):
    the run did not do its job there, whatever the agent said."""
    spoiled = session.spoiled()
    return {
        name: f"measured nothing: all {st.total} segments failed (first error: "
        f"{spoiled.get(name, 'see `omdp results`')})"
        for name, st in profiler.state.items()
        if st.total > 0 and st.done == st.errors
    }


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
