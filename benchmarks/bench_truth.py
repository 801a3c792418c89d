"""How true are the rankings? The top-10 partitions of YOLOv5s (built-in zoo) on a
three-device chain, each run as a chain (`omdp validate`) and its measured median
end-to-end latency set beside the ranking's prediction, at two link settings.

The session is profiled on three local devices (one onnxruntime thread each; devices
sharing CPUs take turns, so each segment is timed alone). Each link setting is then an
emulated lab (docs/lab.md: network namespaces, sshd per device, TBF-shaped links with
their latency) built from the same chain with only the links changed, and the session's
chain is switched to the lab's ssh devices (same names and runtime options: the
measurements stay valid). The lab's links go up to 300 Mbit/s, so the second setting is
100/300 rather than 100/1000. Without root (no lab) `--local` runs the same on the local
devices, where every link is loopback: the transfer predictions then do not describe
the links and the report says so.

On the lab each link is first measured (`omdp links measure`, stored in the session), so
every prediction is shown under both link models (backend/solver/link_models.py): the
typed line `bytes × 8 / bandwidth + latency` the partitions are ranked with, and the
line fitted to the measured links. Printed: one row per partition and setting (predicted
under each link model, measured median, errors, the part most off), then per setting and
link model the fraction within ±10 % and Kendall's τ between the predicted and the
measured order.

Run: .venv/bin/python benchmarks/bench_truth.py [--frames 10] [--session S] [--local]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import shutil
import sys
import tempfile
import time
from pathlib import Path
from statistics import median

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]

from backend.chain import load_devices  # noqa: E402
from backend.cli import main as omdp  # noqa: E402
from backend.profiling.session import Session  # noqa: E402
from backend.usecases import validations  # noqa: E402
from backend.usecases.sessions import change_chain, session_analysis  # noqa: E402
from backend.usecases.validations import ValidateOptions  # noqa: E402
from backend.validation.report import Validation, pct  # noqa: E402

SETTINGS = {"20/100": (20, 100), "100/300": (100, 300)}
LOCAL_SETTINGS = {"20/100": (20, 100), "100/1000": (100, 1000)}
LATENCY_MS = 2.0
TOP = 10


def chain_toml(bw1: float, bw2: float) -> str:
    devices = "".join(
        f'[[device]]\nname = "{n}"\nthreads = 1\n\n' for n in ("glasses", "phone", "cloud")
    )
    links = "".join(
        f'[[link]]\nfrom = "{a}"\nto = "{b}"\nbandwidth_mbps = {bw}\nlatency_ms = {LATENCY_MS}\n\n'
        for (a, b), bw in zip(
            itertools.pairwise(("glasses", "phone", "cloud")), (bw1, bw2), strict=True
        )
    )
    return devices + links


def profile(folder: Path) -> Path:
    devices = folder / "local.toml"
    devices.write_text(chain_toml(20, 100))
    session = folder / "yolov5s.omdp"
    t0 = time.perf_counter()
    code = omdp(
        [
            "profile", "yolov5s", "--devices", str(devices), "--auto", "4",
            "--session", str(session), "--warmup", "2", "--min-runs", "5",
            "--max-runs", "20", "--max-seconds", "3", "--target-ci", "3",
        ]
    )  # fmt: skip
    assert code == 0, "profiling failed"
    print(f"profiled in {time.perf_counter() - t0:.0f} s: {session}", file=sys.stderr)
    return session


def measure_links(session: Path, lab: Path) -> None:
    """The lab's links as TCP sees them, stored beside the typed values."""
    from backend.usecases import devices

    chain = load_devices(lab / "devices.toml")
    found = asyncio.run(
        devices.measure_links(devices.chain_targets(chain), max_bytes=4 << 20, lab_links=False)
    )
    with Session.open(session, check_model=False) as s:
        devices.store_link_measurements(s, found)
    for m in found.chain:
        print(
            f"  link {m.src}-{m.dst}: {m.bandwidth_mbps:.1f} Mbit/s, {m.latency_ms:.2f} ms",
            file=sys.stderr,
        )


def validate(session: Path, bw: tuple[float, float], frames: int) -> list[Validation]:
    links = (f"glasses-phone={bw[0]}", f"phone-cloud={bw[1]}")
    with Session.open(session, check_model=False) as s:
        plan = validations.prepare(
            s, ValidateOptions(top=TOP, frames=frames, warmup=2, bandwidth=links, timeout_s=300)
        )
        outcome = asyncio.run(validations.run(plan))
    for rank, why in outcome.failed.items():
        print(f"  #{rank} failed: {why}", file=sys.stderr)
    return outcome.validations


