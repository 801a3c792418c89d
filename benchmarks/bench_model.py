"""Model analysis and segment extraction, each against a baseline run side by side.

1. Analysis plus every cut (load, checks, shape inference, order, all X(p)) on YOLOv5x and
   DenseNet121 (random weights), against the thesis tool's way of finding cuts: a trial
   `onnx.utils.extract_model` per position (timed on a few positions, extrapolated). The
   load checks (structural rules and the full onnx.checker) are also timed alone.
2. Extracting a middle segment of YOLOv5l with full weights: ours (checked by onnx.checker,
   written whole, from an analysis as a session holds it) against `onnx.utils.extract_model`
   file to file; in memory against onnx's `Extractor` on an already loaded, shape-inferred
   model; and ours from scratch.
3. `omdp inspect` of the YOLOv5x file and of the built-in name, as a user runs it (a fresh
   interpreter each time, imports included).

Run: .venv/bin/python benchmarks/bench_model.py
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import onnx
import onnx.utils

from backend.model import zoo
from backend.model.analysis import analyze, load_model
from backend.model.checks import check_structure, check_with_onnx
from backend.model.segment_files import write_segment


def timed(fn, repeat: int, output: Path | None = None) -> tuple[float, object]:
    """Median wall time of fn; `output` (the file fn writes) is removed before each run,
    untimed, so both sides write a new file rather than truncate the last one."""
    times, result = [], None
    for _ in range(repeat):
        if output is not None:
            output.unlink(missing_ok=True)
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), result


def bench_analysis(name: str, path: Path, tmp: Path) -> None:
    ours, a = timed(lambda: analyze(path), 3)
    # The thesis tool's way: one trial `extract_model` of the prefix per position (it kept
    # those with a single output). Timed on a few positions, extrapolated to all.
    inputs = [t.name for t in a.inputs]
    sample = [a.n // 4, a.n // 2, 3 * a.n // 4]
    t0 = time.perf_counter()
    for p in sample:
        onnx.utils.extract_model(
            str(path), str(tmp / "trial.onnx"), inputs, list(a.cuts[p].tensors)
        )
    per_position = (time.perf_counter() - t0) / len(sample)
    baseline = per_position * a.n
    print(
        f"analysis + all {a.n + 1} cuts of {name:<12} ours {ours * 1e3:7.1f} ms | trial "
        f"extraction {per_position:.2f} s/position × {a.n} ≈ {baseline:6.0f} s | "
        f"ratio ≈ {baseline / ours:,.0f}×"
    )
    model, lazy = load_model(path)
    checks, _ = timed(
        lambda: check_with_onnx(model, {}, check_structure(model, lazy, name), name), 5
    )
    print(f"  of which the load checks (rules + full onnx.checker): {checks * 1e3:6.1f} ms")


def bench_extract(path: Path, tmp: Path) -> None:
    a = analyze(path)
    start, end = a.n // 3, 2 * a.n // 3
    ins, outs = list(a.cuts[start].tensors), list(a.cuts[end].tensors)
    mine, theirs = tmp / "ours.onnx", tmp / "theirs.onnx"
    ours_file, _ = timed(lambda: write_segment(a.index, start, end, mine), 5, mine)
    base_file, _ = timed(
        lambda: onnx.utils.extract_model(str(path), str(theirs), ins, outs), 3, theirs
    )
    ours_mem, data = timed(lambda: a.index.segment_bytes(start, end), 5)
    loaded = onnx.shape_inference.infer_shapes(onnx.load(str(path)))
    extractor = onnx.utils.Extractor(loaded)
    base_mem, _ = timed(lambda: extractor.extract_model(ins, outs).SerializeToString(), 3)
    cli, _ = timed(lambda: write_segment(analyze(path).index, start, end, mine), 3, mine)
    seg = onnx.load(str(mine))
    weights = sum(len(t.raw_data) for t in seg.graph.initializer) / 2**20
    print(
        f"extract segment [{start}, {end}) of yolov5l ({len(seg.graph.node)} nodes, "
        f"{weights:.0f} MiB of weights; model {path.stat().st_size / 2**20:.0f} MiB):"
    )
    print(
        f"  file to file: ours {ours_file * 1e3:7.1f} ms | onnx.utils.extract_model "
        f"{base_file * 1e3:7.1f} ms | ratio {base_file / ours_file:5.1f}×"
    )
    print(
        f"  to bytes in memory: ours {ours_mem * 1e3:7.1f} ms | onnx Extractor on a loaded, "
        f"inferred model {base_mem * 1e3:7.1f} ms | ratio {base_mem / ours_mem:5.1f}×"
    )
    print(
        f"  ours including load + analysis (what `omdp extract` does): {cli * 1e3:7.1f} ms | "
        f"ratio {base_file / cli:5.1f}× vs extract_model"
    )
    assert len(data) == mine.stat().st_size


def bench_inspect_cli(path: Path) -> None:
    def run(model: str) -> None:
        subprocess.run(
            [sys.executable, "-m", "omdp_tui.main", "inspect", model],
            check=True,
            capture_output=True,
        )

    file, _ = timed(lambda: run(str(path)), 3)
    name, _ = timed(lambda: run("yolov5x"), 3)
    print(
        f"`omdp inspect` of YOLOv5x, a fresh process each: the file {file:5.2f} s | the "
        f"built-in name (weights drawn first) {name:5.2f} s"
    )


def main() -> None:
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        yx = zoo.build_to("yolov5x", tmp / "yolov5x.onnx")
        dn = zoo.build_to("densenet121", tmp / "densenet121.onnx")
        bench_analysis("yolov5x", yx, tmp)
        bench_analysis("densenet121", dn, tmp)
        bench_inspect_cli(yx)
        yl = zoo.build_to("yolov5l", tmp / "yolov5l.onnx")
        bench_extract(yl, tmp)


if __name__ == "__main__":
    main()
