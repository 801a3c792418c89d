"""A profiling session in one SQLite file: what was asked, and everything measured so far.

Why SQLite: each result is committed as it arrives (one transaction per result), so a
crash, a kill -9 or a dropped device loses at most the segment being timed; a UNIQUE key
per (device, segment, runtime configuration) makes a resume do only what is missing and
never duplicate anything. The guarantees live here, in the Session API, so every front end
gets them: a session is created whole or not at all (sessionfile), opened by its exact
name, checked before it is trusted (integrity), profiled by one profiler at a time
(claim), and read without writing. See docs/session.md.

Why one module of ~1000 lines: `Session` is the one API over the file, and every method is
a transaction whose guarantee (claim checked, read-only refused, errors in one line) must
be visible next to the SQL it guards; the file-level work lives in `sessionfile`, the
claim in `claim`, the checks in `integrity`, the schema in `schema`.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import math
import os
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from backend import __version__
from backend.chain import Chain, DeviceSpec, LinkSpec
from backend.errors import OmdpError
from backend.files import file_sha256, os_error
from backend.profiling import claim, integrity, schema, sessionfile
from backend.profiling.plan import Plan, PlanItem, check_candidates
from backend.profiling.sessionfile import SessionExists

SCHEMA_VERSION = schema.VERSION
APP_ID = schema.APP_ID
SUFFIX = schema.SUFFIX
DEFAULT_FOLDER = Path("sessions")

RESULT_COLUMNS = [
    "device",
    "start",
    "end",
    "median_ms",
    "p10_ms",
    "p90_ms",
    "samples",
    "status",
    "message",
    "load_ms",
    "mean_ms",
    "std_ms",
    "rel_ci",
    "stop",
    "device_index",
    "measurement_id",
    "updated_at",
    "config",
    "used",  # the execution provider / OpenVINO device that ran it
    "throttled",  # why the numbers cannot be trusted (hot or slowed-down CPU), else None
]

__all__ = [
    "SCHEMA_VERSION",
    "ClaimLost",
    "ModelRef",
    "Session",
    "SessionExists",
    "SessionInfo",
    "default_path",
    "list_sessions",
]


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def default_path(model_name: str, folder: str | os.PathLike = DEFAULT_FOLDER) -> Path:
    """`sessions/<model stem>.omdp`: rerunning the same command resumes the same session.
    The stem is taken as it is (any character a file name may hold)."""
    stem = Path(model_name).stem or "model"
    return Path(folder) / f"{stem}{SUFFIX}"


class ClaimLost(OmdpError):
    """This profiler's claim on its session was taken over: it must stop recording."""


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


def _read_only_fix(reason: str) -> str:
    if "filesystem" in reason:
        return "copy the session to a writable folder and use the copy"
    if "folder" in reason:
        return "make the folder writable, or copy the session elsewhere"
    return "make it writable (chmod u+w), or work on a copy"


