"""`omdp map` end to end on a session file: text, JSON, CSV and the SVG image."""

from __future__ import annotations

import csv
import io
import json
import xml.etree.ElementTree as ET

import onnx
import pytest
from models import skip_model
from synthetic import measured_session

from backend.cli import main
from backend.model.analysis import analyze
from backend.profiling.session import Session
from backend.usecases.rankings import RankOptions, rank_session

SVG = "{http://www.w3.org/2000/svg}"


@pytest.fixture(scope="module")
def session_file(tmp_path_factory):
    folder = tmp_path_factory.mktemp("mapcli")
    model = folder / "skip.onnx"
    onnx.save(skip_model(), model)
    a = analyze(model)
    path = folder / "s.omdp"
    s = measured_session(path, a)
    s.close()
    return path


def run(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    assert code == 0, err
    return out


def test_one_link_text_names_each_breakpoint(capsys, session_file):
    out = run(capsys, "map", session_file, "--vary", "glasses-phone=0.1:1000")
    assert "exact breakpoints" in out
    data = json.loads(
        run(capsys, "map", session_file, "--vary", "glasses-phone=0.1:1000", "--json")
    )
    bands = data["bands"]
    assert len(bands) >= 2 and data["method"] == "exact"
    assert data["breakpoints_mbps"] == [b["hi_mbps"] for b in bands[:-1]]
    assert f"below {bands[0]['hi_mbps']:.4g} Mbit/s on glasses-phone the best is" in out
    for b in bands:  # each band's partition is what `omdp paths` ranks first inside it
        mid = (b["lo_mbps"] * b["hi_mbps"]) ** 0.5
        with Session.open(session_file) as s:
            best = rank_session(s, RankOptions(k=1, bandwidth=(f"glasses-phone={mid!r}",)))
        assert list(best.partitions[0].cuts) == b["cuts"]
        assert b["partition"] in out


def test_two_links_json_csv_and_robust(capsys, session_file):
    args = ["map", session_file, "--vary", "glasses-phone=0.1:1000", "--vary", "phone-cloud=0.1:50"]
    data = json.loads(run(capsys, *args, "--json", "--robust", "60%"))
    shares = [r["share"] for r in data["regions"]]
    assert sum(shares) == pytest.approx(1.0) and shares == sorted(shares, reverse=True)
    assert all(len(r["polygon_mbps"]) >= 3 for r in data["regions"])
    assert data["robust"]["exact"] and data["robust"]["within"]
    assert all(c["worst_ratio"] <= 1.6 + 1e-9 for c in data["robust"]["within"])
    rows = list(csv.DictReader(io.StringIO(run(capsys, *args, "--csv"))))
    assert [r["partition"] for r in rows] == [r["partition"] for r in data["regions"]]
    text = run(capsys, *args, "--robust", "60%")
    assert "exact regions" in text and "smallest worst-case regret" in text


def test_throughput_is_exact_on_one_link_and_a_grid_on_two(capsys, session_file):
    one = ["map", session_file, "--vary", "glasses-phone=0.1:100", "--objective", "throughput"]
    assert "exact breakpoints" in run(capsys, *one)
    out = run(capsys, *one, "--vary", "phone-cloud=1:100")
    assert "grid of 161x161 log-spaced points" in out and "not affine" in out


@pytest.mark.parametrize("links", [1, 2])
def test_the_image_has_axes_regions_and_legend(capsys, session_file, tmp_path, links):
    image = tmp_path / "map.svg"
    vary = ["--vary", "glasses-phone=0.1:1000", "--vary", "phone-cloud=0.1:500"][: 2 * links]
    data = json.loads(run(capsys, "map", session_file, *vary, "--json", "--image", image))
    root = ET.parse(image).getroot()  # well-formed XML, an SVG document
    assert root.tag == f"{SVG}svg"
    texts = ["".join(t.itertext()) for t in root.iter(f"{SVG}text")]
    labels = [t for t in texts if "(Mbit/s)" in t or "(ms)" in t]
    assert "glasses-phone (Mbit/s)" in labels
    assert ("phone-cloud (Mbit/s)" if links == 2 else "best latency (ms)") in labels
    ticks = [e for e in root.iter(f"{SVG}text") if e.get("class") == "tick"]
    assert {"0.1", "1", "10", "100", "1000"} <= {"".join(t.itertext()) for t in ticks}
    regions = [e for e in root.iter() if e.get("class") == "region"]
    parts = data["regions"] if links == 2 else data["bands"]
    assert len(regions) >= len(parts) >= 2
    legend = next(e for e in root.iter(f"{SVG}g") if e.get("class") == "legend")
    entries = ["".join(t.itertext()) for t in legend.iter(f"{SVG}text")]
    for p in parts:
        assert any(p["partition"] in e for e in entries)
    # the session's link values (20 and 100 Mbit/s) lie in the box: marked as now
    assert [e for e in root.iter() if e.get("class") == "now"]
    assert any(e.startswith("now:") for e in entries)
