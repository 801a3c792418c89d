"""devices.toml: parsing, validation with line numbers, link defaults, CPU lists."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from backend.chain import (
    Chain,
    DeviceSpec,
    LinkSpec,
    link_names,
    load_devices,
    parse_cpus,
    parse_devices,
)
from backend.errors import OmdpError

ROOT = Path(__file__).resolve().parents[1]

GOOD = """\
[[device]]
name = "glasses"
threads = 1

[[device]]
name = "phone"
runtime = "onnxrt"
"""


def error_of(text: str) -> str:
    with pytest.raises(OmdpError) as err:
        parse_devices(text, "devices.toml")
    return str(err.value)


def test_the_example_file_loads():
    chain = load_devices(ROOT / "examples" / "devices.toml")
    assert chain.names == ["glasses", "phone", "cloud"]
    assert [d.runtime for d in chain.devices] == ["onnxruntime", "openvino", "onnxruntime"]
    assert [(lk.src, lk.dst, lk.bandwidth_mbps, lk.default) for lk in chain.links] == [
        ("glasses", "phone", 20.0, False),
        ("phone", "cloud", 100.0, False),
    ]
    assert chain.warnings == []
    phone = chain.device("phone")
    cfg = phone.runtime_config()
    assert (cfg.name, cfg.precision, cfg.ov_device, cfg.threads) == ("openvino", "f32", "CPU", 1)
    assert chain.device("glasses").line == 6


def test_unknown_runtime_names_the_line_and_the_fix():
    assert error_of(GOOD) == (
        "devices.toml:7: device 'phone': runtime 'onnxrt' is unknown (use onnxruntime or openvino)"
    )


@pytest.mark.parametrize(
    "text, expected",
    [
        (
            '[[device]]\nname = "a"\nthread = 2\n',
            "devices.toml:3: device 'a': unknown field 'thread' (did you mean 'threads'?)",
        ),
        (
            '[[device]]\nname = "a"\n\n[[device]]\nname = "a"\n',
            "devices.toml:5: device 'a': the name is already used on line 1 (names must be unique)",
        ),
        (
            '[[device]]\nname = "a"\nthreads = "two"\n',
            "devices.toml:3: device 'a': threads must be an integer, not 'two'",
        ),
        (
            '[[device]]\nname = "a"\nthreads = 0\n',
            "devices.toml:3: device 'a': threads must be at least 1, not 0",
        ),
        (
            '[[device]]\nname = "a"\nkind = "ssh"\n',
            "devices.toml:1: device 'a': ssh device needs `host`",
        ),
        (
            '[[device]]\nname = "a"\nkind = "tcp"\n',
            "devices.toml:3: device 'a': kind 'tcp' is unknown (use local or ssh)",
        ),
        (
            '[[device]]\nname = "a"\nhost = "x"\n',
            "devices.toml:3: device 'a': host only applies to kind = \"ssh\" (remove it)",
        ),
        (
            '[[device]]\nname = "a"\nprecision = "f16"\n',
            "devices.toml:3: device 'a': precision is an option of openvino, not onnxruntime "
            "(remove it or change runtime)",
        ),
        (
            '[[device]]\nname = "a"\nruntime = "openvino"\nprecision = "f8"\n',
            "devices.toml:4: device 'a': precision 'f8' is unknown (use f32 or f16 or bf16)",
        ),
        (
            '[[device]]\nname = "a"\ncpus = "1-0"\n',
            "devices.toml:3: device 'a': cpus range '1-0' goes backwards",
        ),
        (
            '[[device]]\nname = "a"\ncpus = [4095]\n',
            "devices.toml:3: device 'a': cpu 4095 is not available on this machine",
        ),
        ("[[device]]\nthreads = 2\n", "devices.toml:1: device #1: no name"),
        ("# nothing\n", "devices.toml:1: no devices"),
        (
            '[[device]]\nname = "a"\n[timing]\nruns = 3\n',
            "devices.toml:3: unknown section 'timing'",
        ),
        ('[[device]]\nname = "a"\nthreads = \n', "devices.toml:3: invalid TOML"),
    ],
)
def test_device_errors(text, expected):
    assert error_of(text).startswith(expected)


LINKED = """\
[[device]]
name = "a"

