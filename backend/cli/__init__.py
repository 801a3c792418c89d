"""The headless CLI: `omdp <verb> ... [--json]`. Each verb lives in its own module here.

A verb module exposes `register(subparsers)`, which adds its parser and sets `func`
(a callable taking the parsed args and returning an exit code). Only the verb being run is
imported: `omdp --help` lists the verbs from `VERBS` below without importing onnx, pandas or
asyncssh (the pattern pip uses for its commands).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from backend import __version__
from backend.errors import OmdpError
from backend.text import inert

# Every verb, in the order `omdp --help` lists them, with its one-line summary.
VERBS: dict[str, str] = {
    "inspect": "nodes, shapes, bytes, FLOPs and parameters of a model",
    "cuts": "tensors and bytes crossing each position",
    "extract": "write segment [FROM, TO) as an ONNX model",
    "zoo": "built-in models: list them, or write one to an ONNX file",
    "profile": "profile the plan's segments on every device",
    "results": "show a session's measurements",
    "sessions": "list saved sessions",
    "solve": "top-K partitions of an instance file",
    "paths": "the K best partitions for given link bandwidths",
    "attribute": "each block's share of the measured times; estimators tested",
    "trace": "best partition over a bandwidth trace, and the robust one",
    "map": "where each partition is best as one or two links' bandwidths vary",
    "export": "write chosen partitions to JSON (docs/export.md)",
    "export-instance": "write a session as an instance file (segment or layer level)",
    "devices": "check the chain's devices (SSH, python, packages)",
    "links": "measure link bandwidth and latency",
    "validate": "run ranked partitions as a chain: measured beside predicted",
    "lab": "emulate the chain on this machine: namespaces, shaped links, sshd (root)",
}
UI_VERBS: dict[str, str] = {
    "tui": "open the TUI on a model (a new session)",
    "demo": "open the TUI on a ready demo session (YOLOv5n, 3 devices)",
}

UiRunner = Callable[[argparse.Namespace], int]


class _Parser(argparse.ArgumentParser):
    """argparse that reports usage errors on one line with exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"omdp: error: {message} (see `{self.prog} --help`)\n")


class _Summaries:
    """Wraps the subparsers action so each verb's parser gets its summary from `VERBS`."""

    def __init__(self, sub: argparse._SubParsersAction):
        self._sub = sub

    def add_parser(self, name: str, **kwargs: Any) -> argparse.ArgumentParser:
        kwargs.setdefault("help", VERBS.get(name))
        return self._sub.add_parser(name, **kwargs)


def verb_of(argv: Sequence[str]) -> str | None:
    """The verb named on the command line (the first word that is not an option)."""
    return next((a for a in argv if not a.startswith("-")), None)


def build_parser(
    ui: UiRunner | None = None, argv: Sequence[str] | None = None
) -> argparse.ArgumentParser:
    """The parser; with `argv`, only the verb it names is imported and fully registered."""
    parser = _Parser(
        prog="omdp",
        description="Profile an ONNX model on a chain of devices and rank the ways to split it.",
    )
    parser.add_argument("--version", action="version", version=f"omdp {__version__}")
    sub = parser.add_subparsers(dest="verb", metavar="VERB", parser_class=_Parser)
    wanted = verb_of(argv) if argv is not None else None
    for name, summary in VERBS.items():
        if argv is None or name == wanted:
            module = name.replace("-", "_")  # export-instance lives in export_instance.py
            importlib.import_module(f"backend.cli.{module}").register(_Summaries(sub))
        else:
            sub.add_parser(name, help=summary, add_help=False)
    _register_ui_verbs(sub, ui)
    return parser


def _register_ui_verbs(sub: argparse._SubParsersAction, ui: UiRunner | None) -> None:
    def run_ui(args: argparse.Namespace) -> int:
        if ui is None:
            raise OmdpError("the TUI is not available in this entry point", "run `omdp` instead")
        return ui(args)

    p = sub.add_parser("tui", help=UI_VERBS["tui"])
    p.add_argument("model", nargs="?", help="ONNX file or built-in model name")
    p.add_argument("--session", help="session file to create or resume")
    p.add_argument("--devices", help="devices.toml for the chain")
    p.add_argument("--input-shape", action="append", default=[], metavar="NAME=D0,D1,...")
    p.set_defaults(func=run_ui)
    p = sub.add_parser("demo", help=UI_VERBS["demo"])
    p.add_argument("--session", help="session file (default: sessions/demo.omdp)")
    p.add_argument(
        "--lab",
        action="store_true",
        help="run the demo chain as an emulated lab: namespaces, shaped links, "
        "CPU shares, sshd per device (needs root; docs/lab.md)",
    )
    p.add_argument(
        "--lab-dir",
        default="sessions/demo-lab",
        metavar="DIR",
        help="the lab's folder (default sessions/demo-lab; `omdp lab down DIR`)",
    )
    p.set_defaults(func=run_ui)


def main(argv: Sequence[str] | None = None, ui: UiRunner | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(ui, argv)
    args = parser.parse_args(argv)
    if args.verb is None:
        if ui is None:
            parser.print_help()
            return 0
        return ui(args)
    try:
        return int(args.func(args) or 0)
    except OmdpError as exc:
        print(f"omdp: error: {inert(str(exc), limit=4000)}", file=sys.stderr)  # one line
        return 2
    except BrokenPipeError:  # `omdp ... | head`: the reader left, nothing to report
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - keeps interpreter exit quiet
        return 0
    except KeyboardInterrupt:
        print("omdp: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
