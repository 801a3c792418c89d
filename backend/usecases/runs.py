"""Measuring a plan on every device of the chain, live, into the session.

`plan_run` saves the plan and the timing settings and says what is left and how long it
will take (a dry run stops there); `PlannedRun.profiler` puts the model in the agents'
cache and returns the `backend.profiling.jobs.Profiler` the front-end controls (pause,
cancel, events); `run_plan` runs it. A run holds its session through `claim`, the one
place where one profiler per session is decided, for the CLI and the TUI alike.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from backend.chain import Chain
from backend.device.protocol import TimingSettings
from backend.model.analysis import ModelAnalysis
from backend.profiling import jobs
from backend.profiling.plan import Plan, PlanItem
from backend.profiling.session import Session
from backend.remote.models import model_cache_dir, put_model
from backend.usecases import plans
from backend.usecases.plans import TimeEstimate

DEFAULT_NODE_TIMES_RUNS = 5


@dataclass
class RunSettings:
    """How to measure: the timing rules, the inputs, and what to (re)do."""

    timing: TimingSettings = field(default_factory=TimingSettings)
    seed: int = 0
    npy: dict[str, str] = field(default_factory=dict)  # model input -> real input .npy file
    node_times_runs: int = DEFAULT_NODE_TIMES_RUNS  # whole-model runs for per-node times
    share_cpus: bool = False
    retry_errors: bool = False
    cache_dir: Path | None = None  # the agents' model cache (None: their default)


@dataclass
class PlannedRun:
    """A saved plan with what is left of it; `profiler()` measures that."""

    session: Session
    analysis: ModelAnalysis
    chain: Chain
    settings: RunSettings
    plan: Plan
    todo: list[PlanItem]
    estimate: TimeEstimate
    needs_node_times: bool  # some device has no per-node times under its configuration

    @property
    def nothing_to_do(self) -> bool:
        return not self.todo and not self.needs_node_times

    def profiler(
        self,
        on_event: Callable[[jobs.JobEvent], None] | None = None,
    ) -> jobs.Profiler:
        """The profiler for what is left (the model goes into the agents' cache under its
        hash first)."""
        s = self.settings
        cache = s.cache_dir or model_cache_dir()
        model_file, sha = put_model(self.analysis.model_bytes(), cache)
        options = jobs.ProfileOptions(
            timing=s.timing,
            seed=s.seed,
            inputs="prefix" if s.npy else "random",
            npy=dict(s.npy),
            node_times_runs=max(s.node_times_runs, 0),
            share_cpus=s.share_cpus,
            retry_errors=s.retry_errors,
        )
        return jobs.Profiler(
            self.session,
            self.chain,
            model_file,
            sha,
            options=options,
            cache_dir=cache,
            on_event=on_event,
            estimates=self.estimate.per_device,
        )


def plan_run(
    session: Session,
    analysis: ModelAnalysis,
    chain: Chain,
    candidates: Sequence[int],
    settings: RunSettings,
) -> PlannedRun:
    """Save the plan and the timing settings in the session; what is left, and how long."""
    the_plan = plans.build(analysis, chain, candidates)
    session.save_plan(the_plan)
    session.set_meta("timing", asdict(settings.timing))
    todo = session.missing(the_plan, settings.retry_errors)
    estimate = plans.estimate(session, analysis, chain, todo, settings.timing, settings.share_cpus)
    needs_nodes = settings.node_times_runs > 0 and not all(
        session.has_node_times(name) for name in chain.names
    )
    return PlannedRun(session, analysis, chain, settings, the_plan, todo, estimate, needs_nodes)


def claim(session: Session) -> contextlib.AbstractContextManager[object]:
    """Hold `session` as its only profiler for one run. Every run of every front-end passes
    here, so a second profiler (CLI or TUI, here or on another machine sharing the file)
    is refused in one line; a session opened with `OpenRequest(claim=True)` already holds
    its claim and keeps it."""
    return contextlib.nullcontext() if session.claimed else session.claim_profiler()


async def run_plan(profiler: jobs.Profiler, todo: Sequence[PlanItem]) -> jobs.RunFinished:
    """Measure `todo` with `profiler`, holding its session for the whole run."""
    with claim(profiler.session):
        finished = await profiler.run(todo)
    measured = [it for it in todo if not finished.stopped]
    plans.learn(
        profiler.session,
        profiler.chain,
        measured if finished.measured and not finished.failed else [],
        finished.seconds,
        profiler.options.timing,
        profiler.options.share_cpus,
    )
    return finished
