"""The device package (backend/device/) is what ships: real files, imports kept within what
a device has, nothing else of the project, and exactly those files are uploaded."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest
from source import parse_python

from backend.device import guard
from backend.remote.store import DEVICE_PACKAGE, device_bundle, package_files

DEVICE_HAS = set(sys.stdlib_module_names) | {"numpy", "onnx", "onnxruntime", "openvino"}
MODULES = sorted(p.stem for p in DEVICE_PACKAGE.glob("*.py"))


def imports_of(path: Path) -> tuple[set[str], set[str]]:
    """(top-level modules imported absolutely, sibling modules imported relatively)."""
    tree = parse_python(path)
    absolute: set[str] = set()
    relative: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            absolute |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                absolute.add((node.module or "").split(".")[0])
            elif node.module:
                relative.add(node.module.split(".")[0])
            else:
                relative |= {a.name for a in node.names}
    return absolute, relative


@pytest.mark.parametrize("name", MODULES)
def test_imports_stay_within_what_a_device_has(name: str):
    absolute, relative = imports_of(DEVICE_PACKAGE / f"{name}.py")
    siblings = set(MODULES)
    # a module may import its siblings by plain name (as plain files on a device) ...
    outside = absolute - DEVICE_HAS - siblings - {"__future__"}
    assert not outside, f"{name}.py imports {sorted(outside)}: not on a device"
    assert "backend" not in absolute, f"{name}.py imports the rest of the project"
    # ... or relatively (as backend.device.<name> in the lab), and only its siblings
    assert relative <= siblings, f"{name}.py imports {sorted(relative - siblings)} relatively"


def test_the_protocol_and_the_small_programs_need_only_the_standard_library():
    for name in ("protocol", "guard", "probe", "linkhelper", "cache"):
        absolute, relative = imports_of(DEVICE_PACKAGE / f"{name}.py")
        # the probe lists the providers / devices of a runtime, if there is one
        optional = {"onnxruntime", "openvino"} if name == "probe" else set()
        assert absolute <= set(sys.stdlib_module_names) | {"__future__"} | optional, name
        assert not relative, name


def test_the_probe_imports_a_runtime_only_inside_a_function_that_survives_its_absence():
    tree = parse_python(DEVICE_PACKAGE / "probe.py")
    top = {
        a.name.split(".")[0]
        for node in tree.body
        if isinstance(node, ast.Import | ast.ImportFrom)
        for a in (node.names if isinstance(node, ast.Import) else [ast.alias(node.module or "")])
    }
    assert top <= set(sys.stdlib_module_names), top
    (accelerators,) = [
        n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "accelerators"
    ]
    assert isinstance(accelerators.body[1], ast.Try)  # after the docstring: all in a try


def test_the_probe_parses_as_python_3_6_so_it_can_report_an_old_python():
    parse_python(DEVICE_PACKAGE / "probe.py", feature_version=(3, 6))


def test_what_ships_is_exactly_the_package():
    on_disk = sorted(p.name for p in DEVICE_PACKAGE.iterdir() if p.suffix == ".py")
    assert [p.name for p in package_files()] == on_disk
    bundle = device_bundle()
    assert bundle.names == on_disk
    assert all(data == (DEVICE_PACKAGE / name).read_bytes() for name, data in bundle.files)
    # the guard on the device checks a folder against the digest the lab named it by
    assert guard.folder_digest(str(DEVICE_PACKAGE)) == bundle.digest


def test_a_changed_file_changes_the_digest(tmp_path: Path):
    for path in package_files():
        (tmp_path / path.name).write_bytes(path.read_bytes())
    assert guard.folder_digest(str(tmp_path)) == device_bundle().digest
    with (tmp_path / "agent.py").open("a") as f:
        f.write("\n# altered\n")
    assert guard.folder_digest(str(tmp_path)) != device_bundle().digest
