"""Is this file a whole OMDP session? One line naming the file and what is damaged, if not.

Run on every open, before any reader or writer trusts a row: SQLite's own quick check
(torn or truncated pages), then the tables and columns the schema declares, then every
row's types and ranges (a number where a number belongs, finite; JSON where JSON
belongs; segments inside the model; devices of the chain). The readers can then assume
what they read. Cost: SQLite's check plus one pass over each small table, milliseconds for
a typical session. Raw samples (the one table that grows large) are checked when they are
read (`Session.samples`), not on every open.
"""

from __future__ import annotations

import functools
import itertools
import json
import sqlite3
import typing
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from backend import __version__
from backend.chain import KINDS, DeviceSpec
from backend.device.runtimes import RUNTIMES
from backend.errors import OmdpError
from backend.profiling import schema
from backend.profiling.sessionfile import FIX_DAMAGED, FIX_OTHER

RUN_STATUSES = ("done", "stopped", "failed", "interrupted")
MEASUREMENT_STATUSES = ("ok", "error", "pending")

# SQL tests of one non-NULL value `{c}` (CASE keeps json_type off text that is not JSON).
INT = "typeof({c}) = 'integer'"
NUM = "typeof({c}) IN ('integer', 'real') AND abs({c}) < 9e999"
TEXT = "typeof({c}) = 'text'"
JSON = "typeof({c}) = 'text' AND json_valid({c})"
JSON_OBJECT = (
    "CASE WHEN typeof({c}) = 'text' AND json_valid({c}) THEN json_type({c}) = 'object' END"
)


def json_list(length: int | None = None) -> str:
    """A JSON list (of `length` items)."""
    size = "" if length is None else f" AND json_array_length({{c}}) = {length}"
    return (
        f"CASE WHEN typeof({{c}}) = 'text' AND json_valid({{c}}) "
        f"THEN json_type({{c}}) = 'array'{size} END"
    )


@dataclass(frozen=True)
class Rule:
    """Every non-NULL value of `column` passes `test` (NULL only where `nullable`)."""

    column: str
    test: str
    expected: str
    nullable: bool = False


def _in(values: tuple[str, ...]) -> str:
    return TEXT + " AND {c} IN (" + ", ".join(f"'{v}'" for v in values) + ")"


