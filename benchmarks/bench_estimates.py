"""The estimated cost model against plain layer sums, side by side in one run.

Profiles built-in models on the chain of examples/devices.toml (three local devices: one
core under onnxruntime, one core under OpenVINO, all cores under onnxruntime) with short
timing settings (`--timing default`: those of `omdp profile`), then estimates every
measured segment from the others (leave-one-out) with each approach of
docs/attribution.md. Reports per model and device the median and p90 absolute % error of
layer sums and of the chosen estimator (`auto`: per device the approach with the lowest
leave-one-out median, chosen again without each held-out segment), and their ratio
(goal: the chosen one's median at most half of layer sums', on every device). `cover` is
the device's per-node times summed over the whole model, in % of its measured whole
model's time (far from 100 %: the per-node profile and the timings saw different machines,
or kernels the profiler could not attribute); `noise` the median relative half-width of
the 95% CI of its measured segments' medians. Timings taken while other work loads the
CPUs are not comparable with the per-node times measured at another moment: the load
average is printed beside each model.

Usage: .venv/bin/python benchmarks/bench_estimates.py [--models yolov5n,yolov5s,...]
       [--folder DIR] [--auto 6] [--timing short|default]
A session already in the folder is resumed (only what is missing is measured).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from backend.cli import main as omdp  # noqa: E402
from backend.profiling.session import Session  # noqa: E402
from backend.solver.estimators import APPROACHES, CHOSEN  # noqa: E402
from backend.solver.pricing import device_times  # noqa: E402
from backend.usecases.attribution import evaluate_session  # noqa: E402

MODELS = ("yolov5n", "yolov5s", "squeezenet", "resnet50")
# `short` is quick and noisier (CI ±5 %); `default` is what `omdp profile` does unasked
TIMINGS = {
    "short": [
        "--warmup",
        "1",
        "--min-runs",
        "5",
        "--max-runs",
        "15",
        "--max-seconds",
        "1",
        "--target-ci",
        "5",
    ],
    "default": [],
}


def profile(model: str, folder: Path, auto: int, timing: list[str]) -> Path:
    session = folder / f"{model}.omdp"
    args = ["profile", model, "--devices", str(ROOT / "examples" / "devices.toml")]
    args += ["--auto", str(auto), "--session", str(session), *timing]
    if session.exists():
        args = [a for a in args if a not in ("--auto", str(auto))]
    with contextlib.redirect_stdout(io.StringIO()):
        code = omdp(args)
    if code != 0:
        raise SystemExit(f"omdp {' '.join(args)} failed with {code}")
    return session


def device_facts(session: Session) -> dict[str, tuple[float, float]]:
    """Per device: its per-node times summed in % of its measured whole-model time
    (cover), and the median relative 95% CI half-width of its measured segments (noise)."""
    results = session.results_frame()
    ok = results[results["status"] == "ok"]
    out = {}
    for name, t in device_times(session).items():
        whole = t.measured.get((0, t.n))
        cover = 100.0 * float(t.node_ms.sum()) / whole if whole else float("nan")
        ci = ok[ok["device"] == name]["rel_ci"].dropna()
        out[name] = (cover, 100.0 * float(ci.median()) if len(ci) else float("nan"))
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default=",".join(MODELS))
    p.add_argument("--folder", help="sessions folder (default: a temporary one)")
    p.add_argument("--auto", type=int, default=6, help="candidates per model (default 6)")
    p.add_argument("--timing", choices=TIMINGS, default="short", help="timing settings")
    args = p.parse_args()
    tmp = None if args.folder else tempfile.TemporaryDirectory()
    folder = Path(args.folder or tmp.name)  # type: ignore[union-attr]
    folder.mkdir(parents=True, exist_ok=True)
    header = (
        f"{'model':<11} {'device':<8} {'segs':>4} {'cover':>6} {'noise':>6}  "
        f"{'layer-sum med':>13} {'p90':>6}  {CHOSEN + ' med':>9} {'p90':>6} {'(picked)':<11} "
        f"{'ratio':>5}  goal  " + "  ".join(f"{a:>9}" for a in APPROACHES)
    )
    print(f"leave-one-out |error| in % of the measured time; goal: {CHOSEN} ≤ 0.5 × layer-sum")
    print(header)
    print("-" * len(header))
    met = total = 0
    for model in args.models.split(","):
        t0 = time.perf_counter()
        session = profile(model, folder, args.auto, TIMINGS[args.timing])
        spent = time.perf_counter() - t0
        with Session.open(session, check_model=False, readonly=True) as s:
            t0 = time.perf_counter()
            found = evaluate_session(s)
            took = time.perf_counter() - t0
            facts = device_facts(s)
        by = {(e.device, e.approach): e for e in found}
        for device in dict.fromkeys(e.device for e in found):
            base, chosen = by[(device, "layer-sum")], by[(device, CHOSEN)]
            ratio = chosen.median_abs_pct / base.median_abs_pct
            ok = ratio <= 0.5
            met, total = met + ok, total + 1
            cover, noise = facts[device]
            print(
                f"{model:<11} {device:<8} {base.count:>4} {cover:>5.0f}% {noise:>5.1f}%  "
                f"{base.median_abs_pct:>12.2f}% {base.p90_abs_pct:>5.1f}%  "
                f"{chosen.median_abs_pct:>8.2f}% {chosen.p90_abs_pct:>5.1f}% "
                f"{'(' + str(chosen.picked) + ')':<11} {ratio:>5.2f}  {'yes' if ok else 'NO ':<4}  "
                + "  ".join(f"{by[(device, a)].median_abs_pct:>8.2f}%" for a in APPROACHES)
            )
        load, cpus = os.getloadavg()[0], os.cpu_count()
        print(
            f"{'':<11} (profiled in {spent:.0f} s, evaluated in {took:.1f} s; "
            f"load average {load:.1f} on {cpus} CPUs)"
        )
    print(f"goal met on {met} of {total} (model, device) pairs")
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
