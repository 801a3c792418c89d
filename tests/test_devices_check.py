"""`omdp devices check`: for each device, its Python and packages, the mode its agent will
use, the providers / OpenVINO devices it has, CPU model, governor and temperature, free
disk, and what would get its measurements flagged; a provider it lacks or a model its
runtime cannot read is a problem with its fix, before any profiling."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from device_venvs import OLDEST_STACK, WITHOUT_ONNX, device_python
from onnx import TensorProto, helper, save
from test_throttling import fake_sys

from backend.device import probe
from backend.remote import compat

ROOT = Path(__file__).resolve().parents[1]


def check(tmp_path: Path, devices: str, *extra: str, sys_root: Path | None = None):
    path = tmp_path / "devices.toml"
    path.write_text(devices)
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "xdg")}
    env[probe.SYS_ROOT_ENV] = str(sys_root or tmp_path / "no-sys")
    return subprocess.run(
        [sys.executable, "-m", "omdp_tui.main", "devices", "check", str(path), *extra],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def opset_model(path: Path, opset: int, ir: int) -> Path:
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = ir
    save(model, str(path))
    return path


# -- judging versions -------------------------------------------------------------------------


def test_the_mode_follows_the_onnx_a_device_has():
    assert compat.agent_mode(None)[0] == "segments"
    assert compat.agent_mode("1.12.0") == (
        "segments",
        "onnx 1.12.0 is older than 1.13: the lab cuts each segment and uploads it once",
    )
    assert compat.agent_mode("1.13.1")[0] == "model"
    assert compat.agent_mode("1.23.2")[0] == "model"


def test_what_an_onnxruntime_reads_and_the_release_that_reads_more():
    assert compat.ort_limits("1.12.1") == (17, 8)
    assert compat.ort_limits("1.9.0") == (15, 8)  # older than the table: its oldest row
    assert compat.ort_limits("1.32.0") is None  # newer than the table: not limited
    assert compat.ort_upgrade_for(18, 8) == "1.14"
    assert compat.ort_upgrade_for(21, 10) == "1.18"
    assert compat.ort_upgrade_for(30, 12) is None


def test_a_stack_older_than_the_oldest_supported_is_named():
    old = {"numpy": "1.19.5", "onnx": None, "onnxruntime": "1.12.1", "openvino": "2021.4.2"}
    assert compat.too_old(old) == ["numpy 1.19.5 < 1.21", "openvino 2021.4.2 < 2022.3"]


# -- the command --------------------------------------------------------------------------------


def test_a_local_device_shows_what_it_has_and_the_mode_it_will_use(tmp_path):
    hot = fake_sys(tmp_path / "sys", temp_c=83, trip_c=85, governor="powersave")
    out = check(tmp_path, '[[device]]\nname = "here"\n', sys_root=hot)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].split() == [
        "device", "kind", "address", "status", "host", "key", "python", "mode", "runtime",
        "free", "took", "s",
    ]  # fmt: skip
    assert lines[2].split()[:7] == ["here", "local", "local", "ok", "-", sys.version.split()[0],
                                    "model"]  # fmt: skip
    text = out.stdout
    assert "  mode      model: the agent cuts the segments" in text
    assert "  providers onnxruntime: " in text and "CPUExecutionProvider" in text
    assert "governor powersave · 83 °C" in text
    assert "  flagged   cpu-thermal is at 83 °C, near or past its trip point 85 °C" in text
    warnings = out.stderr.splitlines()
    assert warnings[0].startswith("omdp: warning: device 'here': measurements may be flagged: ")
    assert any("governor powersave may keep the CPU below" in w for w in warnings)


def test_a_provider_or_device_a_local_device_lacks_is_a_problem_before_profiling(tmp_path):
    devices = (
        '[[device]]\nname = "gpu"\nproviders = ["CUDAExecutionProvider"]\n\n'
        '[[device]]\nname = "npu"\nruntime = "openvino"\nov_device = "NPU"\n\n'
        '[[device]]\nname = "auto"\nruntime = "openvino"\nov_device = "AUTO"\n'
    )
    out = check(tmp_path, devices, "--json")
    assert out.returncode == 2
    rows = {d["name"]: d for d in json.loads(out.stdout)}
    assert not rows["gpu"]["ok"] and not rows["npu"]["ok"] and rows["auto"]["ok"]
    assert rows["npu"]["facts"]["accelerators"] == {"openvino": ["CPU"]}
    errors = out.stderr.splitlines()
    assert (
        "omdp: error: device 'gpu': provider(s) CUDAExecutionProvider not available there "
        "(available: " in errors[0]
    )
    assert errors[1] == (
        "omdp: error: device 'npu': OpenVINO device 'NPU' not available there (available: "
        "CPU) — install its driver or change `ov_device`"
    )


def test_a_model_this_onnxruntime_reads_passes_the_check(tmp_path):
    out = check(tmp_path, '[[device]]\nname = "here"\n', "--model", "yolov5n")
    assert out.returncode == 0, out.stderr


def test_a_model_that_is_not_one_is_refused(tmp_path):
    (tmp_path / "junk.onnx").write_bytes(b"\xff" * 64)
    out = check(tmp_path, '[[device]]\nname = "here"\n', "--model", str(tmp_path / "junk.onnx"))
    assert out.returncode == 2 and out.stderr.startswith("omdp: error: cannot read the model")


@pytest.mark.slow
def test_old_devices_say_their_mode_and_a_model_too_new_for_their_runtime(tmp_path):
    old, bare = device_python(OLDEST_STACK), device_python(WITHOUT_ONNX)
    devices = (
        f'[[device]]\nname = "old"\npython = "{old}"\n\n'
        f'[[device]]\nname = "bare"\npython = "{bare}"\n'
    )
    fine = check(tmp_path, devices, "--model", "yolov5n", "--json")  # opset 17, IR 8
    assert fine.returncode == 0, fine.stderr
    modes = {d["name"]: d["facts"]["mode"] for d in json.loads(fine.stdout)}
    assert modes == {"old": "model", "bare": "segments"}

    new = opset_model(tmp_path / "new.onnx", opset=18, ir=9)
    out = check(tmp_path, devices, "--model", str(new))
    assert out.returncode == 2
    errors = out.stderr.splitlines()
    assert errors[0] == (
        "omdp: error: device 'old': the model is opset 18, IR 9; onnxruntime 1.12.1 there "
        "runs up to opset 17, IR 8 — export the model at opset <= 17 (IR <= 8), or upgrade: "
        f"{old} -m pip install 'onnxruntime>=1.15'"
    )
    assert errors[1].startswith("omdp: error: device 'bare': the model is opset 18, IR 9")
