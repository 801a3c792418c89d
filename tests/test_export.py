"""Exported partitions: complete, valid, readable back, and their segment models run."""

import json
import re

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from models import skip_model, with_file_size_limit

from backend.errors import OmdpError
from backend.export import build_export, read_export, write_export
from backend.model.analysis import analyze
from backend.solver.costs import SegmentInstance
from backend.solver.ranking import top_k

DEVICES = [
    {"name": "glasses", "kind": "local", "runtime": "onnxruntime"},
    {"name": "phone", "kind": "local", "runtime": "openvino"},
]
LINKS = [
    {
        "name": "glasses-phone",
        "from": "glasses",
        "to": "phone",
        "bandwidth_mbps": 20.0,
        "latency_ms": 5.0,
    }
]


@pytest.fixture
def exported(tmp_path):
    path = tmp_path / "skip.onnx"
    onnx.save(skip_model(), path)
    a = analyze(path)
    cands = np.array([0, 3, 6, a.n])
    m = len(cands)
    compute = np.full((2, m, m), np.nan)
    for i in range(m):
        for j in range(i, m):
            span = cands[j] - cands[i]
            compute[0, i, j] = 3.0 * span  # a slow first device
            compute[1, i, j] = 1.0 * span
    inst = SegmentInstance(
        devices=("glasses", "phone"),
        candidates=cands,
        cut_bytes=np.array([a.cuts[c].bytes for c in cands], float),
        compute_ms=compute,
        bandwidth_mbps=np.array([20.0]),
        latency_ms=np.array([5.0]),
        estimated_ms=compute * 1.1,
    )
    parts = top_k(inst, 3)
    doc = build_export(
        a, parts, devices=DEVICES, links=LINKS, cost_model="measured", objective="latency"
    )
    return a, doc, tmp_path


def test_document_describes_each_cut_and_segment(exported):
    a, doc, _ = exported
    assert doc["schema"] == "omdp.partition" and doc["schema_version"] == 1
    assert doc["model"]["sha256"] == a.sha256 and doc["model"]["nodes"] == a.n
    best = doc["partitions"][0]
    assert best["rank"] == 1
    assert [s["device"] for s in best["segments"]] == ["glasses", "phone"]
    assert best["predicted"]["estimated_ms"] > best["predicted"]["measured_ms"]
    for seg in best["segments"]:
        assert seg["estimated_ms"] == pytest.approx(seg["measured_ms"] * 1.1)
    for part in doc["partitions"]:
        for cut in part["cuts"]:
            assert cut["bytes"] == a.cuts[cut["position"]].bytes
            assert {t["name"] for t in cut["tensors"]} == set(a.cuts[cut["position"]].tensors)


def test_written_file_reads_back_and_segments_run(exported):
    a, doc, tmp = exported
    files = write_export(doc, tmp / "p.json", a, with_models=tmp / "models")
    back = read_export(tmp / "p.json")
    assert back["partitions"][0]["segments"] == doc["partitions"][0]["segments"]
    x = np.random.default_rng(0).standard_normal((1, 3, 8, 8)).astype(np.float32)
    full = dict(
        zip(
            ["y", "r1"],
            ort.InferenceSession(str(a.path), providers=["CPUExecutionProvider"]).run(
                None, {"x": x}
            ),
            strict=True,
        )
    )
    for part in back["partitions"]:
        values = {"x": x}
        for seg in part["segments"]:
            if "file" in seg:
                sess = ort.InferenceSession(seg["file"], providers=["CPUExecutionProvider"])
                outs = sess.run(None, {i.name: values[i.name] for i in sess.get_inputs()})
                values.update(zip([o.name for o in sess.get_outputs()], outs, strict=True))
        np.testing.assert_allclose(values["y"], full["y"], rtol=1e-5, atol=1e-6)
    assert len(files) > 1


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.update(schema="other"), "'schema' is not"),
        (lambda d: d.update(schema_version=99), "newer than this tool"),
        (lambda d: d["partitions"][0]["segments"].reverse(), "out of chain order"),
        (lambda d: d["partitions"][0]["segments"][-1].update(end=1), "segments end at"),
        (lambda d: d["model"].update(sha256="abc"), "sha256"),
    ],
)
def test_reading_back_rejects_a_broken_document(exported, mutate, message):
    _, doc, tmp = exported
    write_export(doc, tmp / "p.json")
    data = json.loads((tmp / "p.json").read_text())
    mutate(data)
    (tmp / "bad.json").write_text(json.dumps(data))
    with pytest.raises(OmdpError, match=message):
        read_export(tmp / "bad.json")


def test_not_json(tmp_path):
    (tmp_path / "x.json").write_text("{not json")
    with pytest.raises(OmdpError, match="is not JSON"):
        read_export(tmp_path / "x.json")


def _left(folder):
    return sorted(p.name for p in folder.rglob("*"))


def test_full_disk_leaves_no_json_no_models_no_folder(exported):
    a, doc, tmp = exported
    before = _left(tmp)

    def write() -> int:
        write_export(doc, tmp / "p.json", a, with_models=tmp / "models" / "sub")
        return 0

    for limit in (300, 3000):  # fails on a segment model; on the JSON after the models
        code, err = with_file_size_limit(write, limit)
        assert code == 99 and "OmdpError" in err and "too large" in err
        assert _left(tmp) == before


def test_every_segment_is_checked_before_the_first_is_written(exported, monkeypatch):
    a, doc, tmp = exported
    import backend.export

    real, calls = backend.export.segment_pieces, []

    def refuse_the_last(index, start, end):
        calls.append((start, end))
        if len(calls) == sum(
            s["start"] < s["end"] for p in doc["partitions"] for s in p["segments"]
        ):
            raise OmdpError("onnx.checker refuses it")
        return real(index, start, end)

    monkeypatch.setattr(backend.export, "segment_pieces", refuse_the_last)
    with pytest.raises(OmdpError, match="refuses"):
        write_export(doc, tmp / "p.json", a, with_models=tmp / "models")
    assert not (tmp / "models").exists() and not (tmp / "p.json").exists()


def test_device_names_stay_inside_the_models_folder(exported):
    a, doc, tmp = exported
    for part in doc["partitions"]:
        for seg, name in zip(part["segments"], ["../up", "a/b"], strict=True):
            seg["device"] = name
    doc["devices"] = [{"name": "../up"}, {"name": "a/b"}]
    files = write_export(doc, tmp / "p.json", a, with_models=tmp / "models")
    assert all(f.parent == tmp / "models" for f in files[1:])
    assert files[1:] and all(
        re.fullmatch(r"rank\d+_(\.\._up|a_b)_\d+_\d+\.onnx", f.name) for f in files[1:]
    )
