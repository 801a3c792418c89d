"""Bad devices.toml files: each one is refused on one line (file:line, what, fix), nothing
is written, and `omdp devices check` never gets as far as reaching a device.

Types, ranges, unknown keys, duplicate and ambiguous names, links that do not join
consecutive devices, ssh fields on local devices, huge values, broken TOML, and files that
are not devices files at all (empty, a folder, binary, a FIFO, too large).
"""

from __future__ import annotations

import os

import pytest

from backend.chain import MAX_CPU, MAX_FILE_BYTES, MAX_NAME, MAX_THREADS

from .harness import expect_rejected

A = '[[device]]\nname = "a"\n'
AB = A + '\n[[device]]\nname = "b"\n'
ABC = AB + '\n[[device]]\nname = "c"\n'


def device(*lines: str, name: str = '"a"') -> str:
    return "[[device]]\nname = " + name + "\n" + "".join(f"{ln}\n" for ln in lines)


def link(*lines: str, src: str = "a", dst: str = "b", bw: str | None = "10") -> str:
    body = [f'from = "{src}"', f'to = "{dst}"'] + ([f"bandwidth_mbps = {bw}"] if bw else [])
    return ABC + "\n[[link]]\n" + "".join(f"{ln}\n" for ln in [*body, *lines])


