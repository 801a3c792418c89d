"""Bad arguments for `omdp validate`: refused on one line before any device is started,
with the session's folder (session and model) and the input files unchanged."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from models import read_only_folder

from .harness import expect_rejected
from .test_export import make_session


@pytest.fixture
def lab(tmp_path, monkeypatch):
    monkeypatch.setenv("OMDP_CACHE_DIR", str(tmp_path / "cache"))
    folder = tmp_path / "lab"
    folder.mkdir()
    session = make_session(folder)
    (folder / "plain.txt").write_text("a file, not a folder\n")
    np.save(folder / "wrong_shape.npy", np.zeros((1, 3, 4, 4), np.float32))
    np.save(folder / "wrong_dtype.npy", np.zeros((1, 3, 8, 8), np.complex64))
    np.save(folder / "objects.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    (folder / "fake.npy").write_bytes(b"\x93NUMPY not really")
    return session, folder


CASES = [
    # (arguments after the session, part of the message)
    (["--rank", "0"], "not a rank"),
    (["--rank", "abc"], "not a rank"),
    (["--rank", "1,x"], "not a rank"),
    (["--rank", "١"], "not a rank"),  # a digit to int(), not a rank
    (["--rank", "1.5"], "not a rank"),
    (["--rank", ","], "not a rank"),
    (["--rank", "9" * 5000], "not a rank"),
    (["--rank", "99"], "rank 99 does not exist"),
    (["--rank", "1,99"], "rank 99 does not exist"),
    ([], "no partition chosen"),
    (["--rank", ""], "no partition chosen"),
    (["--top", "0"], "K must be"),
    (["--top", "x"], "K"),
    (["--rank", "1", "--frames", "0"], "--frames must be"),
    (["--rank", "1", "--frames", "100001"], "--frames must be"),
    (["--rank", "1", "--frames", "many"], "invalid int"),
    (["--rank", "1", "--warmup", "-1"], "--warmup must be"),
    (["--rank", "1", "--bw", "nowhere=5"], "nowhere"),
    (["--rank", "1", "--bw", "glasses-phone=-1"], "glasses-phone"),
    (["--rank", "1", "--bw", "glasses-phone=fast"], "glasses-phone"),
    (["--rank", "1", "--latency", "glasses-phone=-3"], "glasses-phone"),
    (["--rank", "1", "--sink", "moon"], "moon"),
    (["--top", "5", "--sink", "glasses"], "not supported"),  # the output sent backwards
    (["--rank", "1", "--objective", "speed"], "invalid choice"),
    (["--rank", "1", "--model", "guessed"], "invalid choice"),
    (["--rank", "1", "--link-model", "guessed"], "invalid choice"),
    (["--rank", "1", "--timeout", "0"], "--timeout"),
    (["--rank", "1", "--timeout", "nan"], "--timeout"),
]


@pytest.mark.parametrize(("args", "expected"), CASES, ids=[" ".join(a)[:30] for a, _ in CASES])
def test_bad_argument(capsys, lab, args, expected):
    session, folder = lab
    expect_rejected(capsys, ["validate", session, *args], watch=[folder], contains=expected)


INPUTS = {
    "missing": ("nope.npy", "no input file"),
    "a directory": (".", "is a directory"),
    "a text file": ("plain.txt", "not a numpy .npy file"),
    "a damaged npy": ("fake.npy", "not a numpy .npy file"),
    "pickled objects": ("objects.npy", "not a numpy .npy file"),
    "another shape": ("wrong_shape.npy", "shape (1, 3, 4, 4)"),
    "another dtype": ("wrong_dtype.npy", "dtype complex64"),
}


@pytest.mark.parametrize("case", INPUTS)
def test_bad_input_file(capsys, lab, case):
    session, folder = lab
    name, expected = INPUTS[case]
    expect_rejected(
        capsys,
        ["validate", session, "--rank", "1", "--input-npy", folder / name],
        watch=[folder],
        contains=expected,
    )


SESSIONS = {
    "missing": (lambda folder: folder / "nope.omdp", "no session"),
    "a directory": (lambda folder: folder, "is a directory"),
    "not a session": (lambda folder: folder / "plain.txt", "plain.txt"),
}


@pytest.mark.parametrize("case", SESSIONS)
def test_bad_session(capsys, lab, case):
    _, folder = lab
    where, expected = SESSIONS[case]
    expect_rejected(
        capsys, ["validate", where(folder), "--rank", "1"], watch=[folder], contains=expected
    )


def test_a_read_only_session_is_refused_before_anything_runs(capsys, tmp_path: Path):
    work = tmp_path / "work"
    work.mkdir()
    session = make_session(work)
    with read_only_folder(tmp_path / "ro", {"s.omdp": session.read_bytes()}) as ro:
        expect_rejected(
            capsys,
            ["validate", ro / "s.omdp", "--rank", "1"],
            watch=[ro, work],
            contains="read-only",
        )
