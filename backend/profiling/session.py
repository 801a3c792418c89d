"""A profiling session in one SQLite file: what was asked, and everything measured so far.

Why SQLite: each result is committed as it arrives (one transaction per result), so a
crash, a kill -9 or a dropped device loses at most the segment being timed; WAL mode lets
the TUI read while the profiler writes; a UNIQUE key per (device, segment, runtime
configuration) makes a resume do only what is missing and never duplicate anything.
See docs/session.md for the schema.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from backend import __version__
from backend.chain import Chain, DeviceSpec, LinkSpec
from backend.errors import OmdpError
from backend.profiling.plan import Plan, PlanItem

SCHEMA_VERSION = 1
APP_ID = "omdp-session"
DEFAULT_FOLDER = Path("sessions")
SUFFIX = ".omdp"

_SCHEMA = """
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
    status TEXT,                    -- done | stopped | failed
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

RESULT_COLUMNS = ["device", "start", "end", "median_ms", "p10_ms", "p90_ms", "samples",
                  "status", "message", "load_ms", "mean_ms", "std_ms", "rel_ci", "stop",
                  "device_index", "measurement_id", "updated_at", "config"]


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def default_path(model_name: str, folder: str | os.PathLike = DEFAULT_FOLDER) -> Path:
    """`sessions/<model stem>.omdp`: rerunning the same command resumes the same session."""
    stem = Path(model_name).stem or "model"
    return Path(folder) / f"{stem}{SUFFIX}"


@dataclass
class ModelRef:
    path: str | None
    sha256: str
    builtin: str | None
    input_shapes: dict[str, list[int]]
    nodes: int
    node_names: list[str]
    node_flops: list[int | None]

    @property
    def label(self) -> str:
        return self.builtin or (Path(self.path).name if self.path else "?")


def _connect(path: Path, readonly: bool = False) -> sqlite3.Connection:
    uri = f"file:{path}?mode=ro" if readonly else f"file:{path}"
    conn = sqlite3.connect(uri, uri=True, timeout=10.0)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute("PRAGMA busy_timeout = 10000")
    return conn


def _check_schema(conn: sqlite3.Connection, path: Path) -> int:
    """Schema version of an OMDP session file, or OmdpError saying what the file is."""
    fix_new = "give a session file written by `omdp profile`, or start a new one with --session"
    try:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    except sqlite3.DatabaseError as exc:
        raise OmdpError(f"{path} is not an OMDP session ({exc})", fix_new) from exc
    if "schema_version" not in tables or "meta" not in tables:
        raise OmdpError(f"{path} is an SQLite file but not an OMDP session", fix_new)
    row = conn.execute("SELECT version FROM schema_version").fetchone()
    if row is None:
        raise OmdpError(f"{path} has no schema version: it is damaged", fix_new)
    version = int(row[0])
    if version > SCHEMA_VERSION:
        raise OmdpError(f"{path} was written by a newer OMDP (session schema v{version}; this "
                        f"OMDP {__version__} reads up to v{SCHEMA_VERSION})",
                        "upgrade omdp to open it")
    return version