CASES = [
    # -- types ---------------------------------------------------------------------------
    ("name-not-string", "[[device]]\nname = 5\n", "name must be a string"),
    ("threads-string", device('threads = "two"'), "threads must be an integer"),
    ("threads-float", device("threads = 1.5"), "threads must be an integer"),
    ("threads-bool", device("threads = true"), "threads must be an integer"),
    ("threads-table", device("threads = {n = 1}"), "threads must be an integer"),
    ("gflops-string", device('gflops = "fast"'), "gflops must be a number"),
    ("cpus-float", device("cpus = 1.5"), "cpus must be"),
    ("cpus-bool", device("cpus = true"), "cpus must be"),
    ("providers-string", device('providers = "CPU"'), "providers must be a list"),
    ("runtime-number", device("runtime = 5"), "runtime must be a string"),
    ("kind-list", device('kind = ["local"]'), "kind must be a string"),
    ("inter-threads-table", device("inter_threads = {a = 1}"), "inter_threads must be"),
    ("link-bandwidth-string", link(bw='"fast"'), "bandwidth_mbps must be a number"),
    ("link-from-number", ABC + '\n[[link]]\nfrom = 1\nto = "b"\n', "from must be a string"),
    ("link-latency-list", link("latency_ms = [1]"), "latency_ms must be a number"),
    ("cpus-mixed-list", device('cpus = [0, "1"]'), "not a list of CPU numbers"),
    # -- ranges --------------------------------------------------------------------------
    ("threads-zero", device("threads = 0"), "threads must be at least 1, not 0"),
    ("threads-negative", device("threads = -1"), "threads must be at least 1"),
    ("threads-2^63-1", device("threads = 9223372036854775807"), f"at most {MAX_THREADS}"),
    (
        "threads-beyond-64-bit",
        device("threads = 99999999999999999999999"),
        f"threads must be at most {MAX_THREADS}",
    ),
    ("inter-threads-huge", device("inter_threads = 5000"), "inter_threads must be at most"),
    ("gflops-zero", device("gflops = 0"), "gflops must be a positive finite number"),
    ("gflops-negative", device("gflops = -3"), "gflops must be a positive finite number"),
    ("gflops-inf", device("gflops = inf"), "gflops must be a positive finite number"),
    ("gflops-nan", device("gflops = nan"), "gflops must be a positive finite number"),
    ("gflops-huge-int", device("gflops = " + "9" * 400), "gflops must be a positive finite"),
    ("cpus-range-4e9", device('cpus = "0-4000000000"'), f"beyond CPU {MAX_CPU}"),
    ("cpus-list-4e9", device("cpus = [4000000000]"), f"beyond CPU {MAX_CPU}"),
    ("cpus-int-huge", device("cpus = 99999999999999999999"), f"beyond CPU {MAX_CPU}"),
    ("cpus-digits-huge", device('cpus = "' + "9" * 5000 + '"'), "not a CPU list"),
    ("cpus-negative", device("cpus = -1"), "not a list of CPU numbers"),
    ("cpus-backwards", device('cpus = "3-1"'), "goes backwards"),
    ("cpus-empty-string", device('cpus = ""'), "not a CPU list"),
    ("cpus-empty-list", device("cpus = []"), "not a list of CPU numbers"),
    ("cpus-letters", device('cpus = "a,b"'), "not a CPU list"),
    ("link-bandwidth-zero", link(bw="0"), "bandwidth_mbps must be a positive finite"),
    ("link-bandwidth-negative", link(bw="-5"), "bandwidth_mbps must be a positive finite"),
    ("link-bandwidth-inf", link(bw="inf"), "bandwidth_mbps must be a positive finite"),
    ("link-bandwidth-nan", link(bw="nan"), "bandwidth_mbps must be a positive finite"),
    ("link-bandwidth-huge-int", link(bw="9" * 400), "bandwidth_mbps must be a positive"),
    ("link-latency-negative", link("latency_ms = -1"), "latency_ms must be a finite number"),
    ("link-latency-inf", link("latency_ms = inf"), "latency_ms must be a finite number"),
    ("link-latency-nan", link("latency_ms = nan"), "latency_ms must be a finite number"),
    ("link-latency-huge-int", link("latency_ms = " + "9" * 400), "latency_ms must be"),
    # -- unknown keys --------------------------------------------------------------------
    ("device-typo", device("thread = 2"), "unknown field 'thread' (did you mean 'threads'?)"),
    ("device-password", device('password = "x"'), "unknown field 'password'"),
    ("device-key-newline", device('"thr\\neads" = 1'), "unknown field 'thr\\neads'"),
    ("device-key-escape", device('"\\u001b[2J" = 1'), "unknown field '\\x1b[2J'"),
    ("link-typo", link("bw = 1"), "unknown field 'bw'"),
    ("section-typo", A + "\n[devices]\nx = 1\n", "unknown section 'devices'"),
    ("top-level-key", 'name = "x"\n' + A, "unknown section 'name'"),
    # -- names ---------------------------------------------------------------------------
    ("duplicate-name", A + A, "the name is already used on line 1"),
    ("duplicate-after-strip", A + '[[device]]\nname = " a "\n', "already used"),
    (
        "ambiguous-link-names",
        device() + device(name='"b-c"') + device(name='"a-b"') + device(name='"c"'),
        "the link name 'a-b-c' would mean two links",
    ),
    ("name-with-equals", device(name='"a=b"'), "contains '='"),
    ("name-with-slash", device(name='"a/b"'), "contains '/'"),
    ("name-with-backslash", device(name='"a\\\\b"'), "contains '\\\\'"),
    ("name-with-newline", device(name='"a\\nb"'), "contains control characters"),
    ("name-with-escape", device(name='"\\u001b[31mred"'), "contains control characters"),
    ("name-with-tab", device(name='"a\\tb"'), "contains control characters"),
    ("name-empty", device(name='""'), "device #1: the name is empty"),
    ("name-blank", device(name='"   "'), "the name is empty"),
    (
        "name-too-long",
        device(name='"' + "x" * (MAX_NAME + 1) + '"'),
        f"longer than {MAX_NAME} characters",
    ),
    ("name-huge", device(name='"' + "x" * 100_000 + '"'), f"longer than {MAX_NAME}"),
    ("no-name", "[[device]]\nthreads = 1\n", "no name"),
    # -- links ---------------------------------------------------------------------------
    ("link-skips-a-device", link(dst="c"), "links connect consecutive devices"),
    ("link-backwards", link(src="b", dst="a"), "links connect consecutive devices"),
    ("link-to-itself", link(src="a", dst="a"), "links connect consecutive devices"),
    ("link-unknown-device", link(dst="z"), "no device named 'z'"),
    (
        "link-twice",
        link() + '\n[[link]]\nfrom = "a"\nto = "b"\nbandwidth_mbps = 3\n',
        "is given twice",
    ),
    ("link-no-from", ABC + '\n[[link]]\nto = "b"\nbandwidth_mbps = 1\n', "no 'from'"),
    ("link-no-bandwidth", link(bw=None), "no bandwidth_mbps"),
    ("link-not-a-table", "link = 5\n" + ABC, "'link' must be [[link]] tables"),
    # -- ssh fields on local devices, runtime options that do not apply ------------------
    ("host-on-local", device('host = "pi.local"'), 'host only applies to kind = "ssh"'),
    ("port-on-local", device("port = 22"), "port only applies"),
    ("identity-on-local", device('identity = "~/.ssh/id"'), "identity only applies"),
    ("timeout-on-local", device("connect_timeout = 5"), "connect_timeout only applies"),
    ("address-on-local", device('address = "10.0.0.2"'), "address only applies"),
    ("python-blank-on-local", device('python = "  "'), "python must be an interpreter command"),
    (
        "ssh-port-huge",
        device('kind = "ssh"', 'host = "h"', "port = 1180591620717411303424"),
        "port must be at most 65535",
    ),
    (
        "ssh-timeout-nan",
        device('kind = "ssh"', 'host = "h"', "connect_timeout = nan"),
        "connect_timeout",
    ),
    ("ssh-without-host", device('kind = "ssh"'), "ssh device needs `host`"),
    (
        "openvino-with-providers",
        device('runtime = "openvino"', 'providers = ["CPU"]'),
        "providers is an option of onnxruntime",
    ),
    (
        "onnxruntime-with-precision",
        device('precision = "f32"'),
        "precision is an option of openvino",
    ),
    ("runtime-unknown", device('runtime = "tensorrt"'), "runtime 'tensorrt' is unknown"),
    ("graph-opt-unknown", device('graph_opt = "max"'), "graph_opt 'max' is unknown"),
    ("kind-unknown", device('kind = "docker"'), "kind 'docker' is unknown"),
    ("providers-empty", device("providers = []"), "providers must be a list of names"),
    ("providers-blank", device('providers = [""]'), "providers must be a list of names"),
    ("providers-escape", device('providers = ["\\u001b[2J"]'), "providers must be a list"),
    # -- broken TOML and files that hold no chain ----------------------------------------
    ("toml-header", '[[device]\nname = "a"\n', "invalid TOML"),
    ("toml-unterminated", '[[device]]\nname = "a\n', "invalid TOML"),
    ("toml-duplicate-key", '[[device]]\nname = "a"\nname = "b"\n', "invalid TOML"),
    ("toml-nul", '[[device]]\nname = "a\x00"\n', "invalid TOML"),
    ("device-not-array", "device = 5\n", "no devices"),
    ("device-single-table", '[device]\nname = "a"\n', "no devices"),
    ("device-list-of-ints", "device = [1, 2]\n", "each device must be a [[device]] table"),
    ("empty-file", "", "no devices"),
    ("comments-only", "# a chain\n# nothing here\n", "no devices"),
    ("links-only", '[[link]]\nfrom = "a"\nto = "b"\nbandwidth_mbps = 1\n', "no devices"),
]


