"""Reading the project's own source in tests."""

from __future__ import annotations

import ast
import gc
from pathlib import Path


def parse_python(path: Path, **kwargs: object) -> ast.Module:
    """ast.parse with the garbage collector paused: on CPython 3.11 a finalizer that runs
    in the middle of building the tree (an asyncio transport another test left behind)
    trips "SystemError: AST constructor recursion depth mismatch"."""
    gc.collect()
    gc.disable()
    try:
        return ast.parse(Path(path).read_text(), filename=str(path), **kwargs)  # type: ignore[arg-type]
    finally:
        gc.enable()