class Session:
    """One session file. Use from one thread (the event loop's); other processes may read
    at the same time (WAL)."""

    def __init__(self, path: Path, conn: sqlite3.Connection):
        self.path = path
        self.conn = conn
        self._configs: dict[str, str] | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    @classmethod
    def create(cls, path: str | os.PathLike, analysis, chain: Chain, candidates: Sequence[int],
               *, builtin: str | None = None) -> Session:
        """A new session for an analysed model on a chain; refuses to overwrite a file."""
        p = Path(path)
        if p.exists():
            raise OmdpError(f"{p} already exists", "open it to resume, or choose another "
                            "--session name")
        p.parent.mkdir(parents=True, exist_ok=True)
        conn = _connect(p)
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")  # durable against process crashes
            conn.executescript(f"BEGIN;\n{_SCHEMA}\nCOMMIT;")
            with conn:
                conn.execute("INSERT INTO schema_version VALUES (?)", (SCHEMA_VERSION,))
                conn.executemany("INSERT INTO meta VALUES (?, ?)", [
                    ("app", APP_ID), ("created_at", _now()), ("omdp_version", __version__)])
                path_text = str(Path(analysis.path).resolve()) if analysis.path else None
                conn.execute(
                    "INSERT INTO model VALUES (1, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (path_text, analysis.sha256, builtin, _json(analysis.input_shapes),
                     analysis.n, _json([nd.name for nd in analysis.nodes]),
                     _json([nd.flops for nd in analysis.nodes]), _json(analysis.summary())))
        except BaseException:
            conn.close()
            p.unlink(missing_ok=True)
            raise
        s = cls(p, conn)
        s._write_chain(chain)
        s.set_candidates(candidates, analysis)
        return s

    @classmethod
    def open(cls, path: str | os.PathLike, *, check_model: bool = True,
             readonly: bool = False) -> Session:
        """Open an existing session. With `check_model`, a model file that changed since
        the session was made is an error (its measurements would describe another model)."""
        p = Path(path)
        if not p.exists():
            raise OmdpError(f"no session at {p}", "check the path (`omdp sessions` lists them)")
        if p.is_dir():
            raise OmdpError(f"{p} is a directory, not a session file", "give a .omdp file")
        conn = _connect(p, readonly)
        try:
            _check_schema(conn, p)
            s = cls(p, conn)
            if check_model:
                s.verify_model_file()
        except BaseException:
            conn.close()
            raise
        return s

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- model -------------------------------------------------------------------------------

    def model(self) -> ModelRef:
        r = self.conn.execute("SELECT * FROM model WHERE id = 1").fetchone()
        return ModelRef(r["path"], r["sha256"], r["builtin"], json.loads(r["input_shapes"]),
                        r["nodes"], json.loads(r["node_names"]), json.loads(r["node_flops"]))

    def summary(self) -> dict:
        r = self.conn.execute("SELECT summary FROM model WHERE id = 1").fetchone()
        return json.loads(r[0])

    def verify_model_file(self) -> None:
        """OmdpError when the model file's content is not what the session measured."""
        ref = self.model()
        if not ref.path or not Path(ref.path).exists():
            return  # built in, or moved away: nothing to compare (profile checks later)
        from backend.files import file_sha256

        if file_sha256(ref.path) != ref.sha256:
            raise OmdpError(f"the model file {ref.path} changed since session {self.path} "
                            f"was made (sha256 was {ref.sha256[:12]}…)",
                            "restore the original file, or start a new session with --session")

    def check_model(self, analysis) -> None:
        """The analysed model must be the session's model."""
        ref = self.model()
        if analysis.sha256 != ref.sha256:
            raise OmdpError(f"session {self.path} belongs to another model ({ref.label}, "
                            f"sha256 {ref.sha256[:12]}…)", "give that model, or a new --session")
        if ref.input_shapes and analysis.input_shapes and analysis.input_shapes != \
                ref.input_shapes:
            raise OmdpError(f"session {self.path} was made with input shapes "
                            f"{ref.input_shapes}, not {analysis.input_shapes}",
                            "use the same --input-shape, or a new --session")

    # -- candidates, devices, links -----------------------------------------------------------

    def candidates(self) -> list[int]:
        return [r[0] for r in self.conn.execute("SELECT position FROM candidates ORDER BY 1")]

    def candidate_cut_bytes(self) -> dict[int, int | None]:
        """Bytes crossing each candidate position, as analysed when it was marked."""
        return dict(self.conn.execute("SELECT position, cut_bytes FROM candidates"))

    def set_candidates(self, candidates: Sequence[int], analysis=None) -> None:
        with self.conn:
            self.conn.execute("DELETE FROM candidates")
            for p in sorted(set(candidates)):
                name = analysis.nodes[p - 1].name if analysis is not None and p > 0 else None
                cut = analysis.cuts[p].bytes if analysis is not None else None
                self.conn.execute("INSERT INTO candidates VALUES (?, ?, ?)", (p, name, cut))

    def chain(self) -> Chain:
        devices = [DeviceSpec.from_dict(json.loads(r["spec"]))
                   for r in self.conn.execute("SELECT spec FROM devices ORDER BY idx")]
        links = [LinkSpec(r["src"], r["dst"], r["bandwidth_mbps"], r["latency_ms"],
                          bool(r["is_default"]))
                 for r in self.conn.execute("SELECT * FROM links ORDER BY idx")]
        return Chain(devices, links, source=str(self.path))

    def device_configs(self) -> dict[str, str]:
        """Device name -> its current runtime configuration key."""
        if self._configs is None:
            self._configs = {r[0]: r[1] for r in
                             self.conn.execute("SELECT name, config FROM devices")}
        return dict(self._configs)

    def update_chain(self, chain: Chain) -> None:
        """Take new device options / link values; the chain (names, order) must not change:
        measurements are keyed by device name."""
        old = self.chain().names
        if chain.names != old:
            raise OmdpError(f"session {self.path} is for the chain {' → '.join(old)}, the "
                            f"devices file gives {' → '.join(chain.names)}",
                            "use the same device names in the same order, or a new --session")
        self._write_chain(chain)

    def _write_chain(self, chain: Chain) -> None:
        with self.conn:
            self.conn.execute("DELETE FROM devices")
            for i, d in enumerate(chain.devices):
                self.conn.execute("INSERT INTO devices VALUES (?, ?, ?, ?, ?, ?)",
                                  (i, d.name, d.kind, d.runtime, d.runtime_config().key(),
                                   _json(d.to_dict())))
            for i, lk in enumerate(chain.links):
                self.conn.execute(
                    "INSERT INTO links (idx, src, dst, bandwidth_mbps, latency_ms, is_default) "
                    "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(idx) DO UPDATE SET src=excluded.src, "
                    "dst=excluded.dst, bandwidth_mbps=excluded.bandwidth_mbps, "
                    "latency_ms=excluded.latency_ms, is_default=excluded.is_default",
                    (i, lk.src, lk.dst, lk.bandwidth_mbps, lk.latency_ms, int(lk.default)))
        self._configs = None

    def links_frame(self) -> pd.DataFrame:
        return pd.read_sql_query("SELECT * FROM links ORDER BY idx", self.conn)

    def set_link_measurement(self, link: int, bandwidth_mbps: float | None,
                             latency_ms: float | None) -> None:
        with self.conn:
            self.conn.execute("UPDATE links SET measured_bandwidth_mbps = ?, "
                              "measured_latency_ms = ?, measured_at = ? WHERE idx = ?",
                              (bandwidth_mbps, latency_ms, _now(), link))

    def set_bandwidths(self, values: Mapping[int, tuple[float, float]]) -> None:
        """The operator's current link values: {link index: (Mbit/s, latency ms)}."""
        n = self.conn.execute("SELECT COUNT(*) FROM links").fetchone()[0]
        for i, (bw, lat) in values.items():
            if not 0 <= i < n:
                raise OmdpError(f"link {i} does not exist", f"links are 0..{n - 1}")
            if not bw > 0 or not lat >= 0:
                raise OmdpError(f"link {i}: bandwidth must be > 0 and latency ≥ 0, got "
                                f"{bw} Mbit/s and {lat} ms", "give positive numbers")
        with self.conn:
            for i, (bw, lat) in values.items():
                self.conn.execute("INSERT INTO bandwidths VALUES (?, ?, ?, ?) ON CONFLICT(link) "
                                  "DO UPDATE SET bandwidth_mbps=excluded.bandwidth_mbps, "
                                  "latency_ms=excluded.latency_ms, updated_at=excluded.updated_at",
                                  (i, float(bw), float(lat), _now()))

    def bandwidths(self) -> list[tuple[float, float]]:
        """Current (Mbit/s, ms) per link: the operator's values, else the configured ones."""
        rows = self.conn.execute(
            "SELECT l.idx, COALESCE(b.bandwidth_mbps, l.bandwidth_mbps), "
            "COALESCE(b.latency_ms, l.latency_ms) FROM links l "
            "LEFT JOIN bandwidths b ON b.link = l.idx ORDER BY l.idx")
        return [(r[1], r[2]) for r in rows]

    # -- plan ----------------------------------------------------------------------------------

    def save_plan(self, plan: Plan) -> None:
        with self.conn:
            self.conn.execute("DELETE FROM plan")
            self.conn.executemany("INSERT INTO plan VALUES (?, ?, ?)",
                                  [(it.device, it.start, it.end) for it in plan.items])

    def plan_items(self) -> list[PlanItem]:
        order = {n: i for i, n in enumerate(self.chain().names)}
        items = [PlanItem(r[0], r[1], r[2]) for r in
                 self.conn.execute("SELECT device, seg_start, seg_end FROM plan")]
        return sorted(items, key=lambda it: (order.get(it.device, 0), it.start, it.end))

    def _done_keys(self, retry_errors: bool) -> set[tuple[str, int, int]]:
        statuses = ("ok",) if retry_errors else ("ok", "error")
        configs = self.device_configs()
        rows = self.conn.execute(
            f"SELECT device, seg_start, seg_end, config FROM measurements WHERE status IN "
            f"({','.join('?' * len(statuses))})", statuses)
        return {(r[0], r[1], r[2]) for r in rows if configs.get(r[0]) == r[3]}

    def missing(self, plan: Plan | Iterable[PlanItem],
                retry_errors: bool = False) -> list[PlanItem]:
        """Plan items with no finished measurement under the device's current config
        (errors count as finished unless `retry_errors`)."""
        items = plan.items if isinstance(plan, Plan) else list(plan)
        done = self._done_keys(retry_errors)
        return [it for it in items if (it.device, it.start, it.end) not in done]

    def progress(self) -> tuple[int, int]:
        """(finished, total) plan items for the current device configurations."""
        items = self.plan_items()
        done = self._done_keys(False)
        return sum((it.device, it.start, it.end) in done for it in items), len(items)

    # -- recording -----------------------------------------------------------------------------

    def start_run(self, device: str) -> int:
        with self.conn:
            cur = self.conn.execute("INSERT INTO runs (device, started_at) VALUES (?, ?)",
                                    (device, _now()))
        return int(cur.lastrowid)

    def record_hello(self, run: int, hello: Mapping[str, Any]) -> None:
        with self.conn:
            self.conn.execute("UPDATE runs SET hello = ? WHERE id = ?", (_json(dict(hello)), run))

    def finish_run(self, run: int, status: str, message: str | None = None) -> None:
        with self.conn:
            self.conn.execute("UPDATE runs SET finished_at = ?, status = ?, message = ? "
                              "WHERE id = ?", (_now(), status, message, run))

    def mark_pending(self, items: Iterable[PlanItem], run: int | None = None) -> None:
        configs = self.device_configs()
        now = _now()
        with self.conn:
            self.conn.executemany(
                "INSERT INTO measurements (device, seg_start, seg_end, config, status, run, "
                "created_at, updated_at) VALUES (?, ?, ?, ?, 'pending', ?, ?, ?) "
                "ON CONFLICT DO NOTHING",
                [(it.device, it.start, it.end, configs[it.device], run, now, now)
                 for it in items])

    def record_result(self, device: str, segment: tuple[int, int], *, load_ms: float,
                      samples: Sequence[float], stats: Mapping[str, Any],
                      runtime: Mapping[str, Any] | None = None, stop: str | None = None,
                      run: int | None = None, config: str | None = None) -> int | None:
        """Commit one measurement and all its samples in one transaction. Returns its id,
        or None when an ok measurement already exists (it is kept, never overwritten)."""
        cfg = config or self.device_configs()[device]
        now = _now()
        a, b = segment
        with self.conn:
            row = self.conn.execute(
                "INSERT INTO measurements (device, seg_start, seg_end, config, status, message, "
                "load_ms, median_ms, p10_ms, p90_ms, mean_ms, std_ms, rel_ci, samples, stop, "
                "stats, runtime, run, created_at, updated_at) "
                "VALUES (?, ?, ?, ?, 'ok', NULL, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT(device, seg_start, seg_end, config) DO UPDATE SET "
                "status='ok', message=NULL, load_ms=excluded.load_ms, "
                "median_ms=excluded.median_ms, p10_ms=excluded.p10_ms, p90_ms=excluded.p90_ms, "
                "mean_ms=excluded.mean_ms, std_ms=excluded.std_ms, rel_ci=excluded.rel_ci, "
                "samples=excluded.samples, stop=excluded.stop, stats=excluded.stats, "
                "runtime=excluded.runtime, run=excluded.run, updated_at=excluded.updated_at "
                "WHERE measurements.status <> 'ok' RETURNING id",
                (device, a, b, cfg, load_ms, stats.get("median"), stats.get("p10"),
                 stats.get("p90"), stats.get("mean"), stats.get("std"), stats.get("rel_ci"),
                 len(samples), stop, _json(dict(stats)), _json(dict(runtime or {})), run,
                 now, now)).fetchone()
            if row is None:
                return None
            mid = int(row[0])
            self.conn.execute("DELETE FROM samples WHERE measurement = ?", (mid,))
            self.conn.executemany("INSERT INTO samples VALUES (?, ?, ?)",
                                  [(mid, i, float(ms)) for i, ms in enumerate(samples)])
        return mid

    def record_error(self, device: str, segment: tuple[int, int], message: str, *,
                     run: int | None = None, config: str | None = None) -> int | None:
        """An error row for a segment that could not be measured (never replaces ok)."""
        cfg = config or self.device_configs()[device]
        now = _now()
        a, b = segment
        with self.conn:
            row = self.conn.execute(
                "INSERT INTO measurements (device, seg_start, seg_end, config, status, message, "
                "run, created_at, updated_at) VALUES (?, ?, ?, ?, 'error', ?, ?, ?, ?) "
                "ON CONFLICT(device, seg_start, seg_end, config) DO UPDATE SET status='error', "
                "message=excluded.message, run=excluded.run, updated_at=excluded.updated_at "
                "WHERE measurements.status <> 'ok' RETURNING id",
                (device, a, b, cfg, message, run, now, now)).fetchone()
        return int(row[0]) if row else None

    def record_node_times(self, device: str, times: Mapping[int, float], *, runtime: str,
                          runs: int, unattributed_ms: float = 0.0, total_ms: float = 0.0,
                          config: str | None = None) -> None:
        cfg = config or self.device_configs()[device]
        names = self.model().node_names
        with self.conn:
            self.conn.execute("DELETE FROM node_times WHERE device = ? AND config = ?",
                              (device, cfg))
            self.conn.executemany(
                "INSERT INTO node_times VALUES (?, ?, ?, ?, ?)",
                [(device, cfg, int(p), names[p] if 0 <= p < len(names) else None, float(ms))
                 for p, ms in sorted(times.items())])
            self.conn.execute(
                "INSERT OR REPLACE INTO node_profiles VALUES (?, ?, ?, ?, ?, ?, ?)",
                (device, cfg, runtime, runs, unattributed_ms, total_ms, _now()))

    def has_node_times(self, device: str) -> bool:
        cfg = self.device_configs().get(device)
        return self.conn.execute("SELECT 1 FROM node_profiles WHERE device = ? AND config = ?",
                                 (device, cfg)).fetchone() is not None

    # -- reading -------------------------------------------------------------------------------

    def results_frame(self, all_configs: bool = False) -> pd.DataFrame:
        """One row per (device, segment): measurements under the devices' current
        configurations (all of them with `all_configs`), plus plan items not measured yet
        as `pending`. Sorted by chain order, start, end."""
        configs = self.device_configs()
        order = {n: i for i, n in enumerate(self.chain().names)}
        rows = []
        current = set()  # (device, start, end) measured under the current configuration
        for r in self.conn.execute("SELECT * FROM measurements ORDER BY id"):
            is_current = configs.get(r["device"]) == r["config"]
            if is_current:
                current.add((r["device"], r["seg_start"], r["seg_end"]))
            elif not all_configs:
                continue
            rows.append({
                "device": r["device"], "start": r["seg_start"], "end": r["seg_end"],
                "median_ms": r["median_ms"], "p10_ms": r["p10_ms"], "p90_ms": r["p90_ms"],
                "samples": r["samples"], "status": r["status"], "message": r["message"],
                "load_ms": r["load_ms"], "mean_ms": r["mean_ms"], "std_ms": r["std_ms"],
                "rel_ci": r["rel_ci"], "stop": r["stop"],
                "device_index": order.get(r["device"], -1), "measurement_id": r["id"],
                "updated_at": r["updated_at"], "config": r["config"]})
        for it in self.plan_items():
            if (it.device, it.start, it.end) not in current:
                rows.append({"device": it.device, "start": it.start, "end": it.end,
                             "samples": 0, "status": "pending", "config": configs[it.device],
                             "device_index": order.get(it.device, -1)})
        frame = pd.DataFrame(rows, columns=RESULT_COLUMNS)
        frame["samples"] = frame["samples"].fillna(0).astype(int)
        return frame.sort_values(["device_index", "start", "end"], kind="stable",
                                 ignore_index=True)

    def samples(self, measurement_id: int) -> list[float]:
        return [r[0] for r in self.conn.execute(
            "SELECT ms FROM samples WHERE measurement = ? ORDER BY seq", (measurement_id,))]

    def node_times_frame(self, all_configs: bool = False) -> pd.DataFrame:
        """Per-node times (ms) per device: the *estimated* cost model's input."""
        frame = pd.read_sql_query(
            "SELECT device, config, position, name, ms FROM node_times ORDER BY device, position",
            self.conn)
        if not all_configs:
            configs = self.device_configs()
            current = frame["config"] == frame["device"].map(configs)
            frame = frame[current]
        return frame.drop(columns="config").reset_index(drop=True)

    def runs_frame(self) -> pd.DataFrame:
        return pd.read_sql_query("SELECT * FROM runs ORDER BY id", self.conn)

    # -- partitions and UI state ---------------------------------------------------------------

    def save_partitions(self, partitions: Sequence[Mapping[str, Any]]) -> None:
        """Replace the chosen partitions: each has `positions` and optionally `name`,
        `cost_ms` and anything else (kept as `details`)."""
        now = _now()
        with self.conn:
            self.conn.execute("DELETE FROM partitions")
            for p in partitions:
                details = {k: v for k, v in p.items() if k not in ("name", "positions", "cost_ms")}
                self.conn.execute("INSERT INTO partitions (name, positions, cost_ms, details, "
                                  "created_at) VALUES (?, ?, ?, ?, ?)",
                                  (p.get("name"), _json(list(p["positions"])), p.get("cost_ms"),
                                   _json(details), now))

    def partitions(self) -> list[dict[str, Any]]:
        out = []
        for r in self.conn.execute("SELECT * FROM partitions ORDER BY id"):
            out.append({"name": r["name"], "positions": json.loads(r["positions"]),
                        "cost_ms": r["cost_ms"], **json.loads(r["details"] or "{}")})
        return out

    def get_ui_state(self, key: str | None = None, default: Any = None) -> Any:
        """All UI state as a dict, or one value."""
        if key is None:
            return {r[0]: json.loads(r[1]) for r in self.conn.execute("SELECT * FROM ui_state")}
        r = self.conn.execute("SELECT value FROM ui_state WHERE key = ?", (key,)).fetchone()
        return json.loads(r[0]) if r else default

    def set_ui_state(self, key: str, value: Any) -> None:
        with self.conn:
            self.conn.execute("INSERT OR REPLACE INTO ui_state VALUES (?, ?)", (key, _json(value)))

    def get_meta(self, key: str, default: Any = None) -> Any:
        r = self.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        if r is None:
            return default
        try:
            return json.loads(r[0])
        except json.JSONDecodeError:
            return r[0]

    def set_meta(self, key: str, value: Any) -> None:
        with self.conn:
            self.conn.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, _json(value)))


