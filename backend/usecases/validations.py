"""Validating ranked partitions: run each as a chain, measured beside predicted, stored.

`prepare` checks everything the user typed and ranks the session (nothing runs, nothing
is written); `run` runs the chosen partitions one after the other on the chain
(backend/validation/), compares each chain's output with the full model's computed here
on the same input, and stores each validation in the session as it completes. A device
failing during one partition is reported for that partition, nothing is stored for it,
and the others still run.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import io
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from backend.device import cache as model_cache
from backend.device import runtimes
from backend.errors import OmdpError
from backend.files import atomic_write, os_error, read_bytes
from backend.model.analysis import ModelAnalysis
from backend.profiling.session import Session
from backend.remote.models import model_cache_dir, put_model
from backend.remote.stages import StageFailed, StageLauncher
from backend.solver.costs import OBJECTIVES, check_choice, transfer_ms
from backend.solver.link_models import LINK_MODELS, check_link_model, session_links
from backend.solver.link_values import BANDWIDTH, LATENCY, parse_values
from backend.solver.partition import Partition
from backend.usecases.rankings import RankOptions, rank_session
from backend.usecases.sessions import session_analysis
from backend.validation import report as reports
from backend.validation.report import Validation
from backend.validation.route import Route, route_of
from backend.validation.runner import RunProgress, RunSettings, run_route

MAX_FRAMES = 10_000
MAX_WARMUP = 100
MAX_NPY_BYTES = 1 << 30


@dataclass(frozen=True)
class ValidateOptions:
    """Which partitions and how to run them; link values are `NAME=VALUE` texts."""

    ranks: tuple[int, ...] = ()
    top: int | None = None  # also the best `top` partitions
    frames: int = 20
    warmup: int = 3
    objective: str = "latency"
    cost_model: str = "measured"
    bandwidth: tuple[str, ...] = ()
    latency: tuple[str, ...] = ()
    sink: str | None = None
    link_model: str = "typed"  # the one the ranking prices transfers with
    input_npy: str | None = None  # the model's input (a single-input model), else seeded
    seed: int = 0
    timeout_s: float = 120.0
    cache_dir: Path | None = None


@dataclass
class ValidationPlan:
    """What `run` will do: the routes, the input, and where it all comes from."""

    session: Session
    analysis: ModelAnalysis
    options: ValidateOptions
    routes: list[Route]
    links: list[tuple[float, float]]  # (Mbit/s, ms) per link: what was predicted with
    inputs: dict[str, np.ndarray]


@dataclass
class ValidationEvent:
    """Progress for the front-ends: one partition's phase and frames."""

    rank: int
    phase: str  # start | solo (segments timed alone) | frames | done | failed
    done: int = 0
    total: int = 0
    message: str = ""
    pids: dict[str, int] = field(default_factory=dict)
    validation: Validation | None = None


@dataclass
class Outcome:
    validations: list[Validation]
    failed: dict[int, str]  # rank -> why


def _check(session: Session, options: ValidateOptions) -> None:
    session.require_writable("store validations")
    check_choice(options.objective, OBJECTIVES, "objective")
    check_link_model(options.link_model)
    if not 1 <= options.frames <= MAX_FRAMES:
        raise OmdpError(
            f"--frames must be 1..{MAX_FRAMES}, got {options.frames}", "e.g. --frames 20"
        )
    if not 0 <= options.warmup <= MAX_WARMUP:
        raise OmdpError(f"--warmup must be 0..{MAX_WARMUP}, got {options.warmup}")


