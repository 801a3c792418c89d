"""Small real models built in code for tests (no binaries in the repository), and the file
system they meet: read-only folders and a full disk."""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import subprocess
import sys
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

LIGHT = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light"


def light(name: str) -> Path:
    return LIGHT / f"light_{name}.onnx"


def skip_model(seed: int = 0, symbolic: bool = False) -> onnx.ModelProto:
    """conv → relu → [skip] conv → add(skip) → reshape(by a constant-computed shape) → gemm.

    Has a Constant node, a shape computed only from constants, a skip connection (a
    two-tensor cut) and an intermediate graph output.
    """
    rng = np.random.default_rng(seed)
    w = lambda *s: numpy_helper.from_array(  # noqa: E731
        (rng.standard_normal(s) * 0.3).astype(np.float32), name=f"w{len(s)}_{rng.integers(1e9)}"
    )
    w1, w2, w3 = w(4, 3, 3, 3), w(4, 4, 3, 3), w(10, 64)
    w1.name, w2.name, w3.name = "w1", "w2", "w3"
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("Conv", ["r1", "w2"], ["c2"], name="conv2", pads=[1, 1, 1, 1]),
        helper.make_node(
            "Constant",
            [],
            ["two"],
            name="two",
            value=numpy_helper.from_array(np.array([-1], np.int64)),
        ),
        helper.make_node("Concat", ["one", "two"], ["shape"], name="shape", axis=0),
        helper.make_node("Add", ["c2", "r1"], ["s"], name="add"),
        helper.make_node("MaxPool", ["s"], ["p"], name="pool", kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Reshape", ["p", "shape"], ["flat"], name="flatten"),
        helper.make_node("Gemm", ["flat", "w3"], ["y"], name="fc", transB=1),
    ]
    batch = "batch" if symbolic else 1
    graph = helper.make_graph(
        nodes,
        "skip",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 3, 8, 8])],
        [
            helper.make_tensor_value_info("y", TensorProto.FLOAT, None),
            helper.make_tensor_value_info("r1", TensorProto.FLOAT, None),
        ],
        [w1, w2, w3, numpy_helper.from_array(np.array([1], np.int64), "one")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def dynamic_head_model() -> onnx.ModelProto:
    """A detection-head-like tail as exporters write it for a symbolic batch: the Reshape
    target is computed at run time from Shape → Gather → Unsqueeze → Concat."""
    rng = np.random.default_rng(3)
    w = numpy_helper.from_array((rng.standard_normal((6, 4, 1, 1)) * 0.5).astype(np.float32), "w")
    c = lambda name, v: helper.make_node(  # noqa: E731
        "Constant", [], [name], name=name, value=numpy_helper.from_array(np.array(v, np.int64))
    )
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["d"], name="det"),
        helper.make_node("Shape", ["d"], ["s"], name="shape"),
        c("i0", 0),
        c("i2", 2),
        c("i3", 3),
        c("ax", [0]),
        c("three", [3]),
        c("two", [2]),
        helper.make_node("Gather", ["s", "i0"], ["b"], name="g0", axis=0),
        helper.make_node("Gather", ["s", "i2"], ["h"], name="g2", axis=0),
        helper.make_node("Gather", ["s", "i3"], ["wd"], name="g3", axis=0),
        helper.make_node("Unsqueeze", ["b", "ax"], ["ub"], name="u0"),
        helper.make_node("Unsqueeze", ["h", "ax"], ["uh"], name="u2"),
        helper.make_node("Unsqueeze", ["wd", "ax"], ["uw"], name="u3"),
        helper.make_node(
            "Concat", ["ub", "three", "two", "uh", "uw"], ["target"], name="cat", axis=0
        ),
        helper.make_node("Reshape", ["d", "target"], ["r"], name="reshape"),
        helper.make_node("Transpose", ["r"], ["t"], name="perm", perm=[0, 1, 3, 4, 2]),
        helper.make_node("Sigmoid", ["t"], ["y"], name="act"),
    ]
    graph = helper.make_graph(
        nodes,
        "head",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4, "h", "w"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3, "h", "w", 2])],
        [w],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


# -- the file system a model meets: read-only folders, a full disk ----------------------------


@contextlib.contextmanager
def read_only_folder(path: Path, files: dict[str, bytes] | None = None) -> Iterator[Path]:
    """A folder holding `files` that nobody can write to, not even root: a read-only tmpfs
    when we may mount one, else a 0555 folder (enough for a user without privileges)."""
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        mounted = (
            subprocess.run(
                ["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(path)], capture_output=True
            ).returncode
            == 0
        )
        if not mounted:
            pytest.skip("root without mount: a 0555 folder would not stop root writing")
        try:
            for name, data in (files or {}).items():
                (path / name).write_bytes(data)
            subprocess.run(["mount", "-o", "remount,ro", str(path)], check=True)
            yield path
        finally:
            subprocess.run(["umount", "-l", str(path)], check=False)
        return
    for name, data in (files or {}).items():
        (path / name).write_bytes(data)
    path.chmod(0o555)
    try:
        yield path
    finally:
        path.chmod(0o755)


def with_file_size_limit(fn: Callable[[], int], limit: int) -> tuple[int, str]:
    """Run `fn` in a forked child where no file may grow past `limit` bytes (RLIMIT_FSIZE):
    each write beyond it fails with EFBIG, as on a full disk. Returns the child's exit code
    (`fn`'s result; 99 if it raised) and what it printed on stderr."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: only it is limited
        code = 99
        try:
            os.close(read_end)
            sys.stderr = os.fdopen(write_end, "w")
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - the child exits right after
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # fail the write, not the process
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
            code = fn()
        except BaseException:
            traceback.print_exc()
        finally:
            sys.stderr.flush()
            os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end) as f:
        err = f.read()
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), err


def cli_with_file_size_limit(args: list[object], limit: int) -> tuple[int, str]:
    """`omdp ARGS` under `with_file_size_limit`."""
    from backend.cli import main

    return with_file_size_limit(lambda: main([str(a) for a in args]), limit)


@contextlib.contextmanager
def small_disk(path: Path, size: str = "64k") -> Iterator[Path]:
    """A folder on a tmpfs of `size`: writing more fails with ENOSPC, a real full disk."""
    path.mkdir(parents=True, exist_ok=True)
    if (
        os.geteuid() != 0
        or subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True
        ).returncode
        != 0
    ):
        pytest.skip("needs root to mount a small tmpfs")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)
