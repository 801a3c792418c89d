"""Segments chained in sequence reproduce the full model (onnxruntime, real models)."""

import itertools

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from models import dynamic_head_model, light, skip_model

from backend.model import zoo
from backend.model.analysis import analyze


def _run(model, values: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    source = model.SerializeToString() if isinstance(model, onnx.ModelProto) else str(model)
    sess = ort.InferenceSession(source, opts, providers=["CPUExecutionProvider"])
    outs = sess.run(None, {i.name: values[i.name] for i in sess.get_inputs()})
    return dict(zip([o.name for o in sess.get_outputs()], outs, strict=True))


def _feeds(a, seed=0):
    rng = np.random.default_rng(seed)
    return {t.name: rng.standard_normal(t.shape).astype(np.float32) for t in a.inputs}


def assert_partitions_reproduce(a, partitions):
    feeds = _feeds(a)
    full = _run(a.path or a.model, feeds)  # a file's big weights stay in the file
    for cuts in partitions:
        bounds = [0, *cuts, a.n]
        values = dict(feeds)
        for start, end in itertools.pairwise(bounds):
            seg = a.index.extract(start, end)
            onnx.checker.check_model(seg)
            assert [i.name for i in seg.graph.input] == list(a.cuts[start].tensors)
            assert [o.name for o in seg.graph.output] == list(a.cuts[end].tensors)
            values.update(_run(seg, values))
        for name, expected in full.items():
            scale = max(float(np.abs(expected).max()), 1e-6)
            err = float(np.abs(values[name] - expected).max()) / scale
            assert err < 1e-4, f"{name}: relative error {err:.2e} for cuts {cuts}"


def _random_partitions(a, count, parts, seed=1):
    rng = np.random.default_rng(seed)
    return [
        sorted(rng.choice(np.arange(1, a.n), size=parts, replace=False).tolist())
        for _ in range(count)
    ]


def test_every_position_of_a_skip_model():
    a = analyze(skip_model())
    assert_partitions_reproduce(a, [[p] for p in range(a.n + 1)] + [[2, 5, 7], [3, 3, 8]])


def test_segment_carries_only_the_weights_it_needs():
    a = analyze(skip_model())
    seg = a.index.extract(2, 6)  # conv2 and add
    assert {t.name for t in seg.graph.initializer} == {"w2"}
    assert [i.name for i in seg.graph.input] == ["r1"]
    assert [o.name for o in seg.graph.output] == ["r1", "s"]  # r1 passes through
    tail = a.index.extract(7, 9)  # reshape needs the constant-computed shape: carried along
    assert [n.name for n in tail.graph.node] == ["two", "shape", "flatten", "fc"]
    assert a.weight_bytes(2, 6) == 4 * 4 * 9 * 4


def test_empty_segment_passes_its_cut_through():
    a = analyze(skip_model())
    seg = a.index.extract(3, 3)
    assert len(seg.graph.node) == 0
    assert [i.name for i in seg.graph.input] == [o.name for o in seg.graph.output]


@pytest.mark.parametrize("name", ["squeezenet", "inception_v1", "shufflenet"])
def test_light_models_as_shipped(name):
    a = analyze(light(name))
    assert_partitions_reproduce(a, [a.candidates(3), *_random_partitions(a, 2, 3)])


@pytest.mark.slow
@pytest.mark.parametrize("name", ["resnet50", "densenet121", "inception_v2"])
def test_big_light_models_as_shipped(name):
    a = analyze(light(name))
    assert_partitions_reproduce(a, [a.candidates(4), *_random_partitions(a, 2, 4)])


@pytest.fixture(scope="module")
def zoo_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("zoo")
    return {
        name: zoo.build_to(name, folder / f"{name}.onnx")
        for name in ("yolov5n", "resnet50", "densenet121")
    }


@pytest.mark.parametrize("name", ["yolov5n", "resnet50"])
def test_zoo_models_from_files(zoo_files, name):
    """Random weights (meaningful numerics) read lazily from the file."""
    a = analyze(zoo_files[name])
    assert a.index.lazy is not None and a.index.lazy.fields
    assert_partitions_reproduce(a, [a.candidates(4), *_random_partitions(a, 2, 3)])


@pytest.mark.slow
def test_densenet_with_random_weights(zoo_files):
    a = analyze(zoo_files["densenet121"])
    assert_partitions_reproduce(a, [a.candidates(5), *_random_partitions(a, 2, 5)])


def test_written_segment_equals_built_segment(zoo_files, tmp_path):
    a = analyze(zoo_files["yolov5n"])
    size = a.index.write_segment(40, 120, str(tmp_path / "s.onnx"))
    assert (tmp_path / "s.onnx").read_bytes() == a.index.segment_bytes(40, 120)
    assert size == (tmp_path / "s.onnx").stat().st_size
    seg = onnx.load(tmp_path / "s.onnx")
    onnx.checker.check_model(seg)
    weights = {t.name: t for t in seg.graph.initializer}
    full = onnx.load(zoo_files["yolov5n"])
    for t in full.graph.initializer:
        if t.name in weights:
            assert t.raw_data == weights[t.name].raw_data


def test_segment_errors():
    a = analyze(skip_model())
    with pytest.raises(ValueError, match="after its end"):
        a.index.extract(5, 2)
    with pytest.raises(ValueError, match="out of range"):
        a.index.extract(0, 99)


def test_folded_dynamic_head_reproduces():
    a = analyze(dynamic_head_model(), {"x": [2, 4, 5, 7]})
    assert_partitions_reproduce(a, [[p] for p in range(a.n + 1)])
