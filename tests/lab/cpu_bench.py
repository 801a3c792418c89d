"""One onnxruntime segment on one thread, timed on request (run on a lab device over SSH).

The segment is a chain of MatMuls of N×N matrices (about 25 ms per layer on one core of the lab
machine for N=1024). Each stdin line "K" runs it K times and answers one JSON line
{"wall": [ms...], "cpu": [ms...]}: wall-clock time as the agent measures it, and this
process's CPU time (what the device's CPU share is spent on).
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper


def session(n: int, layers: int) -> tuple[ort.InferenceSession, np.ndarray]:
    rng = np.random.default_rng(0)
    inits, nodes, prev = [], [], "x"
    for i in range(layers):
        w = (rng.standard_normal((n, n)) / np.sqrt(n)).astype(np.float32)
        inits.append(numpy_helper.from_array(w, f"w{i}"))
        nodes.append(helper.make_node("MatMul", [prev, f"w{i}"], [f"y{i}"]))
        prev = f"y{i}"
    graph = helper.make_graph(
        nodes,
        "bench",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [n, n])],
        [helper.make_tensor_value_info(prev, TensorProto.FLOAT, [n, n])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    return sess, rng.standard_normal((n, n)).astype(np.float32)


def main() -> None:
    sess, x = session(int(sys.argv[1]), int(sys.argv[2]))
    sess.run(None, {"x": x})
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        wall, cpu = [], []
        for _ in range(int(line)):
            t0, c0 = time.perf_counter(), time.process_time()
            sess.run(None, {"x": x})
            wall.append((time.perf_counter() - t0) * 1e3)
            cpu.append((time.process_time() - c0) * 1e3)
        print(json.dumps({"wall": wall, "cpu": cpu}), flush=True)


if __name__ == "__main__":
    main()
