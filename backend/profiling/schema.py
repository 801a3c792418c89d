"""The session file's schema: its tables, their columns, and the version that names them.

One source of truth: the integrity check derives the columns it expects from `SQL` itself,
so a column added here is checked everywhere without a second list to keep in step.
See docs/session.md for what each table holds.
"""

from __future__ import annotations

import functools
import sqlite3

APP_ID = "omdp-session"
SUFFIX = ".omdp"

HISTORY_SQL = """
CREATE TABLE measurement_history (  -- measurements replaced by a re-measure, kept whole
    id INTEGER PRIMARY KEY,
    measurement INTEGER NOT NULL,   -- the id it had in measurements
    device TEXT NOT NULL,
    seg_start INTEGER NOT NULL,
    seg_end INTEGER NOT NULL,
    config TEXT NOT NULL,
    status TEXT NOT NULL,
    message TEXT,
    median_ms REAL,
    p10_ms REAL,
    p90_ms REAL,
    rel_ci REAL,
    samples INTEGER NOT NULL DEFAULT 0,
    stop TEXT,
    stats TEXT,                     -- JSON runtimes.Stats
    runtime TEXT,                   -- JSON
    run INTEGER,
    created_at TEXT NOT NULL,
    retired_at TEXT NOT NULL,
    reason TEXT         -- why measured again: noisy | throttled | device | segment | cell
);
CREATE TABLE history_samples (
    history INTEGER NOT NULL REFERENCES measurement_history(id) ON DELETE CASCADE,
    seq INTEGER NOT NULL,
    ms REAL NOT NULL,
    PRIMARY KEY (history, seq)
) WITHOUT ROWID;
"""  # version 2

VALIDATIONS_SQL = """
CREATE TABLE validations (           -- chained runs of a partition (omdp validate)
    id INTEGER PRIMARY KEY,
    positions TEXT NOT NULL,        -- JSON [p_0 .. p_D]: the partition
    configs TEXT NOT NULL,          -- JSON {device: RuntimeConfig.key()} of the devices run
    links TEXT NOT NULL,            -- JSON [[Mbit/s, ms], ...]: the link values predicted with
    objective TEXT NOT NULL,        -- latency | throughput
    cost_model TEXT NOT NULL,       -- the model that ranked it
    frames INTEGER NOT NULL,
    measured REAL NOT NULL,         -- median end-to-end ms, or frames/s (throughput)
    predicted REAL,                 -- the same under the ranking's cost model
    error_pct REAL,                 -- (predicted - measured) / measured, %
    output_ok INTEGER NOT NULL,     -- 1: the chain's output matched the full model's
    report TEXT NOT NULL,           -- JSON: per stage and link, measured beside predicted
    created_at TEXT NOT NULL,
    UNIQUE (positions, configs, links, objective)
);
"""  # version 4

HISTORY_CONDITIONS_SQL = """
ALTER TABLE measurement_history ADD COLUMN used TEXT;        -- as in measurements (v3)
ALTER TABLE measurement_history ADD COLUMN conditions TEXT;
ALTER TABLE measurement_history ADD COLUMN throttled TEXT;
"""  # version 5: a throttled measurement measured again keeps why it was not trusted

