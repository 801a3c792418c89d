"""The command line reaches the right launch: `omdp`, `omdp tui ...`, `omdp demo`."""

from __future__ import annotations

from pathlib import Path

import pytest

from backend.cli import build_parser
from backend.errors import OmdpError
from omdp_tui.app import Launch


def launch(*argv: str) -> Launch:
    return Launch.from_args(build_parser(ui=lambda a: 0).parse_args(list(argv)))


def test_no_verb_opens_the_picker():
    assert launch().kind == "picker"
    assert launch("tui").kind == "picker"


def test_tui_with_a_model_and_options():
    got = launch(
        "tui",
        "yolov5n",
        "--session",
        "s.omdp",
        "--devices",
        "d.toml",
        "--input-shape",
        "images=1,3,320,320",
    )
    assert (got.kind, got.model, got.session, got.devices) == (
        "model",
        "yolov5n",
        Path("s.omdp"),
        Path("d.toml"),
    )
    assert got.input_shapes == {"images": [1, 3, 320, 320]}


def test_tui_with_only_a_session_resumes_it():
    got = launch("tui", "--session", "sessions/x.omdp")
    assert (got.kind, got.session) == ("session", Path("sessions/x.omdp"))


def test_demo_with_and_without_a_session():
    assert launch("demo").kind == "demo" and launch("demo").session is None
    assert launch("demo", "--session", "d.omdp").session == Path("d.omdp")


def test_bad_input_shape_is_the_cli_one_line_error():
    with pytest.raises(OmdpError, match="bad --input-shape"):
        launch("tui", "m.onnx", "--input-shape", "images=a,b")
