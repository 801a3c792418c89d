"""`omdp sessions [FOLDER]`: the sessions opened lately wherever they are (the recent
index in the user's state folder), then the others in `sessions/`; with FOLDER, that
folder's sessions, newest first. A file that cannot be read (damaged, not a session) is
listed and marked, never fails the listing."""

from __future__ import annotations

import argparse
import datetime as dt
import json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sessions", description=__doc__)
    p.add_argument(
        "folder",
        nargs="?",
        help="list this folder only (default: recently opened sessions, then sessions/)",
    )
    p.add_argument("--json", action="store_true", help="a JSON list")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from backend.profiling.session import list_sessions
    from backend.usecases.sessions import recent_sessions, sessions_dir

    infos = list_sessions(args.folder) if args.folder else recent_sessions(limit=200)
    where = args.folder or f"{sessions_dir()} or the recent-sessions index"
    if args.json:
        print(json.dumps([i.to_dict() for i in infos], indent=1))
        return 0
    if not infos:
        print(f"no sessions in {where}")
        return 0
    rows = [("modified", "model", "devices", "progress", "path")]
    for i in infos:
        when = dt.datetime.fromtimestamp(i.modified).strftime("%Y-%m-%d %H:%M")
        if i.problem:
            mark = "damaged" if "damaged" in i.problem else "unreadable"
            rows.append((when, "?", "-", mark, f"{i.path}: {i.problem}"))
            continue
        errors = f", {i.errors} errors" if i.errors else ""
        rows.append(
            (when, i.model or "?", " → ".join(i.devices), f"{i.done}/{i.total}{errors}", i.path)
        )
    widths = [max(len(r[c]) for r in rows) for c in range(4)]
    for r in rows:
        print("  ".join(r[c].ljust(widths[c]) for c in range(4)) + "  " + r[4])
    return 0