[[device]]
name = "b"

[[device]]
name = "c"

[[link]]
from = "a"
to = "b"
bandwidth_mbps = {bw}
latency_ms = 3
{extra}
"""


@pytest.mark.parametrize(
    "bw, extra, expected",
    [
        (
            "0",
            "",
            "devices.toml:13: link 'a' → 'b': bandwidth_mbps must be a positive finite "
            "number, not 0",
        ),
        (
            '"abc"',
            "",
            "devices.toml:13: link 'a' → 'b': bandwidth_mbps must be a number, not 'abc'",
        ),
        (
            "10",
            '[[link]]\nfrom = "a"\nto = "c"\nbandwidth_mbps = 1\n',
            "devices.toml:15: link 'a' → 'c': links connect consecutive devices in chain order "
            "(a → b → c)",
        ),
        (
            "10",
            '[[link]]\nfrom = "b"\nto = "z"\nbandwidth_mbps = 1\n',
            "devices.toml:17: link 'b' → 'z': no device named 'z' (devices: a, b, c)",
        ),
        (
            "10",
            '[[link]]\nfrom = "a"\nto = "b"\nbandwidth_mbps = 1\n',
            "devices.toml:15: link 'a' → 'b' is given twice (first on line 10; keep one)",
        ),
        (
            "10",
            '[[link]]\nfrom = "b"\nto = "c"\nbw = 1\n',
            "devices.toml:18: link 'b' → 'c': unknown field 'bw'",
        ),
    ],
)
def test_link_errors(bw, extra, expected):
    assert error_of(LINKED.format(bw=bw, extra=extra)).startswith(expected)


def test_missing_links_get_defaults_and_a_warning():
    chain = parse_devices(LINKED.format(bw="25.5", extra=""), "devices.toml")
    assert [(lk.bandwidth_mbps, lk.latency_ms, lk.default) for lk in chain.links] == [
        (25.5, 3.0, False),
        (100.0, 0.0, True),
    ]
    assert chain.warnings == [
        "devices.toml: no [[link]] from 'b' to 'c': using 100 Mbit/s and 0 ms"
    ]


def test_missing_or_bad_files(tmp_path):
    with pytest.raises(OmdpError, match="no devices file"):
        load_devices(tmp_path / "nope.toml")
    with pytest.raises(OmdpError, match="directory"):
        load_devices(tmp_path)


def test_cpu_lists():
    assert parse_cpus("0-2,5") == [0, 1, 2, 5]
    assert parse_cpus([3, 1, 1]) == [1, 3]
    assert parse_cpus(2) == [2]
    for bad in ("a", [], [-1], [True]):
        with pytest.raises(ValueError):
            parse_cpus(bad)
    cpu = sorted(os.sched_getaffinity(0))[0]
    chain = parse_devices(f'[[device]]\nname = "a"\ncpus = "{cpu}"\n')
    assert chain.devices[0].cpus == [cpu]
    assert chain.devices[0].runtime_config().threads == 1  # one thread per pinned CPU


def test_specs_round_trip_and_chain_of():
    d = DeviceSpec("phone", runtime="openvino", precision="bf16", cpus=[0], gflops=3.0)
    assert DeviceSpec.from_dict(d.to_dict()) == d
    chain = Chain.of([DeviceSpec("a"), DeviceSpec("b")])
    assert chain.links[0].default and chain.names == ["a", "b"]
    plain = DeviceSpec("phone", runtime="openvino")
    assert d.runtime_config().key() != plain.runtime_config().key()


def test_link_names_are_unique_or_refused():
    assert link_names(["glasses", "jetson-nano", "cloud"]) == (
        "glasses-jetson-nano",
        "jetson-nano-cloud",
    )
    assert LinkSpec("a", "b-c").name == "a-b-c"
    assert Chain.of([DeviceSpec("a"), DeviceSpec("b")]).link_names == ("a-b",)
    with pytest.raises(
        OmdpError,
        match=r"'a-b-c' would mean two links \('a' → 'b-c' and "
        r"'a-b' → 'c'\)",
    ):
        link_names(["a", "b-c", "a-b", "c"])