SQL = (
    """
CREATE TABLE schema_version (version INTEGER NOT NULL);
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE model (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    path TEXT,                      -- absolute path of the user's file (NULL: built-in)
    sha256 TEXT NOT NULL,           -- of the file's bytes (or of the built-in model)
    builtin TEXT,                   -- zoo name when built in
    input_shapes TEXT NOT NULL,     -- JSON {input: [dims]}
    nodes INTEGER NOT NULL,         -- N
    node_names TEXT NOT NULL,       -- JSON list, position i -> name of node i
    node_flops TEXT NOT NULL,       -- JSON list (null: not counted)
    summary TEXT NOT NULL           -- JSON ModelAnalysis.summary()
);
CREATE TABLE candidates (position INTEGER PRIMARY KEY, name TEXT, cut_bytes INTEGER);
CREATE TABLE devices (
    idx INTEGER PRIMARY KEY,        -- chain order
    name TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    runtime TEXT NOT NULL,
    config TEXT NOT NULL,           -- RuntimeConfig.key(): part of a measurement's identity
    spec TEXT NOT NULL              -- JSON DeviceSpec
);
CREATE TABLE links (
    idx INTEGER PRIMARY KEY,        -- link i goes from device i to device i + 1
    src TEXT NOT NULL,
    dst TEXT NOT NULL,
    bandwidth_mbps REAL NOT NULL,   -- configured (devices.toml)
    latency_ms REAL NOT NULL,
    is_default INTEGER NOT NULL,    -- 1: not in devices.toml, defaults used
    measured_bandwidth_mbps REAL,   -- slot for measured values (link probing)
    measured_latency_ms REAL,
    measured_at TEXT
);
CREATE TABLE bandwidths (           -- the operator's current values (TUI / solve)
    link INTEGER PRIMARY KEY REFERENCES links(idx),
    bandwidth_mbps REAL NOT NULL,
    latency_ms REAL NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE TABLE plan (
    device TEXT NOT NULL,
    seg_start INTEGER NOT NULL,
    seg_end INTEGER NOT NULL,
    PRIMARY KEY (device, seg_start, seg_end)
);
CREATE TABLE runs (                 -- one per agent started for a device
    id INTEGER PRIMARY KEY,
    device TEXT NOT NULL,
    started_at TEXT NOT NULL,
    finished_at TEXT,
    status TEXT,                    -- done | stopped | failed | interrupted
    message TEXT,
    hello TEXT                      -- JSON: protocol, versions, host facts
);
CREATE TABLE measurements (
    id INTEGER PRIMARY KEY,
    device TEXT NOT NULL,
    seg_start INTEGER NOT NULL,
    seg_end INTEGER NOT NULL,
    config TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('ok', 'error', 'pending')),
    message TEXT,
    load_ms REAL,
    median_ms REAL,
    p10_ms REAL,
    p90_ms REAL,
    mean_ms REAL,
    std_ms REAL,
    rel_ci REAL,
    samples INTEGER NOT NULL DEFAULT 0,
    stop TEXT,                      -- why timing stopped: ci | max_runs | max_seconds
    stats TEXT,                     -- JSON runtimes.Stats
    runtime TEXT,                   -- JSON name, version, options used
    run INTEGER REFERENCES runs(id),
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    used TEXT,                      -- the execution provider / OpenVINO device that ran it
    conditions TEXT,                -- JSON: temperature, CPU frequency before/after timing
    throttled TEXT,                 -- why its numbers cannot be trusted (hot, slow CPU)
    UNIQUE (device, seg_start, seg_end, config)
);
CREATE TABLE samples (
    measurement INTEGER NOT NULL REFERENCES measurements(id) ON DELETE CASCADE,
    seq INTEGER NOT NULL,
    ms REAL NOT NULL,
    PRIMARY KEY (measurement, seq)
) WITHOUT ROWID;
CREATE TABLE node_profiles (
    device TEXT NOT NULL,
    config TEXT NOT NULL,
    runtime TEXT NOT NULL,
    runs INTEGER NOT NULL,
    unattributed_ms REAL NOT NULL,
    total_ms REAL NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (device, config)
);
CREATE TABLE node_times (
    device TEXT NOT NULL,
    config TEXT NOT NULL,
    position INTEGER NOT NULL,
    name TEXT,
    ms REAL NOT NULL,
    PRIMARY KEY (device, config, position)
);
CREATE TABLE partitions (
    id INTEGER PRIMARY KEY,
    name TEXT,
    positions TEXT NOT NULL,        -- JSON [p_0 .. p_D]
    cost_ms REAL,
    details TEXT,                   -- JSON
    created_at TEXT NOT NULL
);
CREATE TABLE ui_state (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
    + HISTORY_SQL
    + VALIDATIONS_SQL
    + HISTORY_CONDITIONS_SQL
)


# Each later version's changes to a file of the version before: additive only (new tables;
# new columns that are nullable or have a default), so an older session opens whole after
# `upgrade` and keeps every row. `SQL` above is always the newest schema in full.
UPGRADES: dict[int, str] = {
    2: HISTORY_SQL,
    3: """
ALTER TABLE measurements ADD COLUMN used TEXT;
ALTER TABLE measurements ADD COLUMN conditions TEXT;
ALTER TABLE measurements ADD COLUMN throttled TEXT;
""",
    4: VALIDATIONS_SQL,
    5: HISTORY_CONDITIONS_SQL,
}
VERSION = max(UPGRADES, default=1)


def version_of(conn: sqlite3.Connection) -> int | None:
    """The file's schema version (None when it has no readable one: integrity says why)."""
    try:
        rows = conn.execute("SELECT version FROM schema_version").fetchall()
    except sqlite3.DatabaseError:
        return None
    if len(rows) != 1 or not isinstance(rows[0][0], int):
        return None
    return rows[0][0]


def needs_upgrade(conn: sqlite3.Connection) -> bool:
    version = version_of(conn)
    return version is not None and 1 <= version < VERSION


def upgrade(conn: sqlite3.Connection) -> None:
    """Bring a file written by an older OMDP to `VERSION`, in one transaction."""
    version = version_of(conn)
    if version is None or not 1 <= version < VERSION:
        return
    steps = "\n".join(sql for v, sql in sorted(UPGRADES.items()) if v > version)
    conn.executescript(
        f"BEGIN IMMEDIATE;\n{steps}\nUPDATE schema_version SET version = {VERSION};\nCOMMIT;"
    )


@functools.cache
def columns() -> dict[str, tuple[str, ...]]:
    """Table -> its column names, as `SQL` declares them."""
    conn = sqlite3.connect(":memory:")
    try:
        conn.executescript(SQL)
        tables = [
            r[0]
            for r in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY rowid"
            )
        ]
        return {t: tuple(r[1] for r in conn.execute(f"PRAGMA table_info({t})")) for t in tables}
    finally:
        conn.close()
