"""The engine must stay importable and usable without any UI."""

import ast
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_backend_source_never_imports_textual():
    offenders = []
    for path in (ROOT / "backend").rglob("*.py"):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            names += [
                n.args[0].value
                for n in [node]
                if isinstance(n, ast.Call)
                and getattr(n.func, "attr", getattr(n.func, "id", "")) == "import_module"
                and n.args
                and isinstance(n.args[0], ast.Constant)
            ]
            for name in names:
                if name.split(".")[0] in {"textual", "omdp_tui", "rich"}:
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno} imports {name}")
    assert offenders == []


def test_headless_cli_does_not_load_textual():
    code = (
        "import sys, backend.cli as c; c.build_parser(); "
        "import omdp_tui.main; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'textual'))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