def on_lab(session: Path, folder: Path, bw: tuple[float, float], frames: int) -> list[Validation]:
    """Bring a lab with these links up, switch the session to it, validate, take it down."""
    from backend.lab import lifecycle

    spec = folder / f"chain-{bw[0]}-{bw[1]}.toml"
    spec.write_text(chain_toml(*bw))
    lab = folder / f"lab-{bw[0]}-{bw[1]}"
    lifecycle.up(spec, lab)
    try:
        copy = folder / f"{session.stem}-{bw[0]}-{bw[1]}.omdp"
        shutil.copy(session, copy)
        with Session.open(copy, check_model=False) as s:
            change_chain(s, session_analysis(s), load_devices(lab / "devices.toml")).close()
        measure_links(copy, lab)
        return validate(copy, bw, frames)
    finally:
        lifecycle.down(lab)


def kendall_tau(a: list[float], b: list[float]) -> float:
    pairs = list(itertools.combinations(range(len(a)), 2))
    score = sum(
        (1 if (a[i] - a[j]) * (b[i] - b[j]) > 0 else -1 if (a[i] - a[j]) * (b[i] - b[j]) < 0 else 0)
        for i, j in pairs
    )
    return score / len(pairs) if pairs else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=10)
    parser.add_argument("--session", help="a profiled YOLOv5s session to reuse")
    parser.add_argument("--local", action="store_true", help="local devices (loopback links)")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="omdp-truth-"))
    session = Path(args.session) if args.session else profile(folder)
    settings = LOCAL_SETTINGS if args.local else SETTINGS
    where = "local devices, loopback links" if args.local else "emulated lab, shaped links"
    print(f"YOLOv5s, glasses → phone → cloud, one thread each; {where}; {args.frames} frames")
    header = (
        f"{'links':>9} {'rank':>4} {'cuts':<9} {'typed':>7} {'fitted':>7} {'measured':>8} "
        f"{'err typed':>9} {'fitted':>7}  off most at (typed)"
    )
    print(header)
    print("-" * len(header))
    summary = []
    parts: list[Validation] = []
    for name, bw in settings.items():
        t0 = time.perf_counter()
        runs = (
            validate(session, bw, args.frames)
            if args.local
            else on_lab(session, folder, bw, args.frames)
        )
        for v in runs:
            typed, fitted = (v.by_link_model.get(m) for m in ("typed", "fitted"))
            e_typed, e_fitted = (v.error_by_link_model.get(m) for m in ("typed", "fitted"))
            gap = v.gaps[0]
            cuts = ",".join(map(str, v.positions[1:-1]))
            print(
                f"{name:>9} {v.rank:>4} {cuts:<9} {_f(typed):>7} {_f(fitted):>7} "
                f"{v.latency.median:>8.1f} {_p(e_typed):>9} {_p(e_fitted):>7}  "
                f"{gap.where} {gap.diff_ms:+.1f} ms{'' if v.output.ok else '  OUTPUT WRONG'}"
            )
        parts.extend(runs)
        meas = [v.latency.median for v in runs]
        for model in ("typed", "fitted"):
            errs = [v.error_by_link_model.get(model) for v in runs]
            good = sum(e is not None and abs(e) <= 10 for e in errs)
            pred = [v.by_link_model.get(model) or 0.0 for v in runs]
            summary.append((name, model, good, len(runs), kendall_tau(pred, meas)))
        ok = all(v.output.ok for v in runs)
        print(
            f"{name:>9}: outputs {'all match' if ok else 'NOT all match'} the full model "
            f"({time.perf_counter() - t0:.0f} s)"
        )
    print()
    # each part on its own: the links under each link model, the compute stages, hand-off
    hops = [h for v in parts for h in v.hops]
    for model in ("typed", "fitted"):
        errs = [abs(pct(h.by_link_model[model], h.measured.median) or 0.0) for h in hops]
        print(f"links, {model:>6}: median |error| {median(errs):.1f}% over {len(errs)} transfers")
    comp = [
        abs(pct(s.predicted["measured"], s.measured.median) or 0.0)
        for v in parts
        for s in v.stages
        if s.measured is not None and s.predicted["measured"] is not None
    ]
    print(f"compute stages: median |error| {median(comp):.1f}% over {len(comp)} stages")
    timed = [s for v in parts for s in v.stages if s.measured is not None and s.solo is not None]
    stale = [abs(pct(s.predicted["measured"], s.solo.median) or 0.0) for s in timed]
    chained = [abs(pct(s.measured.median, s.solo.median) or 0.0) for s in timed]
    print(
        f"  of which: profile vs the segment alone just before the run: median |diff| "
        f"{median(stale):.1f}%; in the chain vs alone: {median(chained):.1f}%"
    )
    handoff = [v.handoff.median for v in parts]
    print(f"hand-off: median {median(handoff):.1f} ms per frame (predicted 0)")
    for model in ("typed", "fitted"):
        rows = [r for r in summary if r[1] == model]
        good, total = sum(r[2] for r in rows), sum(r[3] for r in rows)
        taus = ", ".join(f"{r[0]} {r[4]:+.2f}" for r in rows)
        print(
            f"link model {model:>6}: within ±10% {good}/{total} = {good / max(total, 1):.0%}; "
            f"Kendall τ {taus}"
        )


def _f(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f}"


def _p(v: float | None) -> str:
    return "-" if v is None else f"{v:+.1f}%"


if __name__ == "__main__":
    main()