class Session:
    """One session file. Use from one thread (the event loop's); other processes may read
    at the same time, and at most one profiles it (`claim_profiler`)."""

    def __init__(self, path: Path, conn: sqlite3.Connection, read_only: str | None = None):
        self.path = path
        self.conn = conn
        self.read_only = read_only  # why it cannot be written (None: it can)
        self._configs: dict[str, str] | None = None
        self._claim: claim.Holder | None = None  # the profiler claim this session holds

    # -- lifecycle ---------------------------------------------------------------------------

    @classmethod
    def create(
        cls,
        path: str | os.PathLike,
        analysis,
        chain: Chain,
        candidates: Sequence[int],
        *,
        builtin: str | None = None,
        claim_profiler: bool = False,
        in_memory: bool = False,
        settings: Callable[[Session], None] | None = None,
    ) -> Session:
        """A new session for an analysed model on a chain, whole or not at all: built in
        memory, then put at `path` only if nothing is there (SessionExists otherwise, even
        when another process wins the name a moment before). With `claim_profiler` the
        file appears already claimed by this process, so no other profiler can slip in
        before `claim_profiler()`. With `in_memory` nothing is written anywhere (a dry run).
        `settings(session)` writes what else the new session starts with, before it exists.
        """
        p = Path(path)
        if not in_memory and sessionfile.present(p):
            raise sessionfile.exists_error(p)
        conn = sqlite3.connect(":memory:")
        conn.row_factory = sqlite3.Row
        s = cls(p, conn)
        try:
            s._build(analysis, chain, candidates, builtin)
            if settings is not None:
                settings(s)
            holder = claim.Holder.me() if claim_profiler and not in_memory else None
            if holder is not None:
                with conn:
                    claim.write(conn, holder)
            if in_memory:
                return s
            data = conn.serialize()
        finally:
            if not in_memory:
                conn.close()
        sessionfile.create_file(p, data)
        s = cls.open(p, check_model=False)
        s._claim = holder
        return s

    def _build(
        self, analysis, chain: Chain, candidates: Sequence[int], builtin: str | None
    ) -> None:
        conn = self.conn
        conn.executescript(f"BEGIN;\n{schema.SQL}\nCOMMIT;")
        with conn:
            conn.execute("INSERT INTO schema_version VALUES (?)", (schema.VERSION,))
            conn.executemany(
                "INSERT INTO meta VALUES (?, ?)",
                [("app", schema.APP_ID), ("created_at", _now()), ("omdp_version", __version__)],
            )
            path_text = str(Path(analysis.path).resolve()) if analysis.path else None
            conn.execute(
                "INSERT INTO model VALUES (1, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    path_text,
                    analysis.sha256,
                    builtin,
                    _json(analysis.input_shapes),
                    analysis.n,
                    _json([nd.name for nd in analysis.nodes]),
                    _json([nd.flops for nd in analysis.nodes]),
                    _json(analysis.summary()),
                ),
            )
        self._write_chain(chain)
        self.set_candidates(candidates, analysis)

    @classmethod
    def open(
        cls, path: str | os.PathLike, *, check_model: bool = True, readonly: bool = False
    ) -> Session:
        """Open an existing session, checked whole (one line naming what is damaged).

        `readonly` reads without ever writing (and works on read-only files and
        filesystems). Otherwise the session is writable when its file and folder are;
        when they are not it still reads, and `require_writable` / any write says why
        in one line. With `check_model`, a model file that changed since the session was
        made is an error (its measurements would describe another model)."""
        p = Path(path)
        sessionfile.check_file(p)
        why = "it was opened for reading" if readonly else sessionfile.why_readonly(p)
        try:
            conn = sessionfile.connect(p, write=why is None)
        except sqlite3.Error as exc:
            raise sessionfile.sqlite_error(exc, p, "open it") from None
        try:
            if schema.needs_upgrade(conn):
                conn = _upgraded(conn, p, writable=why is None)
            integrity.check(conn, p)
            s = cls(p, conn, why)
            if check_model:
                s.verify_model_file()
        except BaseException:
            conn.close()
            raise
        return s

    def to_memory(self) -> Session:
        """An in-memory copy to try changes on (a dry run): this one is closed, and nothing
        done to the copy reaches the file."""
        mem = sqlite3.connect(":memory:")
        self.conn.backup(mem)
        mem.row_factory = sqlite3.Row
        self.close()
        return Session(self.path, mem)

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- writing -----------------------------------------------------------------------------

    @property
    def writable(self) -> bool:
        return self.read_only is None

    def require_writable(self, doing: str = "write to it") -> None:
        """OmdpError (one line: which file, why) unless this session can be written. For
        writers with other side effects (an export file): call it before any of them."""
        if self.read_only is not None:
            raise OmdpError(
                f"cannot {doing}: session {self.path} is read-only ({self.read_only})",
                _read_only_fix(self.read_only),
            )

    @contextlib.contextmanager
    def _writing(self, doing: str, *, measuring: bool = False) -> Iterator[sqlite3.Connection]:
        """One write transaction. `measuring` writes (timings, runs) also check, inside the
        transaction, that no other profiler holds the session."""
        self.require_writable(doing)
        try:
            with self.conn:
                yield self.conn
                if measuring:
                    self._check_claim()
        except sqlite3.Error as exc:
            raise sessionfile.sqlite_error(exc, self.path, doing) from None

    # -- one profiler at a time ----------------------------------------------------------------

    def profiler(self) -> claim.Holder | None:
        """The live profiler holding this session, if any."""
        return claim.live_holder(self.conn)

    @contextlib.contextmanager
    def claim_profiler(
        self,
        on_lost: Callable[[], None] | None = None,
    ) -> Iterator[claim.Holder]:
        """Hold the session as its only profiler for the `with` block.

        Another live profiler (this host or another sharing the file) makes this fail at
        once with one line naming it; a stale claim (its process is gone) is taken over,
        and runs it left without an end are recorded as interrupted. While held, the file
        is in WAL mode (readers never wait) and a heartbeat keeps the claim fresh; if
        another process takes it over anyway (this one was frozen past the stale limit),
        `on_lost` is called from the heartbeat thread and every later measurement write
        raises ClaimLost instead of mixing two profilers' timings."""
        holder = self._take_claim()
        self._set_wal(True)
        beat = claim.Heartbeat(
            lambda: sessionfile.connect(self.path, write=True), holder.token, on_lost
        )
        beat.start()
        try:
            yield holder
        finally:
            beat.stop()
            with contextlib.suppress(OmdpError), self._writing("release the profiler claim"):
                claim.release(self.conn, holder.token)
            self._claim = None
            self._set_wal(False)

    @property
    def claimed(self) -> bool:
        """Whether this session object holds the profiler claim now."""
        return self._claim is not None

    def _take_claim(self) -> claim.Holder:
        self.require_writable("profile it")
        try:
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                held = claim.read(self.conn)
                mine = (
                    self._claim is not None and held is not None and held.token == self._claim.token
                )
                if held is not None and not mine and not held.stale():
                    raise OmdpError(
                        f"session {self.path} is being profiled by {held.describe()}",
                        "wait for it to finish or stop it (`omdp results` reads "
                        "the session meanwhile)",
                    )
                holder = self._claim if mine and self._claim else claim.Holder.me()
                claim.write(self.conn, holder)
                self._settle_runs(None if mine else held)
                self.conn.commit()
            except BaseException:
                self.conn.rollback()
                raise
        except sqlite3.Error as exc:
            raise sessionfile.sqlite_error(exc, self.path, "claim it for profiling") from None
        self._claim = holder
        return holder

    def _settle_runs(self, previous: claim.Holder | None) -> None:
        """Runs with no end belong to a profiler that is gone: record how they ended."""
        who = f" ({previous.describe()})" if previous is not None else ""
        self.conn.execute(
            "UPDATE runs SET status = 'interrupted', message = ?, finished_at = COALESCE("
            "(SELECT MAX(updated_at) FROM measurements m WHERE m.run = runs.id), started_at) "
            "WHERE status IS NULL",
            (f"the profiler{who} ended without recording the end of this run",),
        )

    def _check_claim(self) -> None:
        held = claim.read(self.conn)
        if self._claim is not None:
            if held is None or held.token != self._claim.token:
                by = f"by {held.describe()}" if held is not None else "(its claim was removed)"
                raise ClaimLost(
                    f"session {self.path} was taken over {by} while this profiler ran",
                    "what it measured before is saved; run it "
                    "again when the other profiler is done",
                )
        elif held is not None and not held.stale():
            raise OmdpError(
                f"session {self.path} is being profiled by {held.describe()}",
                "wait for it to finish or stop it",
            )

    def _set_wal(self, on: bool) -> None:
        """WAL while profiling (readers never wait); the rollback journal at rest (one
        self-contained file). Switching back needs the file to itself: if another
        connection has it open, it stays in WAL, which is as safe."""
        if not self.writable:
            return
        try:
            if on:
                self.conn.execute("PRAGMA journal_mode = WAL")
                return
            self.conn.execute("PRAGMA busy_timeout = 0")
            try:
                self.conn.execute("PRAGMA journal_mode = DELETE")
            finally:
                self.conn.execute(f"PRAGMA busy_timeout = {sessionfile.BUSY_MS}")
        except sqlite3.Error:
            pass

    # -- model -------------------------------------------------------------------------------

    def model(self) -> ModelRef:
        r = self.conn.execute("SELECT * FROM model WHERE id = 1").fetchone()
        return ModelRef(
            r["path"],
            r["sha256"],
            r["builtin"],
            json.loads(r["input_shapes"]),
            r["nodes"],
            json.loads(r["node_names"]),
            json.loads(r["node_flops"]),
        )

    def summary(self) -> dict:
        r = self.conn.execute("SELECT summary FROM model WHERE id = 1").fetchone()
        return json.loads(r[0])

    def verify_model_file(self) -> None:
        """OmdpError when the model file's content is not what the session measured."""
        ref = self.model()
        if not ref.path or not Path(ref.path).is_file():
            return  # built in, or moved away: nothing to compare (profile checks later)
        try:
            digest = file_sha256(ref.path)
        except OSError as exc:
            raise os_error(exc, ref.path, "read the model file") from None
        if digest != ref.sha256:
            raise OmdpError(
                f"the model file {ref.path} changed since session {self.path} "
                f"was made (sha256 was {ref.sha256[:12]}…)",
                "restore the original file, or start a new session with --session",
            )

    def check_model(self, analysis) -> None:
        """The analysed model must be the session's model."""
        ref = self.model()
        if analysis.sha256 != ref.sha256:
            raise OmdpError(
                f"session {self.path} belongs to another model ({ref.label}, "
                f"sha256 {ref.sha256[:12]}…)",
                "give that model, or a new --session",
            )
        if ref.input_shapes and analysis.input_shapes and analysis.input_shapes != ref.input_shapes:
            raise OmdpError(
                f"session {self.path} was made with input shapes "
                f"{ref.input_shapes}, not {analysis.input_shapes}",
                "use the same --input-shape, or a new --session",
            )

    # -- candidates, devices, links -----------------------------------------------------------

    def candidates(self) -> list[int]:
        return [r[0] for r in self.conn.execute("SELECT position FROM candidates ORDER BY 1")]

    def candidate_cut_bytes(self) -> dict[int, int | None]:
        """Bytes crossing each candidate position, as analysed when it was marked."""
        return dict(self.conn.execute("SELECT position, cut_bytes FROM candidates"))

    def set_candidates(self, candidates: Sequence[int], analysis=None) -> None:
        """Store the split positions: interior ones only (0 and N are always implied)."""
        n = analysis.n if analysis is not None else self.model().nodes
        interior = check_candidates(n, candidates)
        with self._writing("store the candidates"):
            self.conn.execute("DELETE FROM candidates")
            for p in interior:
                name = analysis.nodes[p - 1].name if analysis is not None else None
                cut = analysis.cuts[p].bytes if analysis is not None else None
                self.conn.execute("INSERT INTO candidates VALUES (?, ?, ?)", (p, name, cut))

    def chain(self) -> Chain:
        devices = [
            DeviceSpec.from_dict(json.loads(r["spec"]))
            for r in self.conn.execute("SELECT spec FROM devices ORDER BY idx")
        ]
        links = [
            LinkSpec(
                r["src"], r["dst"], r["bandwidth_mbps"], r["latency_ms"], bool(r["is_default"])
            )
            for r in self.conn.execute("SELECT * FROM links ORDER BY idx")
        ]
        return Chain(devices, links, source=str(self.path))

    def device_configs(self) -> dict[str, str]:
        """Device name -> its current runtime configuration key."""
        if self._configs is None:
            self._configs = {
                r[0]: r[1] for r in self.conn.execute("SELECT name, config FROM devices")
            }
        return dict(self._configs)

    def check_chain(self, chain: Chain) -> None:
        """The chain (names, order) must be the session's: measurements are keyed by
        device name."""
        old = self.chain().names
        if chain.names != old:
            raise OmdpError(
                f"session {self.path} is for the chain {' → '.join(old)}, the "
                f"devices file gives {' → '.join(chain.names)}",
                "use the same device names in the same order, or a new --session",
            )

    def update_chain(self, chain: Chain) -> None:
        """Take new device options / link values for the same chain (`check_chain`)."""
        self.check_chain(chain)
        self._write_chain(chain)

    def _write_chain(self, chain: Chain) -> None:
        with self._writing("store the device chain"):
            self.conn.execute("DELETE FROM devices")
            for i, d in enumerate(chain.devices):
                self.conn.execute(
                    "INSERT INTO devices VALUES (?, ?, ?, ?, ?, ?)",
                    (i, d.name, d.kind, d.runtime, d.runtime_config().key(), _json(d.to_dict())),
                )
            for i, lk in enumerate(chain.links):
                self.conn.execute(
                    "INSERT INTO links (idx, src, dst, bandwidth_mbps, latency_ms, is_default) "
                    "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(idx) DO UPDATE SET src=excluded.src, "
                    "dst=excluded.dst, bandwidth_mbps=excluded.bandwidth_mbps, "
                    "latency_ms=excluded.latency_ms, is_default=excluded.is_default",
                    (i, lk.src, lk.dst, lk.bandwidth_mbps, lk.latency_ms, int(lk.default)),
                )
        self._configs = None

    def links_frame(self) -> pd.DataFrame:
        return pd.read_sql_query("SELECT * FROM links ORDER BY idx", self.conn)

    def set_link_measurement(
        self, link: int, bandwidth_mbps: float | None, latency_ms: float | None
    ) -> None:
        with self._writing("store a link measurement"):
            self.conn.execute(
                "UPDATE links SET measured_bandwidth_mbps = ?, "
                "measured_latency_ms = ?, measured_at = ? WHERE idx = ?",
                (bandwidth_mbps, latency_ms, _now(), link),
            )

    def set_bandwidths(self, values: Mapping[int, tuple[float, float]]) -> None:
        """The operator's current link values: {link index: (Mbit/s, latency ms)}."""
        n = self.conn.execute("SELECT COUNT(*) FROM links").fetchone()[0]
        for i, (bw, lat) in values.items():
            if not 0 <= i < n:
                raise OmdpError(f"link {i} does not exist", f"links are 0..{n - 1}")
            if not bw > 0 or not lat >= 0:
                raise OmdpError(
                    f"link {i}: bandwidth must be > 0 and latency ≥ 0, got "
                    f"{bw} Mbit/s and {lat} ms",
                    "give positive numbers",
                )
        with self._writing("store link values"):
            for i, (bw, lat) in values.items():
                self.conn.execute(
                    "INSERT INTO bandwidths VALUES (?, ?, ?, ?) ON CONFLICT(link) "
                    "DO UPDATE SET bandwidth_mbps=excluded.bandwidth_mbps, "
                    "latency_ms=excluded.latency_ms, updated_at=excluded.updated_at",
                    (i, float(bw), float(lat), _now()),
                )

    def bandwidths(self) -> list[tuple[float, float]]:
        """Current (Mbit/s, ms) per link: the operator's values, else the configured ones."""
        rows = self.conn.execute(
            "SELECT l.idx, COALESCE(b.bandwidth_mbps, l.bandwidth_mbps), "
            "COALESCE(b.latency_ms, l.latency_ms) FROM links l "
            "LEFT JOIN bandwidths b ON b.link = l.idx ORDER BY l.idx"
        )
        return [(r[1], r[2]) for r in rows]

    # -- plan ----------------------------------------------------------------------------------

    def save_plan(self, plan: Plan) -> None:
        with self._writing("store the plan"):
            self.conn.execute("DELETE FROM plan")
            self.conn.executemany(
                "INSERT INTO plan VALUES (?, ?, ?)",
                [(it.device, it.start, it.end) for it in plan.items],
            )

    def plan_items(self) -> list[PlanItem]:
        order = {n: i for i, n in enumerate(self.chain().names)}
        items = [
            PlanItem(r[0], r[1], r[2])
            for r in self.conn.execute("SELECT device, seg_start, seg_end FROM plan")
        ]
        return sorted(items, key=lambda it: (order.get(it.device, 0), it.start, it.end))

    def _done_keys(self, retry_errors: bool) -> set[tuple[str, int, int]]:
        """Finished (device, start, end) under the current configurations. An error counts
        as finished only where the same device and configuration measured something: a
        configuration in which every segment failed (a runtime that is not installed) is
        spoiled, not finished, and is measured again. A measurement flagged as throttled
        is finished (`--remeasure throttled` measures it again)."""
        configs = self.device_configs()
        rows = [
            r
            for r in self.conn.execute(
                "SELECT device, seg_start, seg_end, config, status FROM measurements "
                "WHERE status IN ('ok', 'error')"
            )
            if configs.get(r[0]) == r[3]
        ]
        measured = {r[0] for r in rows if r[4] == "ok"}
        return {
            (r[0], r[1], r[2])
            for r in rows
            if r[4] == "ok" or (r[4] == "error" and not retry_errors and r[0] in measured)
        }

    def spoiled(self) -> dict[str, str]:
        """Devices whose current configuration has only failed segments -> the first error."""
        configs = self.device_configs()
        first: dict[str, str] = {}
        ok: set[str] = set()
        for r in self.conn.execute(
            "SELECT device, config, status, message FROM measurements "
            "WHERE status IN ('ok', 'error') ORDER BY id"
        ):
            if configs.get(r[0]) != r[1]:
                continue
            if r[2] == "ok":
                ok.add(r[0])
            else:
                first.setdefault(r[0], r[3] or "error")
        return {d: m for d, m in first.items() if d not in ok}

    def missing(
        self,
        plan: Plan | Iterable[PlanItem],
        retry_errors: bool = False,
    ) -> list[PlanItem]:
        """Plan items with no finished measurement under the device's current config
        (errors count as finished unless `retry_errors`, or unless the configuration is
        spoiled: see `_done_keys`)."""
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
        with self._writing("record a run", measuring=True):
            cur = self.conn.execute(
                "INSERT INTO runs (device, started_at) VALUES (?, ?) RETURNING id", (device, _now())
            )
            run = int(cur.fetchone()[0])
        return run

    def record_hello(self, run: int, hello: Mapping[str, Any]) -> None:
        with self._writing("record a run", measuring=True):
            self.conn.execute("UPDATE runs SET hello = ? WHERE id = ?", (_json(dict(hello)), run))

    def finish_run(self, run: int, status: str, message: str | None = None) -> None:
        with self._writing("record a run", measuring=True):
            self.conn.execute(
                "UPDATE runs SET finished_at = ?, status = ?, message = ? WHERE id = ?",
                (_now(), status, message, run),
            )

    def mark_pending(self, items: Iterable[PlanItem], run: int | None = None) -> None:
        configs = self.device_configs()
        now = _now()
        with self._writing("record a measurement", measuring=True):
            self.conn.executemany(
                "INSERT INTO measurements (device, seg_start, seg_end, config, status, run, "
                "created_at, updated_at) VALUES (?, ?, ?, ?, 'pending', ?, ?, ?) "
                "ON CONFLICT DO NOTHING",
                [(it.device, it.start, it.end, configs[it.device], run, now, now) for it in items],
            )

    def record_result(
        self,
        device: str,
        segment: tuple[int, int],
        *,
        load_ms: float,
        samples: Sequence[float],
        stats: Mapping[str, Any],
        runtime: Mapping[str, Any] | None = None,
        stop: str | None = None,
        run: int | None = None,
        config: str | None = None,
        used: str | None = None,
        conditions: Mapping[str, Any] | None = None,
        throttled: str | None = None,
    ) -> int | None:
        """Commit one measurement and all its samples in one transaction. Returns its id,
        or None when an ok measurement already exists (it is kept, never overwritten,
        unless it was flagged `throttled`: a new measurement replaces that one)."""
        cfg = config or self.device_configs()[device]
        now = _now()
        a, b = segment
        with self._writing("record a measurement", measuring=True):
            row = self.conn.execute(
                "INSERT INTO measurements (device, seg_start, seg_end, config, status, message, "
                "load_ms, median_ms, p10_ms, p90_ms, mean_ms, std_ms, rel_ci, samples, stop, "
                "stats, runtime, run, created_at, updated_at, used, conditions, throttled) "
                f"VALUES (?, ?, ?, ?, 'ok', NULL, {', '.join('?' * 17)}) "
                "ON CONFLICT(device, seg_start, seg_end, config) DO UPDATE SET "
                "status='ok', message=NULL, load_ms=excluded.load_ms, "
                "median_ms=excluded.median_ms, p10_ms=excluded.p10_ms, p90_ms=excluded.p90_ms, "
                "mean_ms=excluded.mean_ms, std_ms=excluded.std_ms, rel_ci=excluded.rel_ci, "
                "samples=excluded.samples, stop=excluded.stop, stats=excluded.stats, "
                "runtime=excluded.runtime, run=excluded.run, updated_at=excluded.updated_at, "
                "used=excluded.used, conditions=excluded.conditions, throttled=excluded.throttled "
                "WHERE measurements.status <> 'ok' OR measurements.throttled IS NOT NULL "
                "RETURNING id",
                (
                    device,
                    a,
                    b,
                    cfg,
                    load_ms,
                    stats.get("median"),
                    stats.get("p10"),
                    stats.get("p90"),
                    stats.get("mean"),
                    stats.get("std"),
                    stats.get("rel_ci"),
                    len(samples),
                    stop,
                    _json(dict(stats)),
                    _json(dict(runtime or {})),
                    run,
                    now,
                    now,
                    used,
                    _json(dict(conditions)) if conditions else None,
                    throttled,
                ),
            ).fetchone()
            if row is None:
                return None
            mid = int(row[0])
            self.conn.execute("DELETE FROM samples WHERE measurement = ?", (mid,))
            self.conn.executemany(
                "INSERT INTO samples VALUES (?, ?, ?)",
                [(mid, i, float(ms)) for i, ms in enumerate(samples)],
            )
        return mid

    def retire(self, keys: Iterable[tuple[str, int, int]], reason: str) -> int:
        """Move the current measurements of these (device, start, end) into the history,
        with their samples, so they are measured again (`missing` lists them). Nothing is
        deleted: the history keeps every earlier result. Returns how many were moved."""
        configs = self.device_configs()
        now = _now()
        moved = 0
        with self._writing("re-measure", measuring=True):
            for device, a, b in keys:
                row = self.conn.execute(
                    "SELECT * FROM measurements WHERE device = ? AND seg_start = ? "
                    "AND seg_end = ? AND config = ? AND status IN ('ok', 'error')",
                    (device, a, b, configs.get(device)),
                ).fetchone()
                if row is None:
                    continue
                hid = self.conn.execute(
                    "INSERT INTO measurement_history (measurement, device, seg_start, seg_end, "
                    "config, status, message, median_ms, p10_ms, p90_ms, rel_ci, samples, stop, "
                    "stats, runtime, run, created_at, retired_at, reason, used, conditions, "
                    "throttled) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, "
                    "?, ?, ?) RETURNING id",
                    (
                        *(row[c] for c in ("id", "device", "seg_start", "seg_end", "config")),
                        *(row[c] for c in ("status", "message", "median_ms", "p10_ms")),
                        *(row[c] for c in ("p90_ms", "rel_ci", "samples", "stop", "stats")),
                        row["runtime"],
                        row["run"],
                        row["updated_at"],
                        now,
                        reason,
                        *(row[c] for c in ("used", "conditions", "throttled")),
                    ),
                ).fetchone()[0]
                self.conn.execute(
                    "INSERT INTO history_samples SELECT ?, seq, ms FROM samples "
                    "WHERE measurement = ?",
                    (hid, row["id"]),
                )
                self.conn.execute("DELETE FROM samples WHERE measurement = ?", (row["id"],))
                self.conn.execute("DELETE FROM measurements WHERE id = ?", (row["id"],))
                moved += 1
        return moved

    def history_frame(self) -> pd.DataFrame:
        """Measurements replaced by re-measuring, oldest first (with why)."""
        return pd.read_sql_query(
            "SELECT h.*, (SELECT count(*) FROM history_samples s WHERE s.history = h.id) "
            "AS kept_samples FROM measurement_history h ORDER BY h.id",
            self.conn,
        )

    def record_error(
        self,
        device: str,
        segment: tuple[int, int],
        message: str,
        *,
        run: int | None = None,
        config: str | None = None,
    ) -> int | None:
        """An error row for a segment that could not be measured (never replaces ok)."""
        cfg = config or self.device_configs()[device]
        now = _now()
        a, b = segment
        with self._writing("record a measurement", measuring=True):
            row = self.conn.execute(
                "INSERT INTO measurements (device, seg_start, seg_end, config, status, message, "
                "run, created_at, updated_at) VALUES (?, ?, ?, ?, 'error', ?, ?, ?, ?) "
                "ON CONFLICT(device, seg_start, seg_end, config) DO UPDATE SET status='error', "
                "message=excluded.message, run=excluded.run, updated_at=excluded.updated_at "
                "WHERE measurements.status <> 'ok' RETURNING id",
                (device, a, b, cfg, message, run, now, now),
            ).fetchone()
        return int(row[0]) if row else None

    def record_node_times(
        self,
        device: str,
        times: Mapping[int, float],
        *,
        runtime: str,
        runs: int,
        unattributed_ms: float = 0.0,
        total_ms: float = 0.0,
        config: str | None = None,
    ) -> None:
        cfg = config or self.device_configs()[device]
        names = self.model().node_names
        with self._writing("record per-node times", measuring=True):
            self.conn.execute(
                "DELETE FROM node_times WHERE device = ? AND config = ?", (device, cfg)
            )
            self.conn.executemany(
                "INSERT INTO node_times VALUES (?, ?, ?, ?, ?)",
                [
                    (device, cfg, int(p), names[p] if 0 <= p < len(names) else None, float(ms))
                    for p, ms in sorted(times.items())
                ],
            )
            self.conn.execute(
                "INSERT OR REPLACE INTO node_profiles VALUES (?, ?, ?, ?, ?, ?, ?)",
                (device, cfg, runtime, runs, unattributed_ms, total_ms, _now()),
            )

    def has_node_times(self, device: str) -> bool:
        cfg = self.device_configs().get(device)
        return (
            self.conn.execute(
                "SELECT 1 FROM node_profiles WHERE device = ? AND config = ?", (device, cfg)
            ).fetchone()
            is not None
        )

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
            rows.append(
                {
                    "device": r["device"],
                    "start": r["seg_start"],
                    "end": r["seg_end"],
                    "median_ms": r["median_ms"],
                    "p10_ms": r["p10_ms"],
                    "p90_ms": r["p90_ms"],
                    "samples": r["samples"],
                    "status": r["status"],
                    "message": r["message"],
                    "load_ms": r["load_ms"],
                    "mean_ms": r["mean_ms"],
                    "std_ms": r["std_ms"],
                    "rel_ci": r["rel_ci"],
                    "stop": r["stop"],
                    "device_index": order.get(r["device"], -1),
                    "measurement_id": r["id"],
                    "updated_at": r["updated_at"],
                    "config": r["config"],
                    "used": r["used"],
                    "throttled": r["throttled"],
                }
            )
        for it in self.plan_items():
            if (it.device, it.start, it.end) not in current:
                rows.append(
                    {
                        "device": it.device,
                        "start": it.start,
                        "end": it.end,
                        "samples": 0,
                        "status": "pending",
                        "config": configs[it.device],
                        "device_index": order.get(it.device, -1),
                    }
                )
        frame = pd.DataFrame(rows, columns=RESULT_COLUMNS)
        frame["samples"] = frame["samples"].fillna(0).astype(int)
        return frame.sort_values(["device_index", "start", "end"], kind="stable", ignore_index=True)

    def samples(self, measurement_id: int) -> list[float]:
        """A measurement's raw timings (ms), in run order. Checked here rather than on open
        (this table is the large one): a value that is not a finite time is damage."""
        out = []
        for seq, ms in self.conn.execute(
            "SELECT seq, ms FROM samples WHERE measurement = ? ORDER BY seq", (measurement_id,)
        ):
            if not isinstance(ms, int | float) or not math.isfinite(ms) or ms < 0:
                raise OmdpError(
                    f"{self.path} is damaged: samples.ms holds {ms!r} in sample "
                    f"{seq} of measurement {measurement_id}, not a finite time ≥ 0",
                    sessionfile.FIX_DAMAGED,
                )
            out.append(float(ms))
        return out

    def node_times_frame(self, all_configs: bool = False) -> pd.DataFrame:
        """Per-node times (ms) per device: the *estimated* cost model's input."""
        frame = pd.read_sql_query(
            "SELECT device, config, position, name, ms FROM node_times ORDER BY device, position",
            self.conn,
        )
        if not all_configs:
            configs = self.device_configs()
            current = frame["config"] == frame["device"].map(configs)
            frame = frame[current]
        return frame.drop(columns="config").reset_index(drop=True)

    def runs_frame(self) -> pd.DataFrame:
        """One row per agent run. A run without an end while no profiler holds the session
        was cut short (its profiler was killed): shown as `interrupted`, as the next
        profiler records it."""
        frame = pd.read_sql_query("SELECT * FROM runs ORDER BY id", self.conn)
        if self.profiler() is None:
            frame["status"] = frame["status"].fillna("interrupted")
        return frame

    # -- partitions and UI state ---------------------------------------------------------------

    def save_partitions(self, partitions: Sequence[Mapping[str, Any]]) -> None:
        """Replace the chosen partitions: each has `positions` and optionally `name`,
        `cost_ms` and anything else (kept as `details`)."""
        now = _now()
        with self._writing("store partitions"):
            self.conn.execute("DELETE FROM partitions")
            for p in partitions:
                details = {k: v for k, v in p.items() if k not in ("name", "positions", "cost_ms")}
                self.conn.execute(
                    "INSERT INTO partitions (name, positions, cost_ms, details, "
                    "created_at) VALUES (?, ?, ?, ?, ?)",
                    (
                        p.get("name"),
                        _json(list(p["positions"])),
                        p.get("cost_ms"),
                        _json(details),
                        now,
                    ),
                )

    def partitions(self) -> list[dict[str, Any]]:
        out = []
        for r in self.conn.execute("SELECT * FROM partitions ORDER BY id"):
            out.append(
                {
                    "name": r["name"],
                    "positions": json.loads(r["positions"]),
                    "cost_ms": r["cost_ms"],
                    **json.loads(r["details"] or "{}"),
                }
            )
        return out

    # -- validations (chained runs of a partition) -----------------------------------------------

    def save_validation(self, key: Mapping[str, Any], summary: Mapping[str, Any]) -> None:
        """Store one validation, replacing an earlier one of the same partition under the
        same configurations, link values and objective. `key`: positions, configs, links,
        objective; `summary`: cost_model, frames, measured, predicted, error_pct,
        output_ok, report (a JSON-ready dict)."""
        with self._writing("store a validation"):
            self.conn.execute(
                "INSERT OR REPLACE INTO validations (positions, configs, links, objective, "
                "cost_model, frames, measured, predicted, error_pct, output_ok, report, "
                "created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    _json(list(key["positions"])),
                    _json(dict(key["configs"])),
                    _json([list(v) for v in key["links"]]),
                    key["objective"],
                    summary["cost_model"],
                    summary["frames"],
                    summary["measured"],
                    summary["predicted"],
                    summary["error_pct"],
                    int(bool(summary["output_ok"])),
                    _json(summary["report"]),
                    _now(),
                ),
            )

    def validations(self) -> list[dict[str, Any]]:
        """Every stored validation, oldest first, JSON columns decoded."""
        out = []
        for r in self.conn.execute("SELECT * FROM validations ORDER BY id"):
            row = dict(r)
            for col in ("positions", "configs", "links", "report"):
                row[col] = json.loads(row[col])
            row["output_ok"] = bool(row["output_ok"])
            out.append(row)
        return out

    def get_ui_state(self, key: str | None = None, default: Any = None) -> Any:
        """All UI state as a dict, or one value."""
        if key is None:
            return {r[0]: json.loads(r[1]) for r in self.conn.execute("SELECT * FROM ui_state")}
        r = self.conn.execute("SELECT value FROM ui_state WHERE key = ?", (key,)).fetchone()
        return json.loads(r[0]) if r else default

    def set_ui_state(self, key: str, value: Any) -> None:
        with self._writing("store UI state"):
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
        with self._writing("store a setting"):
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
        return {
            "path": self.path,
            "model": self.model,
            "devices": self.devices,
            "done": self.done,
            "total": self.total,
            "errors": self.errors,
            "modified": dt.datetime.fromtimestamp(self.modified).isoformat(timespec="seconds"),
            "problem": self.problem,
        }


