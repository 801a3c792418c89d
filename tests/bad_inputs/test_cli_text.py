"""Any error the CLI prints is one line, whatever bytes a path or a file put in it."""

import pytest

from .harness import expect_rejected


@pytest.mark.parametrize(
    "name",
    ["two\nlines.onnx", "esc\x1b[2Jomdp: all good.onnx", "cr\rforged.onnx", "bidi\u202ename.onnx"],
)
@pytest.mark.parametrize("verb", ["inspect", "cuts", "results", "paths"])
def test_control_characters_in_a_path_stay_on_one_line(capsys, tmp_path, verb, name):
    line = expect_rejected(capsys, [verb, tmp_path / name], watch=[tmp_path])
    assert "\x1b" not in line and "\r" not in line and "\u202e" not in line