def _rules(n: int) -> dict[str, list[Rule]]:
    """What each column may hold in a session of a model with `n` nodes."""
    pos = INT + f" AND {{c}} BETWEEN 0 AND {n}"
    text, num = (TEXT, "text"), (NUM, "a finite number")
    # what a measurement and its retired copy in the history both hold
    timed = [
        Rule("samples", INT + " AND {c} >= 0", "a count ≥ 0"),
        Rule("stop", *text, nullable=True),
        Rule("stats", JSON_OBJECT, "a JSON object", nullable=True),
        Rule("runtime", JSON_OBJECT, "a JSON object", nullable=True),
        Rule("run", INT, "a run id", nullable=True),
        Rule("created_at", *text),
    ]
    conditions = [
        Rule("used", *text, nullable=True),
        Rule("conditions", JSON_OBJECT, "a JSON object", nullable=True),
        Rule("throttled", *text, nullable=True),
    ]
    return {
        "schema_version": [Rule("version", INT + " AND {c} >= 1", "a version ≥ 1")],
        "meta": [Rule("key", *text), Rule("value", *text)],
        "model": [
            Rule("path", *text, nullable=True),
            Rule("sha256", TEXT + " AND length({c}) = 64", "a sha256 in hex"),
            Rule("builtin", *text, nullable=True),
            Rule("input_shapes", JSON_OBJECT, "a JSON object"),
            Rule("node_names", json_list(n), f"a JSON list of {n} names"),
            Rule("node_flops", json_list(n), f"a JSON list of {n} counts"),
            Rule("summary", JSON_OBJECT, "a JSON object"),
        ],
        "candidates": [
            Rule(
                "position", INT + f" AND {{c}} BETWEEN 1 AND {n - 1}", f"a position in 1..{n - 1}"
            ),
            Rule("name", *text, nullable=True),
            Rule("cut_bytes", INT + " AND {c} >= 0", "a byte count", nullable=True),
        ],
        "devices": [
            Rule("name", TEXT + " AND length({c}) > 0", "a name"),
            Rule("kind", *text),
            Rule("runtime", *text),
            Rule("config", *text),
            Rule("spec", JSON_OBJECT, "a JSON object"),
        ],
        "links": [
            Rule("src", *text),
            Rule("dst", *text),
            Rule("bandwidth_mbps", NUM + " AND {c} > 0", "a bandwidth > 0"),
            Rule("latency_ms", NUM + " AND {c} >= 0", "a latency ≥ 0"),
            Rule("is_default", INT + " AND {c} IN (0, 1)", "0 or 1"),
            Rule("measured_bandwidth_mbps", *num, nullable=True),
            Rule("measured_latency_ms", *num, nullable=True),
            Rule("measured_at", *text, nullable=True),
        ],
        "bandwidths": [
            Rule("link", INT + " AND {c} IN (SELECT idx FROM links)", "a link"),
            Rule("bandwidth_mbps", NUM + " AND {c} > 0", "a bandwidth > 0"),
            Rule("latency_ms", NUM + " AND {c} >= 0", "a latency ≥ 0"),
            Rule("updated_at", *text),
        ],
        "plan": [
            Rule(
                "device", TEXT + " AND {c} IN (SELECT name FROM devices)", "a device of the chain"
            ),
            Rule("seg_start", pos, f"a position in 0..{n}"),
            Rule("seg_end", pos + " AND {c} > seg_start", "an end after the start"),
        ],
        "runs": [
            Rule("device", *text),
            Rule("started_at", *text),
            Rule("finished_at", *text, nullable=True),
            Rule("status", _in(RUN_STATUSES), " / ".join(RUN_STATUSES), nullable=True),
            Rule("message", *text, nullable=True),
            Rule("hello", JSON, "JSON", nullable=True),
        ],
        "measurements": [
            Rule(
                "device", TEXT + " AND {c} IN (SELECT name FROM devices)", "a device of the chain"
            ),
            Rule("seg_start", pos, f"a position in 0..{n}"),
            Rule("seg_end", pos + " AND {c} > seg_start", "an end after the start"),
            Rule("config", *text),
            Rule("status", _in(MEASUREMENT_STATUSES), " / ".join(MEASUREMENT_STATUSES)),
            Rule("message", *text, nullable=True),
            *(
                Rule(c, NUM + " AND {c} >= 0", "a finite time ≥ 0", nullable=True)
                for c in ("load_ms", "p10_ms", "p90_ms", "mean_ms", "std_ms", "rel_ci")
            ),
            Rule(
                "median_ms", NUM + " AND {c} >= 0", "a finite time ≥ 0 (set when ok)", nullable=True
            ),
            *timed,
            Rule("updated_at", *text),
            *conditions,
        ],
        "node_profiles": [
            Rule("device", *text),
            Rule("config", *text),
            Rule("runtime", *text),
            Rule("runs", INT + " AND {c} >= 0", "a count ≥ 0"),
            Rule("unattributed_ms", *num),
            Rule("total_ms", *num),
            Rule("created_at", *text),
        ],
        "node_times": [
            Rule("device", *text),
            Rule("config", *text),
            Rule(
                "position",
                INT + f" AND {{c}} BETWEEN 0 AND {n - 1}",
                f"a node position in 0..{n - 1}",
            ),
            Rule("name", *text, nullable=True),
            Rule("ms", NUM + " AND {c} >= 0", "a finite time ≥ 0"),
        ],
        "partitions": [
            Rule("name", *text, nullable=True),
            Rule("positions", json_list(), "a JSON list"),
            Rule("cost_ms", *num, nullable=True),
            Rule("details", JSON_OBJECT, "a JSON object", nullable=True),
            Rule("created_at", *text),
        ],
        "ui_state": [Rule("key", *text), Rule("value", JSON, "JSON")],
        "validations": [
            Rule("positions", json_list(), "a JSON list"),
            Rule("configs", JSON_OBJECT, "a JSON object"),
            Rule("links", json_list(), "a JSON list"),
            Rule("objective", _in(("latency", "throughput")), "latency / throughput"),
            Rule("cost_model", *text),
            Rule("frames", INT + " AND {c} >= 1", "a count ≥ 1"),
            Rule("measured", NUM + " AND {c} >= 0", "a finite number ≥ 0"),
            Rule("predicted", *num, nullable=True),
            Rule("error_pct", *num, nullable=True),
            Rule("output_ok", INT + " AND {c} IN (0, 1)", "0 or 1"),
            Rule("report", JSON_OBJECT, "a JSON object"),
            Rule("created_at", *text),
        ],
        "measurement_history": [
            Rule("measurement", INT, "a measurement id"),
            Rule("device", *text),
            Rule("seg_start", pos, f"a position in 0..{n}"),
            Rule("seg_end", pos + " AND {c} > seg_start", "an end after the start"),
            Rule("config", *text),
            Rule("status", _in(MEASUREMENT_STATUSES), " / ".join(MEASUREMENT_STATUSES)),
            Rule("message", *text, nullable=True),
            *(
                Rule(c, NUM + " AND {c} >= 0", "a finite time ≥ 0", nullable=True)
                for c in ("median_ms", "p10_ms", "p90_ms", "rel_ci")
            ),
            *timed,
            Rule("retired_at", *text),
            Rule("reason", *text, nullable=True),
            *conditions,
        ],
    }


