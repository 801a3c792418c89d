"""The headless CLI: `omdp <verb> ... [--json]`. Each verb lives in its own module here.

A verb module exposes `register(subparsers)`, which adds its parser and sets `func`
(a callable taking the parsed args and returning an exit code).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable, Sequence

from backend import __version__
from backend.errors import OmdpError

# Verb modules, in the order `omdp --help` lists them.
VERB_MODULES = (
    "inspect",
    "cuts",
    "extract",
    "zoo",
    "profile",
    "results",
    "sessions",
    "solve",
    "paths",
    "trace",
    "export",
    "devices",
    "links",
)

UiRunner = Callable[[argparse.Namespace], int]


class _Parser(argparse.ArgumentParser):
    """argparse that reports usage errors on one line with exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"omdp: error: {message} (see `{self.prog} --help`)\n")


def build_parser(ui: UiRunner | None = None) -> argparse.ArgumentParser:
    parser = _Parser(
        prog="omdp",
        description="Profile an ONNX model on a chain of devices and rank the ways to split it.",
    )
    parser.add_argument("--version", action="version", version=f"omdp {__version__}")
    sub = parser.add_subparsers(dest="verb", metavar="VERB", parser_class=_Parser)
    for name in VERB_MODULES:
        try:
            module = importlib.import_module(f"backend.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"backend.cli.{name}":
                continue  # verb not built yet
            raise
        module.register(sub)
    _register_ui_verbs(sub, ui)
    return parser


def _register_ui_verbs(sub: argparse._SubParsersAction, ui: UiRunner | None) -> None:
    def run_ui(args: argparse.Namespace) -> int:
        if ui is None:
            raise OmdpError("the TUI is not available in this entry point", "run `omdp` instead")
        return ui(args)

    p = sub.add_parser("tui", help="open the TUI on a model (a new session)")
    p.add_argument("model", nargs="?", help="ONNX file or built-in model name")
    p.add_argument("--session", help="session file to create or resume")
    p.add_argument("--devices", help="devices.toml for the chain")
    p.add_argument("--input-shape", action="append", default=[], metavar="NAME=D0,D1,...")
    p.set_defaults(func=run_ui)
    p = sub.add_parser("demo", help="open the TUI on a ready demo session (YOLOv5n, 3 devices)")
    p.add_argument("--session", help="session file (default: sessions/demo.omdp)")
    p.set_defaults(func=run_ui)


def main(argv: Sequence[str] | None = None, ui: UiRunner | None = None) -> int:
    parser = build_parser(ui)
    args = parser.parse_args(argv)
    if args.verb is None:
        if ui is None:
            parser.print_help()
            return 0
        return ui(args)
    try:
        return int(args.func(args) or 0)
    except OmdpError as exc:
        print(f"omdp: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `omdp ... | head`: the reader left, nothing to report
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - keeps interpreter exit quiet
        return 0
    except KeyboardInterrupt:
        print("omdp: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