def prepare(session: Session, options: ValidateOptions) -> ValidationPlan:
    """Check the options, rank the session, pick the partitions; OmdpError on bad input
    (nothing has run and nothing is written)."""
    _check(session, options)
    if not options.ranks and not options.top:
        raise OmdpError("no partition chosen", "give --rank R[,R...] and/or --top K")
    if any(r < 1 for r in options.ranks):
        raise OmdpError("ranks start at 1", "e.g. --rank 1,3")
    wanted = max([*options.ranks, options.top or 0])
    ranked = rank_session(
        session,
        RankOptions(
            k=wanted,
            cost_model=options.cost_model,
            objective=options.objective,
            sink=options.sink,
            bandwidth=options.bandwidth,
            latency=options.latency,
            link_model=options.link_model,
        ),
    )
    parts = ranked.partitions
    missing = [r for r in options.ranks if r > len(parts)]
    if missing:
        raise OmdpError(
            f"rank {missing[0]} does not exist: the session has {len(parts)} "
            f"partition{'s' if len(parts) != 1 else ''} under these options",
            f"choose ranks 1..{len(parts)}" if parts else "profile the session first",
        )
    chosen = sorted({*options.ranks, *range(1, min(options.top or 0, len(parts)) + 1)})
    names = session.chain().link_names
    bandwidth = parse_values(options.bandwidth, names, BANDWIDTH)
    latency = parse_values(options.latency, names, LATENCY)
    links = [
        (bandwidth.get(n, bw), latency.get(n, lat))
        for n, (bw, lat) in zip(names, session.bandwidths(), strict=True)
    ]
    return plan_partitions(session, [_at(parts, r) for r in chosen], links, options)


def plan_partitions(
    session: Session,
    partitions: list[Partition],
    links: list[tuple[float, float]],
    options: ValidateOptions,
) -> ValidationPlan:
    """The plan for partitions already ranked (the TUI's) under these typed link values."""
    _check(session, options)
    analysis = session_analysis(session)
    chain = session.chain()
    typed_bw, typed_lat = zip(*links, strict=True) if links else ((), ())
    by_model = {m: session_links(session, m, typed_bw, typed_lat) for m in LINK_MODELS}
    index = {name: i for i, name in enumerate(chain.link_names)}
    routes = []
    for p in partitions:
        route = route_of(p, chain.names, options.sink)
        link_ms = {
            m: [
                float(transfer_ms(h.bytes, bw[index[h.link]], lat[index[h.link]]))
                for h in route.hops
            ]
            for m, (bw, lat) in by_model.items()
        }
        routes.append(dataclasses.replace(route, link_ms=link_ms))
    inputs = _inputs(analysis, options)
    return ValidationPlan(session, analysis, options, routes, links, inputs)


def _at(parts: list[Partition], rank: int) -> Partition:
    return next(p for p in parts if p.rank == rank)


