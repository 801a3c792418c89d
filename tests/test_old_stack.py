"""A device as labs have them: Python 3.8 with the oldest supported stack (numpy 1.21,
onnx 1.13, onnxruntime 1.12, OpenVINO 2022.3 and its `openvino.runtime` API) profiles the
built-in YOLOv5n end to end, with both runtimes, through `omdp profile`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from device_venvs import OLDEST_STACK, device_python

from backend.device.probe import OLDEST_SUPPORTED
from backend.profiling.session import Session

ROOT = Path(__file__).resolve().parents[1]
FAST = ["--warmup", "1", "--min-runs", "3", "--max-runs", "8", "--max-seconds", "0.3"]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def oldest_python() -> str:
    return device_python(OLDEST_STACK)


def test_the_pinned_stack_is_the_oldest_one_the_docs_state():
    pins = dict(r.split("==") for r in OLDEST_STACK)
    for package, oldest in OLDEST_SUPPORTED.items():
        if package != "python":
            got = tuple(int(x) for x in pins[package].split(".")[: len(oldest)])
            assert got == oldest, package


def profile(tmp_path: Path, devices: str, *extra: str) -> tuple[Session, str]:
    (tmp_path / "devices.toml").write_text(devices)
    db = tmp_path / "s.omdp"
    env = {**os.environ, "OMDP_CACHE_DIR": str(tmp_path / "cache")}
    out = subprocess.run(
        [sys.executable, "-m", "omdp_tui.main", "profile", "yolov5n", "--devices",
         str(tmp_path / "devices.toml"), "--auto", "2", "--session", str(db), *FAST, *extra],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    return Session.open(db), out.stdout


def test_python_3_8_with_the_oldest_stack_profiles_yolov5n_on_both_runtimes(
    tmp_path, oldest_python
):
    devices = (
        f'[[device]]\nname = "old_ort"\npython = "{oldest_python}"\n\n'
        f'[[device]]\nname = "old_ov"\npython = "{oldest_python}"\nruntime = "openvino"\n'
    )
    session, stdout = profile(tmp_path, devices)
    with session:
        rows = session.results_frame()
        assert len(rows) == 6 and set(rows["status"]) == {"ok"}, stdout
        assert (rows["median_ms"] > 0).all()
        hellos = {r["device"]: json.loads(r["hello"]) for _, r in session.runs_frame().iterrows()}
        for name in ("old_ort", "old_ov"):
            versions = hellos[name]["versions"]
            assert versions["python"].startswith("3.8."), versions
            assert versions["numpy"] == "1.21.6" and versions["onnx"] == "1.13.1"
            assert hellos[name]["mode"] == "model"  # it cuts the segments itself
        assert hellos["old_ort"]["versions"]["onnxruntime"] == "1.12.1"
        assert hellos["old_ov"]["versions"]["openvino"].startswith("2022.3")
        used = {
            json.loads(r[0])["version"]
            for r in session.conn.execute(
                "SELECT runtime FROM measurements WHERE device = ?", ("old_ov",)
            )
        }
        assert all(v.startswith("2022.3") for v in used), used
        assert not session.node_times_frame().empty  # per-node times on 2022.x too


def test_a_model_newer_than_the_device_runtime_fails_that_device_before_any_timing(
    tmp_path, oldest_python
):
    from onnx import TensorProto, helper, save

    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["h"]), helper.make_node("Relu", ["h"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    save(model, str(tmp_path / "new.onnx"))
    (tmp_path / "devices.toml").write_text(
        f'[[device]]\nname = "old"\npython = "{oldest_python}"\n'
    )
    env = {**os.environ, "OMDP_CACHE_DIR": str(tmp_path / "cache")}
    out = subprocess.run(
        [sys.executable, "-m", "omdp_tui.main", "profile", str(tmp_path / "new.onnx"),
         "--devices", str(tmp_path / "devices.toml"), "--session", str(tmp_path / "s.omdp"),
         "--json", *FAST],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert out.returncode != 0
    events = [json.loads(line) for line in out.stdout.splitlines()]
    assert not [e for e in events if e.get("event") == "measured"]
    assert events[-1]["failed"]["old"].startswith(
        "the model is opset 18, IR 9; onnxruntime 1.12.1 there runs up to opset 17, IR 8 — "
        "export the model at opset <= 17 (IR <= 8), or install onnxruntime >= 1.15 there"
    )
