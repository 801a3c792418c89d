"""From the stages' stamps to what a validation reports: per frame and per stage, the
clocks put together, statistics over the counted frames, each beside its prediction, and
where the prediction is off.

Clocks: a stage stamps with its own monotonic clock. The offset of stage j+1's clock
from stage j's is measured over their link by round trips (NTP's formula, the round with
the shortest trip; backend/device/tensorwire.py); offsets add up along the chain, so
every stamp can be put on the first device's clock. Within one stage only differences of
its own stamps are used (compute = end - start).

Per frame: a stage's compute time is its runtime call; a hop's transfer time runs from
the sender starting to serialise to the receiver holding the arrays (the sender's stamp
and the receiver's, put on one clock); end to end runs from the source starting the
frame to the final stage finishing it; the hand-off is what is left: end to end minus
every compute and transfer (queues and threads between receiving, computing and sending).
Errors are (predicted - measured) / measured: positive means the ranking expected more.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from backend.solver.costs import COST_MODELS
from backend.validation.route import Route
from backend.validation.runner import ChainRun, RunSettings

OUTPUT_RTOL = 1e-3  # relative to the output's largest magnitude: runtimes round differently


@dataclass(frozen=True)
class Spread:
    """Median, p10 and p90 of a list of milliseconds."""

    median: float
    p10: float
    p90: float

    @classmethod
    def of(cls, values: list[float]) -> Spread:
        a = np.asarray(values, dtype=float)
        return cls(*(float(x) for x in np.percentile(a, [50, 10, 90])))


@dataclass
class StageResult:
    device: str
    role: str  # compute | relay | source | sink
    segment: tuple[int, int] | None
    measured: Spread | None  # its compute time (None: computes nothing)
    predicted: dict[str, float | None]  # per cost model
    error_pct: dict[str, float | None]
    load_ms: float | None = None
    runtime: dict[str, Any] | None = None
    solo: Spread | None = None  # the segment alone on the device, just before the frames


@dataclass
class HopResult:
    link: str
    src: str
    dst: str
    position: int
    bytes: float
    loopback: bool
    measured: Spread
    predicted_ms: float
    error_pct: float | None
    clock_rtt_ms: float
    clock_offset_ms: float
    by_link_model: dict[str, float] = field(default_factory=dict)  # the prediction per model


@dataclass
class OutputCheck:
    """The chain's output against the full model's on the same input."""

    max_abs: float
    max_rel: float  # max abs difference / the reference's largest magnitude
    ok: bool


@dataclass
class Gap:
    """One part of the prediction and how far off it is (ms, per frame)."""

    where: str  # "compute DEVICE", "link NAME", "hand-off"
    predicted_ms: float
    measured_ms: float

    @property
    def diff_ms(self) -> float:
        return self.predicted_ms - self.measured_ms

    def to_dict(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "diff_ms": self.diff_ms,
            "error_pct": pct(self.predicted_ms, self.measured_ms),
        }


@dataclass
class Validation:
    rank: int
    positions: list[int]
    objective: str
    cost_model: str  # the model that ranked the partition
    frames: int
    warmup_ms: list[float]  # end to end, the warm-up frames (not counted)
    latency: Spread  # end to end, counted frames
    handoff: Spread
    fps: float | None  # throughput objective: counted frames / their span at the final stage
    predicted: dict[str, float | None]  # the objective per cost model: ms, or frames/s
    error_pct: dict[str, float | None]
    stages: list[StageResult]
    hops: list[HopResult]
    output: OutputCheck
    gaps: list[Gap]  # biggest first
    seconds: float
    notes: list[str] = field(default_factory=list)
    per_frame: list[dict[str, Any]] = field(default_factory=list)  # counted frames, ms
    link_model: str = "typed"  # how the ranking priced transfers (backend/solver/link_models)
    by_link_model: dict[str, float | None] = field(default_factory=dict)  # the objective
    error_by_link_model: dict[str, float | None] = field(default_factory=dict)

    @property
    def measured_value(self) -> float:
        """What the objective measured: the median latency (ms) or frames/s."""
        return self.fps if self.fps is not None else self.latency.median

    def verdict(self) -> str:
        """One line: the error under the ranking's model and where most of it comes from."""
        err = self.error_pct.get(self.cost_model)
        unit = "frames/s" if self.objective == "throughput" else "ms"
        pred = self.predicted.get(self.cost_model)
        head = (
            f"predicted {_fmt(pred)} {unit}, measured {_fmt(self.measured_value)} {unit}"
            f" ({_signed(err)})"
        )
        if not self.gaps or err is None or abs(err) <= 10:
            return head + ": within 10%" if err is not None and abs(err) <= 10 else head
        g = self.gaps[0]
        return (
            f"{head}: most of the gap is {g.where} (predicted {g.predicted_ms:.2f} ms, "
            f"measured {g.measured_ms:.2f} ms, {g.diff_ms:+.2f} ms)"
        )

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["gaps"] = [g.to_dict() for g in self.gaps]
        d["verdict"] = self.verdict()
        d["measured_value"] = self.measured_value
        return d