# -- listing -----------------------------------------------------------------------------------

@dataclass
class SessionInfo:
    path: str
    model: str | None
    devices: list[str]
    done: int
    total: int
    errors: int
    modified: float  # file mtime (seconds since the epoch)
    problem: str | None = None  # why it could not be read

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "model": self.model, "devices": self.devices,
                "done": self.done, "total": self.total, "errors": self.errors,
                "modified": dt.datetime.fromtimestamp(self.modified).isoformat(timespec="seconds"),
                "problem": self.problem}


def list_sessions(folder: str | os.PathLike = DEFAULT_FOLDER) -> list[SessionInfo]:
    """Every `*.omdp` file in a folder, newest first; unreadable ones are listed with the
    reason instead of failing the listing."""
    root = Path(folder)
    if not root.is_dir():
        raise OmdpError(f"no session folder at {root}", "give an existing folder")
    out: list[SessionInfo] = []
    for p in root.glob(f"*{SUFFIX}"):
        wal = p.with_name(p.name + "-wal")
        mtime = max(p.stat().st_mtime, wal.stat().st_mtime if wal.exists() else 0.0)
        try:
            with Session.open(p, check_model=False, readonly=True) as s:
                done, total = s.progress()
                errors = int((s.results_frame()["status"] == "error").sum())
                out.append(SessionInfo(str(p), s.model().label, s.chain().names, done, total,
                                       errors, mtime))
        except (OmdpError, sqlite3.Error) as exc:
            out.append(SessionInfo(str(p), None, [], 0, 0, 0, mtime, str(exc)))
    return sorted(out, key=lambda s: s.modified, reverse=True)
