"""The model verbs as a user runs them: happy paths and every kind of bad input."""

import json
import subprocess
import sys

import onnx
import pytest
from models import cli_with_file_size_limit, light, skip_model, small_disk, with_file_size_limit

from backend.cli import main


@pytest.fixture
def skip_file(tmp_path):
    path = tmp_path / "skip.onnx"
    onnx.save(skip_model(), path)
    return path


def run_cli(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def test_inspect_json_has_the_promised_fields(capsys, skip_file):
    code, out, _ = run_cli(capsys, "inspect", skip_file, "--json")
    assert code == 0
    data = json.loads(out)
    assert data["nodes"] == 9
    assert data["parameters"] == 4 * 3 * 9 + 4 * 4 * 9 + 10 * 64
    assert data["flops"] > 0
    assert data["inputs"] == [
        {"name": "x", "shape": [1, 3, 8, 8], "dtype": "float32", "bytes": 768}
    ]
    assert [o["name"] for o in data["outputs"]] == ["y", "r1"]
    assert [r["name"] for r in data["node_table"]][:3] == ["conv1", "relu1", "conv2"]
    assert data["node_table"][2]["cut_bytes"] == 2 * 256 * 4
    conv2 = data["node_table"][2]
    assert [t["name"] for t in conv2["inputs"]] == ["r1", "w2"]
    assert conv2["inputs"][1] == {
        "name": "w2",
        "shape": [4, 4, 3, 3],
        "dtype": "float32",
        "bytes": 576,
    }
    assert conv2["outputs"][0]["shape"] == [1, 4, 8, 8] and conv2["params"] == 144


def test_inspect_for_people(capsys, skip_file):
    code, out, _ = run_cli(capsys, "inspect", skip_file, "--nodes")
    assert code == 0
    assert "parameters" in out and "conv2" in out and "cut after" in out


def test_cuts_all_and_top(capsys, skip_file):
    code, out, _ = run_cli(capsys, "cuts", skip_file, "--json")
    positions = json.loads(out)["positions"]
    assert [p["position"] for p in positions] == list(range(10))
    assert {t["name"] for t in positions[3]["tensors"]} == {"c2", "r1"}
    code, out, _ = run_cli(capsys, "cuts", str(light("squeezenet")), "--top", "3", "--json")
    assert code == 0 and len(json.loads(out)["positions"]) == 3


def test_extract_writes_a_runnable_segment(capsys, skip_file, tmp_path):
    out_file = tmp_path / "seg.onnx"
    code, out, _ = run_cli(
        capsys, "extract", skip_file, "--from", "relu1", "--to", "6", "-o", out_file
    )
    assert code == 0, out
    seg = onnx.load(out_file)
    onnx.checker.check_model(seg)
    assert [i.name for i in seg.graph.input] == ["r1"]


def _truncated(tmp_path):
    data = light("squeezenet").read_bytes()
    path = tmp_path / "truncated.onnx"
    path.write_bytes(data[: len(data) // 2])
    return path


def _external_without_data(tmp_path):
    path = tmp_path / "ext.onnx"
    onnx.save(
        skip_model(),
        path,
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location="ext.onnx.data",
        size_threshold=0,
    )
    (tmp_path / "ext.onnx.data").unlink()
    return path


def _invalid_graph(tmp_path):
    m = skip_model()
    m.graph.node[1].input[0] = "nowhere"
    path = tmp_path / "invalid.onnx"
    onnx.save(m, path)
    return path


def _symbolic(tmp_path):
    path = tmp_path / "sym.onnx"
    onnx.save(skip_model(symbolic=True), path)
    return path


def _text(tmp_path):
    path = tmp_path / "notes.onnx"
    path.write_text("these are my notes, not a model\n")
    return path


BAD_MODELS = {
    "missing": (lambda t: t / "nope.onnx", "no such file"),
    "directory": (lambda t: t, "is a directory"),
    "not onnx": (_text, "not"),
    "empty": (lambda t: (t / "e.onnx").write_bytes(b"") or t / "e.onnx", "is empty"),
    "truncated": (_truncated, "not a readable ONNX model"),
    "invalid graph": (_invalid_graph, "invalid model: tensor 'nowhere'"),
    "missing external data": (_external_without_data, "external data 'ext.onnx.data'"),
    "symbolic dims": (_symbolic, "--input-shape x=1,3,8,8"),
}


@pytest.mark.parametrize("case", BAD_MODELS)
def test_bad_models_get_one_line_and_exit_2(capsys, tmp_path, case):
    make, expected = BAD_MODELS[case]
    code, _out, err = run_cli(capsys, "inspect", make(tmp_path))
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("omdp: error: ")
    assert expected in err


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--from", "0", "--to", "99"], "position 99 is out of range"),
        (["--from", "6", "--to", "2"], "--from 6 is after --to 2"),
        (["--from", "conv9", "--to", "3"], "no node or tensor named 'conv9'"),
    ],
)
def test_bad_positions(capsys, skip_file, tmp_path, args, expected):
    code, _, err = run_cli(capsys, "extract", skip_file, *args, "-o", tmp_path / "s.onnx")
    assert code == 2 and expected in err and err.count("\n") == 1


def test_bad_output_path(capsys, skip_file, tmp_path):
    code, _, err = run_cli(
        capsys, "extract", skip_file, "--from", "1", "--to", "2", "-o", tmp_path / "no" / "s.onnx"
    )
    assert code == 2 and "does not exist" in err


def test_console_script_shows_no_traceback(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "omdp_tui.main", "cuts", str(tmp_path)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and "is a directory" in proc.stderr


def test_segment_over_the_protobuf_limit_is_refused(capsys, skip_file, tmp_path, monkeypatch):
    import backend.device.segments

    monkeypatch.setattr(backend.device.segments, "PROTOBUF_LIMIT", 1000)
    out = tmp_path / "big.onnx"
    code, _, err = run_cli(capsys, "extract", skip_file, "--from", "0", "--to", "9", "-o", out)
    assert code == 2 and "over the 2 GiB" in err and "shorter range" in err
    assert not out.exists() and not list(tmp_path.glob("*.part"))


def _one_line(err: str) -> str:
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("omdp: error: "), err
    return lines[0]


def test_extract_on_a_full_disk_is_one_line_and_leaves_nothing(skip_file, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "seg.onnx").write_bytes(b"the previous segment")
    code, err = cli_with_file_size_limit(
        ["extract", skip_file, "--from", "0", "--to", "9", "-o", out / "seg.onnx"], 1000
    )
    assert code == 2
    assert "cannot write" in _one_line(err) and "seg.onnx" in err and "too large" in err
    assert [p.name for p in out.iterdir()] == ["seg.onnx"]  # no partial or temporary file
    assert (out / "seg.onnx").read_bytes() == b"the previous segment"


def test_extract_on_a_small_disk_says_it_is_full(capsys, skip_file, tmp_path):
    with small_disk(tmp_path / "disk", "4k") as disk:
        code, _, err = run_cli(
            capsys, "extract", skip_file, "--from", "0", "--to", "9", "-o", disk / "seg.onnx"
        )
        assert code == 2 and "the disk is full" in _one_line(err)
        assert list(disk.iterdir()) == []


def test_extracted_segments_pass_the_checker(capsys, tmp_path):
    """Every segment `omdp extract` writes is one onnx.checker accepts."""
    model = light("inception_v1")
    for start, end in [(0, 1), (3, 40), (10, 10), (57, 142), (100, 143)]:
        out = tmp_path / f"s{start}_{end}.onnx"
        code, _, err = run_cli(capsys, "extract", model, "--from", start, "--to", end, "-o", out)
        assert code == 0, err
        onnx.checker.check_model(str(out), full_check=True)


def test_zoo_build_on_a_full_disk_leaves_nothing(tmp_path):
    code, err = cli_with_file_size_limit(
        ["zoo", "build", "squeezenet", "-o", tmp_path / "sq.onnx"], 100_000
    )
    assert code == 2 and "too large" in _one_line(err)
    assert list(tmp_path.iterdir()) == []


def test_zoo_build_with_external_data_on_a_full_disk_leaves_neither_file(tmp_path, monkeypatch):
    """The model and its data file appear together or not at all."""
    from backend.model import zoo

    monkeypatch.setattr(zoo, "PROTOBUF_LIMIT", 1024)  # pretend squeezenet is over 2 GiB
    model = zoo.build("squeezenet")

    def save() -> int:
        zoo.save(model, tmp_path / "big.onnx")
        return 0

    code, err = with_file_size_limit(save, 1_000_000)
    assert code == 99 and "OmdpError" in err and "too large" in err
    assert list(tmp_path.iterdir()) == []
    zoo.save(model, tmp_path / "big.onnx")  # with room: both files
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.onnx", "big.onnx.data"]