def list_sessions(folder: str | os.PathLike = DEFAULT_FOLDER) -> list[SessionInfo]:
    """Every `*.omdp` file in a folder, newest first, read without writing; one that
    cannot be read (damaged, not a session, unreadable) is listed with the reason instead
    of failing the listing."""
    root = Path(folder)
    if not root.is_dir():
        raise OmdpError(f"no session folder at {root}", "give an existing folder")
    try:
        paths = sorted(root.glob(f"*{SUFFIX}"))
    except OSError as exc:
        raise os_error(exc, root, "list") from None
    return sorted((_info(p) for p in paths), key=lambda s: s.modified, reverse=True)


def session_infos(paths: Iterable[str | os.PathLike]) -> list[SessionInfo]:
    """What `list_sessions` says of each file, for files anywhere (the recent index)."""
    return [_info(Path(p)) for p in paths]


def _info(p: Path) -> SessionInfo:
    mtime = 0.0
    for f in (p, p.with_name(p.name + "-wal")):
        with contextlib.suppress(OSError):
            mtime = max(mtime, f.stat().st_mtime)
    try:
        with Session.open(p, check_model=False, readonly=True) as s:
            done, total = s.progress()
            errors = int((s.results_frame()["status"] == "error").sum())
            return SessionInfo(str(p), s.model().label, s.chain().names, done, total, errors, mtime)
    except OmdpError as exc:
        problem = exc.what
    except (sqlite3.Error, OSError, ValueError, KeyError, TypeError) as exc:
        problem = f"cannot be read ({exc})"
    return SessionInfo(str(p), None, [], 0, 0, 0, mtime, problem)


def _upgraded(conn: sqlite3.Connection, path: Path, *, writable: bool) -> sqlite3.Connection:
    """`conn` brought to the current schema: in the file when it may be written, otherwise
    in an in-memory copy (reading never writes)."""
    try:
        if writable:
            schema.upgrade(conn)
            return conn
        mem = sqlite3.connect(":memory:")
        mem.row_factory = sqlite3.Row
        conn.backup(mem)
        conn.close()
        schema.upgrade(mem)
        return mem
    except sqlite3.Error as exc:
        raise sessionfile.sqlite_error(exc, path, "upgrade it to this OMDP's schema") from None
