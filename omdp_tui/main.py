"""The `omdp` console script: UI verbs open the TUI, every other verb is the headless CLI."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from backend.cli import main as cli_main


def run_ui(args: argparse.Namespace) -> int:
    """Start the Textual app; imported lazily so headless verbs never load textual."""
    from omdp_tui.app import run

    return run(args)


def main(argv: Sequence[str] | None = None) -> int:
    return cli_main(argv, ui=run_ui)


if __name__ == "__main__":
    sys.exit(main())
