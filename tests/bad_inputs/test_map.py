"""Bad inputs to `omdp map`: ranges, the varying links, the percentage, the image path, and
sessions that cannot be mapped. Each is refused on one line, exit 2, no traceback, and no
file changed (the session, its folder, no image left behind)."""

from __future__ import annotations

import itertools
import shutil
from pathlib import Path

import onnx
import pytest
from models import skip_model
from synthetic import LINKS, SPEED, measured_session

from backend.chain import Chain, DeviceSpec, LinkSpec
from backend.cli import main
from backend.model.analysis import analyze
from backend.profiling.session import Session

from .harness import expect_rejected


@pytest.fixture(scope="module")
def measured(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("map")
    model = folder / "skip.onnx"
    onnx.save(skip_model(), model)
    a = analyze(model)
    path = folder / "s.omdp"
    s = measured_session(path, a)
    s.close()
    empty = folder / "empty.omdp"
    Session.create(empty, a, Chain([DeviceSpec(n) for n in SPEED], LINKS), [2, 6]).close()
    return folder


@pytest.fixture
def lab(tmp_path, measured) -> Path:
    for f in measured.iterdir():
        shutil.copy(f, tmp_path / f.name)
    (tmp_path / "out").mkdir()
    return tmp_path


GP = "glasses-phone"
CASES = [
    ([], "the following arguments are required: --vary"),
    (["--vary", f"{GP}"], "is not LINK=LO:HI"),
    (["--vary", "=5:10"], "is not LINK=LO:HI"),
    (["--vary", f"{GP}=5"], "is not LO:HI"),
    (["--vary", f"{GP}=5:"], "is not LO:HI"),
    (["--vary", f"{GP}=:5"], "is not LO:HI"),
    (["--vary", f"{GP}=a:b"], "is not LO:HI"),
    (["--vary", f"{GP}=5:nan"], "is not LO:HI"),
    (["--vary", f"{GP}=5:inf"], "is not LO:HI"),
    (["--vary", f"{GP}=10:5"], "0 < LO < HI"),
    (["--vary", f"{GP}=5:5"], "0 < LO < HI"),
    (["--vary", f"{GP}=0:5"], "0 < LO < HI"),
    (["--vary", f"{GP}=-1:5"], "0 < LO < HI"),
    (["--vary", f"{GP}=1:1e300"], "0 < LO < HI"),
    (["--vary", f"{GP}=1e-300:5"], "LO ≥ 1e-06"),
    (["--vary", "glasses-cloud=1:5"], "unknown link 'glasses-cloud'"),
    (["--vary", "tv\x1b[2J=1:5"], "unknown link"),
    (["--vary", f"{GP}=1:5", "--vary", f"{GP}=2:6"], "given twice"),
    (["--vary", f"{GP}=1:5", "--bw", f"{GP}=3"], "--bw and --vary both set glasses-phone"),
    (["--vary", f"{GP}=1:5", "--bw", "phone-cloud=0"], "must be a number > 0"),
    (["--vary", f"{GP}=1:5", "--latency", "phone-cloud=-1"], "must be a number ≥ 0 ms"),
    (["--vary", f"{GP}=1:5", "--robust", "ten"], "--robust must be a percentage"),
    (["--vary", f"{GP}=1:5", "--robust=-5%"], "--robust must be a percentage"),
    (["--vary", f"{GP}=1:5", "--robust", "nan%"], "--robust must be a percentage"),
    (["--vary", f"{GP}=1:5", "--robust", "1e9"], "--robust must be a percentage"),
    (["--vary", f"{GP}=1:5", "--scale", "sqrt"], "invalid choice: 'sqrt'"),
    (["--vary", f"{GP}=1:5", "--objective", "fastest"], "invalid choice"),
    (["--vary", f"{GP}=1:5", "--model", "estimated"], "no per-node times"),
    (["--vary", f"{GP}=1:5", "--memory", "tv=5"], "unknown device 'tv'"),
    (["--vary", f"{GP}=1:5", "--sink", "moon"], "unknown sink device 'moon'"),
    (["--vary", f"{GP}=1:5", "--json", "--csv"], "not allowed with argument"),
    (["--vary", f"{GP}=1:5", "--image", "{lab}/map.png"], "PNG needs an image library"),
    (["--vary", f"{GP}=1:5", "--image", "{lab}/map.pdf"], "must be an .svg file"),
    (["--vary", f"{GP}=1:5", "--image", "{lab}/out"], "must be an .svg file"),
    (["--vary", f"{GP}=1:5", "--image", "{lab}/nowhere/map.svg"], "cannot write"),
    (["--vary", f"{GP}=1:5", "--image", "{lab}/s.omdp/map.svg"], "cannot write"),
]


def ids(cases) -> list[str]:
    return [" ".join(args)[:60] or "(none)" for args, _ in cases]


@pytest.mark.parametrize(("args", "contains"), CASES, ids=ids(CASES))
def test_bad_map_arguments(capsys, lab, args, contains):
    args = [a.format(lab=lab) for a in args]
    expect_rejected(capsys, ["map", lab / "s.omdp", *args], watch=[lab], contains=contains)


def test_three_varying_links_are_refused(capsys, tmp_path):
    """A four-device chain has three links; a map shows two."""
    a = analyze(skip_model())
    names = ["a", "b", "c", "d"]
    links = [LinkSpec(x, y, 10.0, 1.0) for x, y in itertools.pairwise(names)]
    path = tmp_path / "four.omdp"
    Session.create(path, a, Chain([DeviceSpec(n) for n in names], links), [2, 6]).close()
    vary = [arg for link in ("a-b", "b-c", "c-d") for arg in ("--vary", f"{link}=1:5")]
    expect_rejected(capsys, ["map", path, *vary], watch=[tmp_path], contains="one or two")


def test_sessions_that_cannot_be_mapped(capsys, lab):
    vary = ["--vary", f"{GP}=1:5"]
    expect_rejected(capsys, ["map", lab / "empty.omdp", *vary], watch=[lab], contains="no meas")
    expect_rejected(capsys, ["map", lab / "none.omdp", *vary], watch=[lab])
    expect_rejected(capsys, ["map", lab / "skip.onnx", *vary], watch=[lab])


def test_the_good_inputs_of_this_file_are_accepted(capsys, lab):
    base = ["map", str(lab / "s.omdp"), "--vary", f"{GP}=1:5"]
    assert main([*base, "--robust", "10%", "--json"]) == 0
    assert main([*base, "--vary", "phone-cloud=1:5", "--image", str(lab / "m.svg")]) == 0
    capsys.readouterr()