def pct(predicted: float | None, measured: float | None) -> float | None:
    if predicted is None or measured is None or not measured > 0 or not math.isfinite(predicted):
        return None
    return (predicted - measured) / measured * 100.0


def _fmt(v: float | None) -> str:
    return "?" if v is None else f"{v:.2f}"


def _signed(v: float | None) -> str:
    return "error unknown" if v is None else f"{v:+.1f}%"


def compare_outputs(got: dict[str, np.ndarray], want: dict[str, np.ndarray]) -> OutputCheck:
    """Max abs and relative difference over every output tensor; a missing or misshapen
    tensor fails the check."""
    max_abs, scale, ok = 0.0, 0.0, True
    for name, ref in want.items():
        out = got.get(name)
        if out is None or out.shape != ref.shape:
            return OutputCheck(math.inf, math.inf, False)
        a, b = np.asarray(out, dtype=np.float64), np.asarray(ref, dtype=np.float64)
        if a.size:
            max_abs = max(max_abs, float(np.max(np.abs(a - b))))
            scale = max(scale, float(np.max(np.abs(b))))
    rel = max_abs / scale if scale > 0 else (0.0 if max_abs == 0 else math.inf)
    ok = ok and math.isfinite(max_abs) and rel <= OUTPUT_RTOL
    return OutputCheck(max_abs, rel, ok)


