"""Bad inputs to `omdp lab up|status|down`: each is refused with one line, before anything
is created (no lab folder, no namespace, no file changed).

The lab needs root; these cases run as whatever user runs the tests: every one of them is
refused before the privilege check matters, except the privilege cases themselves (which
simulate a process without the capabilities).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from backend.lab import host, layout, state
from backend.lab.spec import MAX_DEVICES

from .harness import expect_rejected

TWO = """\
[[device]]
name = "a"
{lab}
[[device]]
name = "b"

[[link]]
from = "a"
to = "b"
bandwidth_mbps = {bw}
latency_ms = {lat}
"""


@pytest.fixture(autouse=True)
def no_lab_left(tmp_path: Path):
    """A case that wrongly succeeded (as root) would leave a lab running: take it down."""
    yield
    from backend.lab import lifecycle, netns

    folder = tmp_path / "lab"
    if folder.is_dir() and any(
        layout.owned_namespace(layout.lab_id(folder), n) for n in netns.names()
    ):
        lifecycle.down(folder)


def chain(tmp_path: Path, lab: str = "", bw: object = 20, lat: object = 5) -> Path:
    p = tmp_path / "chain.toml"
    p.write_text(TWO.format(lab=lab, bw=bw, lat=lat))
    return p


def up(
    tmp_path: Path,
    capsys,
    chain_file: Path,
    contains: str | None = None,
    folder: Path | None = None,
) -> str:
    folder = folder or tmp_path / "lab"
    line = expect_rejected(
        capsys, ["lab", "up", chain_file, "--dir", folder], watch=[tmp_path], contains=contains
    )
    assert not folder.exists() or folder.is_file() or any(folder.iterdir()), (
        "a rejected `lab up` created the lab folder"
    )
    return line


LAB_TABLES = {
    # [device.lab] itself
    "not-a-table": ("lab = 5", "must be a table"),
    "a-string": ('lab = "cpu=0.25"', "must be a table"),
    "a-list": ("lab = [0.25]", "must be a table"),
    "typo": ("[device.lab]\ncpuu = 0.25", "did you mean 'cpu'"),
    "memory-typo": ("[device.lab]\nmemory = 512", "did you mean 'memory_mib'"),
    "chain-field": ("[device.lab]\nthreads = 2", "unknown field 'threads'"),
    "inline-typo": ("lab = { pyhton = 'python3' }", "did you mean 'python'"),
    # cpu
    "cpu-zero": ("[device.lab]\ncpu = 0", "cpu must be a share"),
    "cpu-negative": ("[device.lab]\ncpu = -0.25", "cpu must be a share"),
    "cpu-tiny": ("[device.lab]\ncpu = 0.001", "cpu must be a share"),
    "cpu-nan": ("[device.lab]\ncpu = nan", "cpu must be a share"),
    "cpu-inf": ("[device.lab]\ncpu = inf", "cpu must be a share"),
    "cpu-string": ('[device.lab]\ncpu = "0.25"', "cpu must be a share"),
    "cpu-bool": ("[device.lab]\ncpu = true", "cpu must be a share"),
    "cpu-list": ("[device.lab]\ncpu = [0.25]", "cpu must be a share"),
    "cpu-more-than-machine": ("[device.lab]\ncpu = 4096", "cpu must be a share"),
    "cpu-huge": ("[device.lab]\ncpu = 1e308", "cpu must be a share"),
    "cpu-over-cpus": ('[device.lab]\ncpu = 1.5\ncpus = "0"', "more than the 1 CPU"),
    # cpus
    "cpus-billions": ('[device.lab]\ncpus = "0-4000000000"', "does not exist"),
    "cpus-absent": ('[device.lab]\ncpus = "4095"', "does not exist"),
    "cpus-int-absent": ("[device.lab]\ncpus = 4095", "does not exist"),
    "cpus-list-absent": ("[device.lab]\ncpus = [0, 4095]", "does not exist"),
    "cpus-long-list": ("[device.lab]\ncpus = [" + ", ".join(["0"] * 5000) + "]", "lists 5000"),
    "cpus-word": ('[device.lab]\ncpus = "all"', "not a CPU list"),
    "cpus-backwards": ('[device.lab]\ncpus = "1-0"', "goes backwards"),
    "cpus-empty-list": ("[device.lab]\ncpus = []", "not a list of CPU numbers"),
    "cpus-negative": ("[device.lab]\ncpus = [-1]", "not a list of CPU numbers"),
    "cpus-strings": ('[device.lab]\ncpus = ["0"]', "not a list of CPU numbers"),
    "cpus-bool": ("[device.lab]\ncpus = true", "not a list of CPU numbers"),
    "cpus-float": ("[device.lab]\ncpus = 0.5", "not a list of CPU numbers"),
    "cpus-empty-string": ('[device.lab]\ncpus = ""', "not a CPU list"),
    "agent-pinned-outside": ('cpus = [0]\n[device.lab]\ncpus = "1"', "not in its lab cpus"),
    "cpus-huge-digits": ('[device.lab]\ncpus = "' + "9" * 400 + '"', "does not exist"),
    # memory_mib
    "memory-zero": ("[device.lab]\nmemory_mib = 0", "memory_mib must be"),
    "memory-small": ("[device.lab]\nmemory_mib = 10", "memory_mib must be"),
    "memory-negative": ("[device.lab]\nmemory_mib = -512", "memory_mib must be"),
    "memory-float": ("[device.lab]\nmemory_mib = 512.5", "memory_mib must be"),
    "memory-string": ('[device.lab]\nmemory_mib = "512"', "memory_mib must be"),
    "memory-bool": ("[device.lab]\nmemory_mib = true", "memory_mib must be"),
    "memory-beyond-ram": ("[device.lab]\nmemory_mib = 1073741824", "memory_mib must be"),
    "memory-2^70": ("[device.lab]\nmemory_mib = 1180591620717411303", "memory_mib must be"),
    # python
    "python-empty": ('[device.lab]\npython = ""', "python must be"),
    "python-blank": ('[device.lab]\npython = "   "', "python must be"),
    "python-number": ("[device.lab]\npython = 3.8", "python must be"),
    "python-missing": ('[device.lab]\npython = "python-omdp-nowhere"', "not an executable"),
    "python-bad-path": ('[device.lab]\npython = "/nonexistent/bin/python3"', "not an executable"),
    "python-not-executable": ('[device.lab]\npython = "{tmp}/notes.txt"', "not an executable"),
    "python-newline": ('[device.lab]\npython = "python3\\nrm"', "python must be"),
    "python-folder": ('[device.lab]\npython = "/usr/bin"', "not an executable"),
}


@pytest.mark.parametrize("lab,words", LAB_TABLES.values(), ids=LAB_TABLES.keys())
def test_lab_table(tmp_path: Path, capsys, lab: str, words: str) -> None:
    (tmp_path / "notes.txt").write_text("not a program\n")
    line = up(tmp_path, capsys, chain(tmp_path, lab.replace("{tmp}", str(tmp_path))), words)
    assert "chain.toml:" in line and "device 'a'" in line  # where, and which device


LINKS = {
    "rate-too-low": (0.05, 5, "shapes 0.1 to 300"),
    "rate-too-high": (5000, 5, "shapes 0.1 to 300"),
    "rate-huge": (1e300, 5, "shapes 0.1 to 300"),
    "latency-too-high": (20, 1500, "latencies up to 1000"),
    "latency-huge": (20, 1e300, "latencies up to 1000"),
    "rate-zero": (0, 5, "positive"),
    "rate-nan": ("nan", 5, "positive"),
    "rate-string": ('"fast"', 5, "must be a number"),
    "latency-negative": (20, -1, "0 or more"),
    "latency-inf": (20, "inf", "0 or more"),
}


@pytest.mark.parametrize("bw,lat,words", LINKS.values(), ids=LINKS.keys())
def test_links_the_lab_cannot_emulate(tmp_path: Path, capsys, bw, lat, words: str) -> None:
    up(tmp_path, capsys, chain(tmp_path, bw=bw, lat=lat), words)


DEVICE_FILES = {
    "missing": (None, "no devices file"),
    "folder": ("", "is a directory"),
    "binary": (b"\xff\xfe\x00garbage", "not a text file"),
    "invalid-toml": ("[[device]\nname = 'a'", "invalid TOML"),
    "no-devices": ("# nothing\n", "no devices"),
    "unknown-field": ("[[device]]\nname = 'a'\nthread = 1\n", "did you mean 'threads'"),
    "unknown-section": ("[lab]\ncpu = 1\n[[device]]\nname = 'a'\n", "unknown section"),
    "duplicate-names": ("[[device]]\nname = 'a'\n[[device]]\nname = 'a'\n", "already used"),
    "non-consecutive-link": (
        TWO.format(lab="", bw=5, lat=1).replace('to = "b"', 'to = "a"'),
        "consecutive",
    ),
}


@pytest.mark.parametrize("content,words", DEVICE_FILES.values(), ids=DEVICE_FILES.keys())
def test_devices_file(tmp_path: Path, capsys, content, words: str) -> None:
    p = tmp_path / "chain.toml"
    if content == "":
        p.mkdir()
    elif isinstance(content, bytes):
        p.write_bytes(content)
    elif content is not None:
        p.write_text(content)
    up(tmp_path, capsys, p, words)


def test_too_many_devices(tmp_path: Path, capsys) -> None:
    p = tmp_path / "chain.toml"
    p.write_text(
        "".join(f"[[device]]\nname = 'd{i}'\n" for i in range(MAX_DEVICES + 1))
        + "".join(
            f"[[link]]\nfrom = 'd{i}'\nto = 'd{i + 1}'\nbandwidth_mbps = 10\n"
            for i in range(MAX_DEVICES)
        )
    )
    up(tmp_path, capsys, p, f"at most {MAX_DEVICES}")


@pytest.mark.parametrize(
    "name,words",
    [
        ("file", "is a file"),
        ('with"quote', "line break or a quote"),
        ("with\nnewline", "line break or a quote"),
        ("with\rreturn", "line break or a quote"),
    ],
)
def test_lab_folder(tmp_path: Path, capsys, name: str, words: str) -> None:
    folder = tmp_path / name
    if name == "file":
        folder.write_text("not a folder")
    up(tmp_path, capsys, chain(tmp_path), words, folder=folder)


def test_folder_that_cannot_be_made(tmp_path: Path, capsys) -> None:
    expect_rejected(
        capsys,
        ["lab", "up", chain(tmp_path), "--dir", "/proc/omdp-lab/x"],
        watch=[tmp_path],
        contains="cannot create the lab folder",
    )


def lab_state(folder: Path, change: dict | None = None) -> None:
    """A lab.json as a lab of the two-device chain "other.toml" would leave, with `change`."""
    folder.mkdir()
    st = state.LabState(
        str(folder),
        layout.lab_id(folder),
        "0" * 16,
        "other.toml",
        "relay",
        1,
        "10.200.9.0/24",
        "root",
        [state.DeviceState("a"), state.DeviceState("b")],
        [state.LinkState("a", "b", 20.0, 5.0)],
    )
    data = json.loads(st.to_json())
    data.update(change or {})
    (folder / "lab.json").write_text(json.dumps(data))


def test_folder_holds_another_chain(tmp_path: Path, capsys) -> None:
    lab_state(tmp_path / "lab")
    up(tmp_path, capsys, chain(tmp_path), "holds a lab of another chain")


DAMAGED = {
    "format": {"format": 99},
    "lab-id": {"lab_id": "000000"},
    "moved": {"folder": "/somewhere/else"},
    "method": {"latency": "magic"},
    "network": {"mgmt_net": "0.0.0.0/0"},
    "devices": {"devices": "a,b"},
    "links": {"links": None},
    "user": {"user": ""},
}


@pytest.mark.parametrize("verb", ["up", "status"])
@pytest.mark.parametrize("change", DAMAGED.values(), ids=DAMAGED.keys())
def test_damaged_state(tmp_path: Path, capsys, verb: str, change: dict) -> None:
    folder = tmp_path / "lab"
    lab_state(folder, change)
    args = (
        ["lab", "up", chain(tmp_path), "--dir", folder]
        if verb == "up"
        else ["lab", "status", folder]
    )
    expect_rejected(capsys, args, watch=[tmp_path], contains="is damaged")


@pytest.mark.parametrize("text", ["", "{", "null", "[1, 2]", "\x00\x01"])
def test_unreadable_state(tmp_path: Path, capsys, text: str) -> None:
    folder = tmp_path / "lab"
    folder.mkdir()
    (folder / "lab.json").write_text(text)
    expect_rejected(capsys, ["lab", "status", folder], watch=[tmp_path], contains="damaged")


@pytest.mark.parametrize("what", ["missing", "empty", "file"])
def test_status_without_a_lab(tmp_path: Path, capsys, what: str) -> None:
    folder = tmp_path / "lab"
    if what == "empty":
        folder.mkdir()
    elif what == "file":
        folder.write_text("x")
    expect_rejected(
        capsys,
        ["lab", "status", folder],
        watch=[tmp_path],
        contains="is a file" if what == "file" else "no lab in",
    )


def test_down_on_a_file(tmp_path: Path, capsys) -> None:
    (tmp_path / "lab").write_text("x")
    expect_rejected(
        capsys, ["lab", "down", tmp_path / "lab"], watch=[tmp_path], contains="is a file"
    )


@pytest.mark.parametrize("verb", ["up", "status", "down"])
def test_without_privileges(tmp_path: Path, capsys, monkeypatch, verb: str) -> None:
    monkeypatch.setattr(host, "effective_caps", lambda status_text=None: 0)
    (tmp_path / "lab").mkdir()
    args = {
        "up": ["lab", "up", chain(tmp_path), "--dir", tmp_path / "lab"],
        "status": ["lab", "status", tmp_path / "lab"],
        "down": ["lab", "down", tmp_path / "lab"],
    }[verb]
    line = expect_rejected(capsys, args, watch=[tmp_path], contains="needs root")
    assert "CAP_NET_ADMIN" in line and "omdp demo" in line


@pytest.mark.parametrize("verb", ["up", "status", "down"])
def test_without_tools(tmp_path: Path, capsys, monkeypatch, verb: str) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    monkeypatch.setattr(host, "SBIN_DIRS", ())
    (tmp_path / "lab").mkdir()
    args = {
        "up": ["lab", "up", chain(tmp_path), "--dir", tmp_path / "lab"],
        "status": ["lab", "status", tmp_path / "lab"],
        "down": ["lab", "down", tmp_path / "lab"],
    }[verb]
    expect_rejected(capsys, args, watch=[tmp_path], contains="apt-get install -y iproute2")


@pytest.mark.parametrize(
    "args",
    [
        ["lab"],
        ["lab", "up"],
        ["lab", "up", "chain.toml"],
        ["lab", "frobnicate"],
        ["lab", "status"],
        ["lab", "down"],
        ["lab", "down", "a", "b"],
        ["lab", "up", "chain.toml", "--dir"],
        ["lab", "status", "x", "--jsn"],
    ],
)
def test_arguments(tmp_path: Path, capsys, monkeypatch, args: list[str]) -> None:
    monkeypatch.chdir(tmp_path)  # and back afterwards: later tests do not run from here
    expect_rejected(capsys, args, watch=[tmp_path])
