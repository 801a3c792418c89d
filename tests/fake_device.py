"""A fake device interpreter: a script standing in for the agent's `python`.

It ignores its arguments (so it works wherever the agent's python would be run: locally,
or over SSH in place of both the guard and the agent), says a valid hello, reads the job,
then runs a scenario: Python code with `job`, `items`, `say(obj_or_text)`, `result(seg)`,
`error(seg)` and `done(...)` at hand. It is how the tests play a device that lies.
"""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

PRELUDE = r"""
import json, os, signal, subprocess, sys, time

def say(x):
    data = x if isinstance(x, (str, bytes)) else json.dumps(x)
    data = data.encode() if isinstance(data, str) else data
    sys.stdout.buffer.write(data + b"\n")
    sys.stdout.flush()

def result(seg, **over):
    d = {"type": "result", "segment": list(seg), "load_ms": 1.5, "samples": [1.0, 1.25, 0.75],
         "stats": {"count": 3, "median": 1.0}, "stop": "max_runs",
         "runtime": {"name": "onnxruntime", "version": "fake", "options": {}}, "warmup_ms": []}
    d.update(over)
    return d

def error(seg, message="no kernel", kind="run"):
    return {"type": "error", "segment": list(seg) if seg else None, "message": message,
            "kind": kind, "detail": ""}

def done(completed, errors=0, stopped=False):
    return {"type": "done", "completed": completed, "errors": errors, "stopped": stopped,
            "seconds": 0.1}

HELLO = {"type": "hello", "protocol": 1, "agent": "fake", "pid": os.getpid(),
         "versions": {"python": "3"}, "host": {"hostname": "fake", "cpu": "fake cpu"}}
"""

HONEST = """
say(HELLO)
job = json.loads(sys.stdin.readline())
items = job["items"]
for seg in items:
    say(result(seg))
say(done(len(items)))
"""


def fake_python(
    folder: Path,
    scenario: str,
    *,
    before: str = "",
    hello: bool = True,
    job: bool = True,
    name: str = "fake-python",
) -> Path:
    """Write the fake interpreter to `folder`: `before` (e.g. a different HELLO), then hello
    and reading the job unless told not to, then `scenario`."""
    start = textwrap.dedent(before).strip() + "\n"
    start += "say(HELLO)\n" if hello else ""
    start += 'job = json.loads(sys.stdin.readline() or "{}")\n' if job else "job = {}\n"
    start += 'items = job.get("items", [])\n'
    path = folder / name
    path.write_text(
        f"#!{sys.executable} -S\n" + PRELUDE + start + textwrap.dedent(scenario).strip() + "\n"
    )
    path.chmod(0o755)
    return path


def honest_python(folder: Path) -> Path:
    """A fake that answers every segment validly and fast."""
    path = folder / "honest-python"
    path.write_text(f"#!{sys.executable} -S\n" + PRELUDE + HONEST)
    path.chmod(0o755)
    return path