def _inputs(analysis: ModelAnalysis, options: ValidateOptions) -> dict[str, np.ndarray]:
    """The model's input: the given .npy (checked against the model), else seeded random
    values of its input shapes (the profiler's generator)."""
    index = analysis.index
    specs = [runtimes.tensor_spec(index.value_info[name]) for name in index.inputs]
    if options.input_npy is None:
        return {s.name: runtimes.random_tensor(s, options.seed) for s in specs}
    path = options.input_npy
    if len(specs) != 1:
        raise OmdpError(
            f"--input-npy {path}: the model has {len(specs)} inputs; one file gives one",
            "leave --input-npy out to use seeded random inputs",
        )
    data = read_bytes(path, "input file", MAX_NPY_BYTES, "give a .npy file saved by numpy.save")
    try:
        arr = np.load(io.BytesIO(data), allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise OmdpError(
            f"--input-npy {path}: not a numpy .npy file ({exc})", "save it with numpy.save"
        ) from None
    spec = specs[0]
    if tuple(arr.shape) != spec.shape:
        raise OmdpError(
            f"--input-npy {path}: shape {tuple(arr.shape)}, the model's input "
            f"'{spec.name}' is {spec.shape}",
            "give an array of the input's shape",
        )
    if not np.can_cast(arr.dtype, spec.dtype, "same_kind"):
        raise OmdpError(
            f"--input-npy {path}: dtype {arr.dtype}, the input '{spec.name}' is {spec.dtype}",
            f"save the array as {spec.dtype}",
        )
    return {spec.name: arr.astype(spec.dtype)}


def _put_input(name: str, arr: np.ndarray, cache: Path) -> Path:
    """The input as `<cache>/inputs/<sha256>.npy`, verified like a cached model."""
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    data = buf.getvalue()
    sha = hashlib.sha256(data).hexdigest()
    folder = cache / "inputs"
    target = folder / f"{sha}.npy"
    try:
        model_cache.private_dir(folder)
        if not (target.exists() and model_cache.verified(target, sha)):
            atomic_write(target, data, mode=0o600)
            model_cache.record_verified(target)
    except OSError as exc:
        raise os_error(exc, target, f"write the input {name}") from None
    return target


def reference_output(
    analysis: ModelAnalysis, inputs: dict[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """The full model's output on this machine (onnxruntime, default options)."""
    try:
        runner = runtimes.load(analysis.model_bytes(), runtimes.RuntimeConfig())
        try:
            values = runner.run(inputs)
            return dict(zip(runner.output_names(), values, strict=True))
        finally:
            runner.close()
    except Exception as exc:  # the runtime's own errors: one line, what and where
        raise OmdpError(
            f"cannot compute the full model's output on this machine to check the chain's: "
            f"{runtimes.clean_message(exc)}",
            "install onnxruntime here (the check runs the whole model once)",
        ) from None


async def run(
    plan: ValidationPlan, on_event: Callable[[ValidationEvent], None] | None = None
) -> Outcome:
    """Run every chosen partition (see the module docstring)."""
    emit = on_event or (lambda e: None)
    opts = plan.options
    session, analysis = plan.session, plan.analysis
    cache = opts.cache_dir or model_cache_dir()
    # off the event loop: a front-end keeps drawing while the model is serialised and run
    model_file, sha = await asyncio.to_thread(put_model, analysis.model_bytes(), cache)
    npy = {name: _put_input(name, arr, cache) for name, arr in plan.inputs.items()}
    want = await asyncio.to_thread(reference_output, analysis, plan.inputs)
    chain = session.chain()
    configs = session.device_configs()
    cut_names = [c.tensors for c in analysis.cuts]
    cut_bytes = [c.bytes for c in analysis.cuts]
    settings = RunSettings(opts.frames, opts.warmup, opts.objective, timeout_s=opts.timeout_s)
    outcome = Outcome([], {})
    launcher = StageLauncher(cache)
    try:
        for route in plan.routes:
            rank = route.partition.rank

            def progress(p: RunProgress, rank: int = rank) -> None:
                if p.phase != "done":  # the use case says done once the report is built
                    phase = p.phase if p.phase in ("start", "solo") else "frames"
                    emit(ValidationEvent(rank, phase, p.done, p.total, pids=dict(p.pids)))

            try:
                raw = await run_route(
                    route,
                    chain,
                    launcher=launcher,
                    model_file=model_file,
                    model_sha256=sha,
                    input_shapes=dict(analysis.input_shapes),
                    npy=npy,
                    cut_names=cut_names,
                    cut_bytes=cut_bytes,
                    settings=settings,
                    on_progress=progress,
                )
            except (StageFailed, OmdpError, OSError) as exc:  # OSError: a stage did not start
                outcome.failed[rank] = str(exc)
                emit(ValidationEvent(rank, "failed", message=str(exc)))
                continue
            output = reports.compare_outputs(raw.output, want)
            validation = reports.build(route, raw, settings, output, opts.link_model)
            key = {
                "positions": route.positions,
                "configs": {s.device: configs.get(s.device, "") for s in route.stages},
                "links": plan.links,
                "objective": opts.objective,
            }
            predicted = validation.predicted.get(validation.cost_model)
            session.save_validation(
                key,
                {
                    "cost_model": validation.cost_model,
                    "frames": validation.frames,
                    "measured": validation.measured_value,
                    "predicted": predicted,
                    "error_pct": validation.error_pct.get(validation.cost_model),
                    "output_ok": output.ok,
                    "report": validation.to_dict(),
                },
            )
            outcome.validations.append(validation)
            emit(
                ValidationEvent(rank, "done", settings.total, settings.total, validation=validation)
            )
    finally:
        launcher.close()
    return outcome
