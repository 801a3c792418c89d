"""The engine must stay importable and usable without any UI."""

import ast
import pathlib
import subprocess
import sys

from source import parse_python

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_backend_source_never_imports_textual():
    offenders = []
    for path in (ROOT / "backend").rglob("*.py"):
        tree = parse_python(path)
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


def _module_imports() -> dict[str, set[str]]:
    """Every project module → the project modules it imports at module level."""
    modules = {}
    for top in ("backend", "omdp_tui"):
        for path in (ROOT / top).rglob("*.py"):
            rel = path.relative_to(ROOT).with_suffix("")
            name = ".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)
            modules[name] = path
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        found = set()
        for node in parse_python(path).body:  # module level only
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*parts, base] if base else parts)
                targets = [f"{base}.{a.name}" for a in node.names] + [base]
            for t in targets:
                while t and t not in modules:
                    t = t.rpartition(".")[0]
                if t and t != name and not name.startswith(t + "."):
                    found.add(t)
        graph[name] = found
    return graph


def test_no_import_cycles():
    import networkx as nx

    cycles = list(nx.simple_cycles(nx.DiGraph(_module_imports())))
    assert cycles == [], f"import cycles: {cycles[:5]}"


def test_help_imports_no_heavy_library():
    """`omdp --help` lists every verb without importing onnx, numpy, pandas or asyncssh."""
    code = (
        "import sys, contextlib, io\n"
        "from omdp_tui.main import main\n"
        "with contextlib.redirect_stdout(io.StringIO()) as out:\n"
        "    try: main(['--help'])\n"
        "    except SystemExit: pass\n"
        "heavy = {'onnx', 'numpy', 'pandas', 'asyncssh', 'textual', 'onnxruntime', 'openvino'}\n"
        "print(sorted(heavy & {m.split('.')[0] for m in sys.modules}))\n"
        "print(all(v in out.getvalue() for v in ('inspect', 'profile', 'links', 'demo')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["[]", "True"]


def test_running_a_verb_imports_only_that_verb():
    code = (
        "import sys\n"
        "from backend.cli import VERBS, build_parser\n"
        "build_parser(None, ['sessions', '--json'])\n"
        "print(sorted(v for v in VERBS if f'backend.cli.{v}' in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "['sessions']"