def check(conn: sqlite3.Connection, path: Path) -> None:
    """OmdpError naming `path` and the first thing found damaged; nothing when whole."""
    try:
        conn.execute("BEGIN")  # one snapshot for every check, even while a profiler writes
        try:
            _check(conn, path)
        finally:
            conn.rollback()
    except sqlite3.DatabaseError as exc:
        raise OmdpError(f"{path} is damaged ({' '.join(str(exc).split())})", FIX_DAMAGED) from None


def _damaged(path: Path, what: str) -> OmdpError:
    return OmdpError(f"{path} is damaged: {what}", FIX_DAMAGED)


def _check(conn: sqlite3.Connection, path: Path) -> None:
    result = conn.execute("PRAGMA quick_check(1)").fetchone()[0]
    if result != "ok":
        found = " ".join(result.replace("*** in database main ***", "").split())
        raise _damaged(path, f"SQLite finds {found}")
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    if "schema_version" not in tables and "meta" not in tables:
        raise OmdpError(f"{path} is an SQLite file but not an OMDP session", FIX_OTHER)
    _check_version(conn, path, tables)
    for table, cols in schema.columns().items():
        if table not in tables:
            raise _damaged(path, f"table {table} is missing")
        have = {r[1] for r in conn.execute(f"PRAGMA table_info({table})")}
        for col in cols:
            if col not in have:
                raise _damaged(path, f"table {table} has no column {col}")
    app = conn.execute("SELECT value FROM meta WHERE key = 'app'").fetchone()
    if app is None or app[0] != schema.APP_ID:
        raise OmdpError(
            f"{path} is an SQLite file but not an OMDP session (its meta table names no OMDP app)",
            FIX_OTHER,
        )
    models = conn.execute("SELECT id, nodes FROM model").fetchall()
    if len(models) != 1 or models[0][0] != 1:
        raise _damaged(path, f"table model has {len(models)} rows, not one")
    n = models[0][1]
    if not isinstance(n, int) or n < 1:
        raise _damaged(path, f"model.nodes holds {n!r}, not a node count ≥ 1")
    rules = _rules(n)
    for table in ("model", "devices", "links"):  # what the other tables' rules refer to
        for rule in rules.pop(table):
            _check_rule(conn, path, table, rule)
    _check_model(conn, path, n)
    _check_chain(conn, path)
    for table, table_rules in rules.items():
        if _any_bad(conn, table, table_rules):  # one scan; name the culprit only if needed
            for rule in table_rules:
                _check_rule(conn, path, table, rule)


def _check_version(conn: sqlite3.Connection, path: Path, tables: set[str]) -> None:
    if "schema_version" not in tables:
        raise _damaged(path, "table schema_version is missing")
    rows = conn.execute("SELECT version FROM schema_version").fetchall()
    if len(rows) != 1:
        raise _damaged(path, f"table schema_version has {len(rows)} rows, not one")
    version = rows[0][0]
    if not isinstance(version, int) or version < 1:
        raise _damaged(path, f"schema_version holds {version!r}, not a version ≥ 1")
    if version > schema.VERSION:
        raise OmdpError(
            f"{path} was written by a newer OMDP (session schema v{version}; "
            f"this OMDP {__version__} reads up to v{schema.VERSION})",
            "upgrade omdp to open it",
        )


