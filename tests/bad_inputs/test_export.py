"""Bad arguments and destinations for `omdp export`: refused before anything is written.

Each case runs against a real, profiled session; the session's folder (session and model)
and the output folder are watched: a refused export changes nothing in either.
"""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest
from models import read_only_folder, skip_model
from synthetic import measured_session

from backend.model.analysis import analyze

from .harness import expect_rejected


def make_session(folder: Path, model: Path | None = None) -> Path:
    """A session on the skip model, every planned segment measured."""
    model = model or folder / "skip.onnx"
    if not model.exists():
        onnx.save(skip_model(), model)
    path = folder / "s.omdp"
    measured_session(path, analyze(model)).close()
    return path


@pytest.fixture
def lab(tmp_path):
    folder, out = tmp_path / "lab", tmp_path / "out"
    folder.mkdir()
    out.mkdir()
    session = make_session(folder)
    (folder / "plain.txt").write_text("a file, not a folder\n")
    return session, folder, out


RANKS = [
    ("0", "out of range"),
    ("-1", "not a list of ranks"),
    ("abc", "not a list of ranks"),
    ("", "not a list of ranks"),
    (",", "not a list of ranks"),
    ("1,x", "not a list of ranks"),
    ("1.5", "not a list of ranks"),
    ("1;2", "not a list of ranks"),
    ("1 2", "not a list of ranks"),
    ("١", "not a list of ranks"),  # a digit to int(), not a rank
    ("99", "no rank 99"),
    ("1,99", "no rank 99"),
    ("10001", "out of range"),
    (str(2**70), "out of range"),
    ("9" * 5000, "out of range"),
]


@pytest.mark.parametrize(
    ("rank", "expected"), RANKS, ids=[r if len(r) < 24 else f"{len(r)} digits" for r, _ in RANKS]
)
def test_bad_rank(capsys, lab, rank, expected):
    session, folder, out = lab
    expect_rejected(
        capsys,
        ["export", session, f"--rank={rank}", "-o", out / "p.json"],
        watch=[folder, out],
        contains=expected,
    )


DESTINATIONS = {
    "-o a directory": (["-o", "{out}"], "is a directory"),
    "-o in a missing folder": (["-o", "{out}/no/p.json"], "does not exist"),
    "-o under a file": (["-o", "{lab}/plain.txt/p.json"], "not a folder"),
    "-o the session itself": (["-o", "{session}"], "it is the session file"),
    "-o empty": (["-o", ""], "is a directory"),
    "--with-models at a file": (
        ["-o", "{out}/p.json", "--with-models", "{lab}/plain.txt"],
        "is a file, not a folder",
    ),
    "--with-models at the session": (
        ["-o", "{out}/p.json", "--with-models", "{session}"],
        "is a file, not a folder",
    ),
    "--with-models under a file": (
        ["-o", "{out}/p.json", "--with-models", "{lab}/plain.txt/models"],
        "is not a folder",
    ),
    "no -o": ([], "required: -o"),
}


@pytest.mark.parametrize("case", DESTINATIONS)
def test_bad_destination(capsys, lab, case):
    session, folder, out = lab
    args, expected = DESTINATIONS[case]
    args = [a.format(out=out, lab=folder, session=session) for a in args]
    expect_rejected(capsys, ["export", session, *args], watch=[folder, out], contains=expected)


OPTIONS = [
    (["--bw", "glasses-moon=5"], "moon"),
    (["--bw", "glasses-phone=0"], "> 0"),
    (["--bw", "glasses-phone=nan"], "glasses-phone"),
    (["--latency", "glasses-phone=-1"], "glasses-phone"),
    (["--model", "guessed"], "invalid choice"),
    (["--objective", "cheapest"], "invalid choice"),
    (["--memory", "glasses=0"], "memory"),
    (["--memory", "toaster=64"], "toaster"),
]


@pytest.mark.parametrize(("args", "expected"), OPTIONS)
def test_bad_ranking_option(capsys, lab, args, expected):
    session, folder, out = lab
    expect_rejected(
        capsys,
        ["export", session, "-o", out / "p.json", *args],
        watch=[folder, out],
        contains=expected,
    )


SESSIONS = {
    "missing": (lambda folder: folder / "nope.omdp", "no session"),
    "a directory": (lambda folder: folder, "is a directory"),
    "not a session": (lambda folder: folder / "plain.txt", "plain.txt"),
}


@pytest.mark.parametrize("case", SESSIONS)
def test_bad_session(capsys, lab, case):
    _, folder, out = lab
    where, expected = SESSIONS[case]
    expect_rejected(
        capsys,
        ["export", where(folder), "-o", out / "p.json"],
        watch=[folder, out],
        contains=expected,
    )


def test_model_changed_since_profiling(capsys, lab):
    session, folder, out = lab
    m = skip_model(seed=7)
    onnx.save(m, folder / "skip.onnx")
    expect_rejected(
        capsys,
        ["export", session, "-o", out / "p.json", "--with-models", out / "models"],
        watch=[folder, out],
        contains="skip.onnx",
    )


def test_json_into_a_read_only_folder(capsys, lab, tmp_path):
    session, folder, _ = lab
    with read_only_folder(tmp_path / "ro") as ro:
        expect_rejected(
            capsys,
            ["export", session, "-o", ro / "p.json"],
            watch=[folder, ro],
            contains="read-only",
        )


@pytest.mark.parametrize("inside", [False, True])
def test_models_into_a_read_only_folder(capsys, lab, tmp_path, inside):
    """Straight into it, or into a folder to be made inside it."""
    session, folder, out = lab
    with read_only_folder(tmp_path / "ro") as ro:
        models = ro / "models" if inside else ro
        expect_rejected(
            capsys,
            ["export", session, "-o", out / "p.json", "--with-models", models],
            watch=[folder, out, ro],
            contains="read-only",
        )


def test_read_only_session_writes_no_json(capsys, tmp_path):
    """Export records the partitions in the session: a read-only one is refused before the
    JSON is written, not after."""
    work, out = tmp_path / "work", tmp_path / "out"
    work.mkdir()
    out.mkdir()
    model = work / "skip.onnx"
    session = make_session(work, model)
    with read_only_folder(tmp_path / "ro", {"s.omdp": session.read_bytes()}) as ro:
        session.unlink()  # only the read-only copy is left
        expect_rejected(
            capsys,
            ["export", ro / "s.omdp", "-o", out / "p.json"],
            watch=[ro, out, work],
            contains="read-only",
        )
