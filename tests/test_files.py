"""The atomic writer: whole or not at all, including on a full disk (RLIMIT_FSIZE)."""

import os
import resource
import signal

import pytest

from backend.errors import OmdpError
from backend.files import (
    atomic_open_all,
    atomic_write,
    atomic_write_with,
    check_writable,
    file_sha256,
)


def test_writes_whole_file_and_replaces(tmp_path):
    target = tmp_path / "a.bin"
    atomic_write(target, b"old")
    atomic_write(target, b"new contents")
    assert target.read_bytes() == b"new contents"
    assert [p.name for p in tmp_path.iterdir()] == ["a.bin"]


def test_failure_in_writer_leaves_old_file_and_no_temp(tmp_path):
    target = tmp_path / "a.bin"
    atomic_write(target, b"old")

    def boom(f):
        f.write(b"partial")
        raise RuntimeError("serialiser failed")

    with pytest.raises(RuntimeError):
        atomic_write_with(target, boom)
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.bin"]


def test_full_disk_is_one_line_and_leaves_nothing(tmp_path):
    """RLIMIT_FSIZE stands in for a full disk: the write fails with EFBIG."""
    target = tmp_path / "big.bin"
    pid = os.fork()
    if pid == 0:  # child: lower the limit only here
        code = 0
        try:
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            resource.setrlimit(resource.RLIMIT_FSIZE, (1000, 1000))
            atomic_write(target, b"x" * 5000)
            code = 3
        except OmdpError as exc:
            code = 0 if "too large" in str(exc) and "big.bin" in str(exc) else 4
        except BaseException:
            code = 5
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert list(tmp_path.iterdir()) == []


def test_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(OmdpError, match="does not exist"):
        atomic_write(tmp_path / "nope" / "a.bin", b"x")


def test_file_sha256(tmp_path):
    p = tmp_path / "f"
    p.write_bytes(b"abc")
    assert file_sha256(p) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


def test_files_written_together_appear_together(tmp_path):
    model, data = tmp_path / "m.onnx", tmp_path / "m.onnx.data"
    with atomic_open_all([model, data]) as (m, d):
        d.write(b"weights")
        m.write(b"graph")
        assert list(tmp_path.glob("m.onnx*")) == []  # nothing visible before the end
    assert model.read_bytes() == b"graph" and data.read_bytes() == b"weights"
    with pytest.raises(RuntimeError), atomic_open_all([model, data]) as (m, d):
        d.write(b"new weights")
        raise RuntimeError("the serialiser failed")
    assert model.read_bytes() == b"graph" and data.read_bytes() == b"weights"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx", "m.onnx.data"]


def test_a_long_file_name_still_gets_a_temporary_name(tmp_path):
    target = tmp_path / ("n" * 250)
    atomic_write(target, b"x")
    assert target.read_bytes() == b"x"


@pytest.mark.parametrize(
    ("where", "message"),
    [
        (lambda t: t, "is a directory"),
        (lambda t: t / "no" / "a.json", "does not exist"),
        (lambda t: t / "file" / "a.json", "is not a folder"),
    ],
)
def test_check_writable_says_why(tmp_path, where, message):
    (tmp_path / "file").write_text("x")
    with pytest.raises(OmdpError, match=message):
        check_writable(where(tmp_path))
    assert check_writable(tmp_path / "fine.json") == tmp_path / "fine.json"