def build(
    route: Route,
    run: ChainRun,
    settings: RunSettings,
    output: OutputCheck,
    link_model: str = "typed",
) -> Validation:
    """The validation of one run (see the module docstring)."""
    recs = run.stages
    offsets = [0.0]  # each stage's clock minus the first's, s
    for r in recs[:-1]:
        offsets.append(offsets[-1] + (r.clock[0] if r.clock else 0.0))
    counted = range(settings.warmup, settings.total)
    ms = 1e3

    def on_first(j: int, t: float) -> float:
        return t - offsets[j]

    def e2e(k: int) -> float:
        end = recs[-1].frames[k]["end"]
        return (on_first(len(recs) - 1, end) - recs[0].frames[k]["start"]) * ms

    compute = [
        [(r.frames[k]["compute"][1] - r.frames[k]["compute"][0]) * ms for k in counted]
        if p.segment
        else None
        for r, p in zip(recs, route.stages, strict=True)
    ]
    transfer = [
        [
            (
                on_first(j + 1, recs[j + 1].frames[k]["recv"])
                - on_first(j, recs[j].frames[k]["send"][0])
            )
            * ms
            for k in counted
        ]
        for j in range(len(route.hops))
    ]
    latency = [e2e(k) for k in counted]
    handoff = [
        latency[i] - sum(c[i] for c in compute if c) - sum(t[i] for t in transfer)
        for i in range(len(latency))
    ]
    stages = []
    for p, r, c in zip(route.stages, recs, compute, strict=True):
        spread = Spread.of(c) if c else None
        pred = {"measured": p.measured_ms, "estimated": p.estimated_ms}
        pred.setdefault(route.partition.cost_model, p.ranked_ms)
        stages.append(
            StageResult(
                p.device,
                p.role,
                p.segment,
                spread,
                pred,
                {m: pct(v, spread.median) if spread else None for m, v in pred.items()},
                r.load_ms,
                r.runtime,
                Spread.of(r.solo_ms) if r.solo_ms else None,
            )
        )
    hops = []
    for j, (h, t) in enumerate(zip(route.hops, transfer, strict=True)):
        spread = Spread.of(t)
        clock = recs[j].clock or (0.0, 0.0)
        hops.append(
            HopResult(
                h.link,
                h.src,
                h.dst,
                h.position,
                h.bytes,
                run.loopback[j],
                spread,
                h.predicted_ms,
                pct(h.predicted_ms, spread.median),
                clock[1] * ms,
                clock[0] * ms,
                {m: v[j] for m, v in route.link_ms.items()},
            )
        )
    fps = None
    if settings.objective == "throughput":
        ends = [recs[-1].frames[k]["end"] for k in range(settings.total)]
        first = settings.warmup - 1 if settings.warmup > 0 else 0
        span = ends[-1] - ends[first]
        count = settings.total - 1 - first
        fps = count / span if span > 0 and count > 0 else None
    hop_ms = [h.predicted_ms for h in route.hops]
    models = [m for m in COST_MODELS if stages and m in stages[0].predicted]
    predicted = {m: _predicted(stages, hop_ms, m, settings.objective) for m in models}
    by_link = {
        m: _predicted(stages, v, route.partition.cost_model, settings.objective)
        for m, v in route.link_ms.items()
    }
    lat = Spread.of(latency)
    measured_value = fps if fps is not None else lat.median
    gaps = [
        *(
            Gap(
                f"compute {s.device}",
                s.predicted[route.partition.cost_model] or 0.0,
                s.measured.median,
            )
            for s in stages
            if s.measured is not None and s.predicted[route.partition.cost_model] is not None
        ),
        *(Gap(f"link {h.link}", h.predicted_ms, h.measured.median) for h in hops),
        Gap("hand-off", 0.0, Spread.of(handoff).median),
    ]
    gaps.sort(key=lambda g: -abs(g.diff_ms))
    notes = []
    if any(run.loopback):
        names = ", ".join(h.link for h in hops if h.loopback)
        notes.append(f"link {names}: loopback on this machine, not the link the values describe")
    for st in stages:
        profiled = st.predicted.get(route.partition.cost_model)
        if st.solo is None or st.measured is None or not profiled:
            continue
        stale, chained = pct(profiled, st.solo.median), pct(st.measured.median, st.solo.median)
        if stale is not None and abs(stale) > 10:
            notes.append(
                f"compute {st.device}: profiled {profiled:.1f} ms, alone now {st.solo.median:.1f} "
                f"ms ({stale:+.0f}%): the device runs at another speed than when profiled"
                + (
                    f"; in the chain {st.measured.median:.1f} ms ({chained:+.0f}% of alone)"
                    if chained is not None
                    else ""
                )
            )
    return Validation(
        rank=route.partition.rank,
        positions=route.positions,
        objective=settings.objective,
        cost_model=route.partition.cost_model,
        frames=settings.frames,
        warmup_ms=[e2e(k) for k in range(settings.warmup)],
        latency=lat,
        handoff=Spread.of(handoff),
        fps=fps,
        predicted=predicted,
        error_pct={m: pct(v, measured_value) for m, v in predicted.items()},
        stages=stages,
        hops=hops,
        output=output,
        gaps=gaps,
        seconds=run.seconds,
        notes=notes,
        per_frame=[
            {
                "frame": k,
                "end_to_end": latency[i],
                "compute": [c[i] if c else None for c in compute],
                "transfer": [t[i] for t in transfer],
            }
            for i, k in enumerate(counted)
        ],
        link_model=link_model,
        by_link_model=by_link,
        error_by_link_model={m: pct(v, measured_value) for m, v in by_link.items()},
    )


def _predicted(
    stages: list[StageResult], hop_ms: list[float], model: str, objective: str
) -> float | None:
    """The objective under one cost model and these hop times: Σ stages + Σ hops (ms), or
    1000 / the slowest of them (frames/s)."""
    parts = [s.predicted[model] for s in stages if s.segment is not None]
    if any(v is None for v in parts):
        return None
    times = [float(v) for v in parts if v is not None] + list(hop_ms)
    if objective == "throughput":
        worst = max(times, default=0.0)
        return 1000.0 / worst if worst > 0 else None
    return sum(times)