def _bad(rule: Rule) -> str:
    """SQL true for a row that breaks `rule`."""
    c = rule.column
    return (
        f"CASE WHEN {c} IS NULL THEN {0 if rule.nullable else 1} "
        f"ELSE NOT coalesce({rule.test.format(c=c)}, 0) END"
    )


def _any_bad(conn: sqlite3.Connection, table: str, rules: list[Rule]) -> bool:
    where = " OR ".join(_bad(r) for r in rules)
    return conn.execute(f"SELECT 1 FROM {table} WHERE {where} LIMIT 1").fetchone() is not None


def _check_rule(conn: sqlite3.Connection, path: Path, table: str, rule: Rule) -> None:
    bad = conn.execute(
        f"SELECT rowid, quote({rule.column}) FROM {table} WHERE {_bad(rule)} LIMIT 1"
    ).fetchone()
    if bad is not None:
        value = bad[1] if len(bad[1]) <= 40 else bad[1][:37] + "..."
        raise _damaged(
            path, f"{table}.{rule.column} holds {value} in row {bad[0]}, not {rule.expected}"
        )


def _check_model(conn: sqlite3.Connection, path: Path, n: int) -> None:
    r = conn.execute("SELECT input_shapes, node_names, node_flops FROM model").fetchone()
    shapes, names, flops = (json.loads(v) for v in r)
    if not all(
        isinstance(k, str)
        and isinstance(v, list)
        and all(isinstance(d, int) and not isinstance(d, bool) for d in v)
        for k, v in shapes.items()
    ):
        raise _damaged(path, "model.input_shapes is not {input: [dims]}")
    if not all(isinstance(x, str) for x in names):
        raise _damaged(path, "model.node_names holds something other than names")
    if not all(x is None or (isinstance(x, int) and not isinstance(x, bool)) for x in flops):
        raise _damaged(path, "model.node_flops holds something other than counts")


def _check_chain(conn: sqlite3.Connection, path: Path) -> None:
    devices = conn.execute("SELECT idx, name, spec FROM devices ORDER BY idx").fetchall()
    if not devices:
        raise _damaged(path, "table devices is empty")
    if [r[0] for r in devices] != list(range(len(devices))):
        raise _damaged(path, "devices.idx does not number the chain 0, 1, 2, …")
    for idx, name, spec in devices:
        problem = _spec_problem(json.loads(spec))
        if problem is None and json.loads(spec)["name"] != name:
            problem = f"its spec names {json.loads(spec)['name']!r}"
        if problem:
            raise _damaged(path, f"device {idx} ({name}): {problem}")
    links = conn.execute("SELECT idx, src, dst FROM links ORDER BY idx").fetchall()
    names = [r[1] for r in devices]
    want = [(i, a, b) for i, (a, b) in enumerate(itertools.pairwise(names))]
    if [tuple(r) for r in links] != want:
        raise _damaged(path, "table links does not join the devices in chain order")


def _spec_problem(spec: dict[str, Any]) -> str | None:
    """What is wrong with a stored device record (None: nothing)."""
    if not isinstance(spec.get("name"), str) or not spec["name"]:
        return "its spec has no name"
    if spec.get("kind", "local") not in KINDS:
        return f"its spec has kind {spec.get('kind')!r}"
    if spec.get("runtime", "onnxruntime") not in RUNTIMES:
        return f"its spec has runtime {spec.get('runtime')!r}"
    hints = _spec_types()
    for f in fields(DeviceSpec):
        value = spec.get(f.name)
        if value is not None and not _fits(value, hints[f.name]):
            return f"its spec has {f.name} = {value!r}"
    return None


@functools.cache
def _spec_types() -> dict[str, Any]:
    return typing.get_type_hints(DeviceSpec)


def _fits(value: Any, hint: Any) -> bool:
    """Is a JSON value of the type a DeviceSpec field declares (X | None, list[X])?"""
    args = [a for a in typing.get_args(hint) if a is not type(None)] or [hint]
    for a in args:
        if typing.get_origin(a) is list:
            (item,) = typing.get_args(a)
            if isinstance(value, list) and all(_fits(v, item) for v in value):
                return True
        elif a is float:
            if isinstance(value, int | float) and not isinstance(value, bool):
                return True
        elif (
            isinstance(a, type)
            and isinstance(value, a)
            and not (a is int and isinstance(value, bool))
        ):
            return True
    return False