@pytest.mark.parametrize(("text", "contains"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_devices_file(capsys, tmp_path, text, contains):
    path = tmp_path / "devices.toml"
    path.write_text(text, encoding="utf-8")
    line = expect_rejected(capsys, ["devices", "check", path], watch=[tmp_path], contains=contains)
    assert str(path) in line


BINARY = [
    ("png", b"\x89PNG\r\n\x1a\n" + bytes(range(256)), "is not a text file"),
    ("latin-1", '[[device]]\nname = "café"\n'.encode("latin-1"), "is not a text file"),
    ("utf-16", '[[device]]\nname = "a"\n'.encode("utf-16"), "is not a text file"),
    ("too-large", A + ("#" * 80 + "\n") * (MAX_FILE_BYTES // 80), "larger than 1 MiB"),
]


@pytest.mark.parametrize(("data", "contains"), [b[1:] for b in BINARY], ids=[b[0] for b in BINARY])
def test_file_that_is_not_a_devices_file(capsys, tmp_path, data, contains):
    path = tmp_path / "devices.toml"
    path.write_bytes(data if isinstance(data, bytes) else data.encode())
    expect_rejected(capsys, ["devices", "check", path], watch=[tmp_path], contains=contains)


def test_folder_missing_file_fifo_and_device(capsys, tmp_path):
    (tmp_path / "chain").mkdir()
    expect_rejected(
        capsys,
        ["devices", "check", tmp_path / "chain"],
        watch=[tmp_path],
        contains="is a directory",
    )
    expect_rejected(
        capsys,
        ["devices", "check", tmp_path / "nope.toml"],
        watch=[tmp_path],
        contains="no devices file",
    )
    fifo = tmp_path / "fifo.toml"
    os.mkfifo(fifo)  # reading it would wait for a writer forever
    expect_rejected(
        capsys, ["devices", "check", fifo], watch=[tmp_path], contains="not a regular file"
    )
    expect_rejected(
        capsys, ["devices", "check", "/dev/zero"], watch=[tmp_path], contains="not a regular file"
    )
