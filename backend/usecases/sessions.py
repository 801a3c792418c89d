"""Opening a session: resume the file when it exists, create it when it does not.

Opening has a slow half (analysing the model: seconds for a big one) that touches no
session, and a quick half that opens or creates the file. They are two calls, `prepare`
and `open_prepared`, so the TUI can run the first in a worker thread and the second on
the thread that will own the SQLite connection; `open_session` does both for the CLI.

Also here: changing an open session's chain, copying it under another name, and what the
session picker lists.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from backend.chain import Chain, DeviceSpec
from backend.device.protocol import TimingSettings
from backend.errors import OmdpError
from backend.files import os_error
from backend.model.analysis import ModelAnalysis, analyze
from backend.profiling import recent
from backend.profiling.plan import check_size
from backend.profiling.session import (
    ModelRef,
    Session,
    SessionExists,
    SessionInfo,
    list_sessions,
    session_infos,
)
from backend.profiling.sessionfile import present
from backend.usecases.candidates import DEFAULT_AUTO, CandidateChoice, choose


def sessions_dir() -> Path:
    """`$OMDP_SESSIONS_DIR`, else `sessions/` in the working folder (the README's place)."""
    return Path(os.environ.get("OMDP_SESSIONS_DIR", "sessions"))


def recent_sessions(limit: int = 20, folder: Path | None = None) -> list[SessionInfo]:
    """Sessions opened lately wherever they are (the recent index, most recent first),
    then the others in the sessions folder (newest first); each file once."""
    indexed = session_infos(recent.recent_paths())
    try:
        in_folder = list_sessions(folder or sessions_dir())
    except OmdpError:
        in_folder = []
    seen = {str(Path(i.path).resolve()) for i in indexed}
    rest = [i for i in in_folder if str(Path(i.path).resolve()) not in seen]
    return [*indexed, *rest][:limit]


def session_for_chain(path: Path, chain: Chain | None, label: str) -> tuple[Path, str | None]:
    """Where a model's session on `chain` lives, and what to tell the operator about it:
    `path` when it does not exist yet or holds the same chain (names and order);
    otherwise `<stem>-<label>.omdp` beside it — a new session, or the one made before
    for this chain. Refused when that one too is for another chain."""
    if chain is None or not present(path):
        return path, None
    old = peek_chain(path)
    if old == chain.names:
        return path, f"resuming {path.name}: its chain is the one in {label}"
    other = path.with_name(f"{path.stem}-{label}{path.suffix or '.omdp'}")
    if present(other) and peek_chain(other) != chain.names:
        raise OmdpError(
            f"{path} and {other} are sessions for other chains ({' → '.join(old)}; "
            f"{' → '.join(peek_chain(other))}), not {' → '.join(chain.names)}",
            "give --session NEW.omdp for a session on this chain",
        )
    verb = "resuming" if present(other) else "a new session"
    return other, (
        f"{path.name} is for the chain {' → '.join(old)}; the devices in {label} "
        f"({' → '.join(chain.names)}) get their own: {verb} {other}"
    )


def peek_chain(path: Path) -> list[str]:
    """The device names of a session's chain (read-only, closed at once)."""
    with Session.open(path, check_model=False, readonly=True) as s:
        return s.chain().names


@dataclass(frozen=True)
class StoredSettings:
    """What resuming a session without its devices file and timing flags runs with."""

    chain: Chain  # as last profiled with
    timing: TimingSettings | None  # as last measured with (None: not recorded, or not valid)


def stored_settings(path: Path) -> StoredSettings:
    """A session's chain and timing settings (one read-only open, closed at once)."""
    with Session.open(path, check_model=False, readonly=True) as s:
        chain, meta = s.chain(), s.get_meta("timing")
    timing = None
    if meta is not None:
        with contextlib.suppress(TypeError, ValueError):  # a file edited by hand: defaults
            timing = TimingSettings.from_dict(meta)
    return StoredSettings(chain, timing)


def builtin_models() -> list[str]:
    """Names of the models OMDP builds itself (no file needed)."""
    from backend.model import zoo

    return [e.name for e in zoo.list_models()]


def local_chain() -> Chain:
    """A new session's chain when no devices are given: this machine alone."""
    return Chain.of([DeviceSpec("local")])


@dataclass
class NewSession:
    """What only a new session takes: how many candidates to pick when none are given
    (None: start with none), the chain when the request has none, and settings stored
    with it (timing, per-node runs, the UI state to start in)."""

    auto_candidates: int | None = DEFAULT_AUTO
    chain: Chain | None = None
    timing: dict[str, Any] | None = None
    node_times_runs: int | None = None
    ui: dict[str, Any] = field(default_factory=dict)


@dataclass
class OpenRequest:
    """What to open. `model` None: the session's own model (the file must exist).
    `chain`, when given, is applied to a resumed session too (new device options); its
    device names must then be the session's.

    `claim`: open it as its profiler — a new file appears already claimed, a resumed one
    is claimed before anything is written to it, and the claim lasts until the
    `OpenSession` is closed (a second profiler is refused in one line). `dry_run`: nothing
    is written anywhere; the session returned is an in-memory copy."""

    path: Path
    model: str | None = None
    input_shapes: dict[str, list[int]] = field(default_factory=dict)
    chain: Chain | None = None
    candidates: CandidateChoice = field(default_factory=CandidateChoice)
    new: NewSession = field(default_factory=NewSession)
    claim: bool = False
    dry_run: bool = False
    notes: list[str] = field(default_factory=list)  # what the front-end should tell


@dataclass
class Prepared:
    """The slow half done: the model analysed, and whether the file is resumed."""

    request: OpenRequest
    analysis: ModelAnalysis
    model_ref: str  # what the user knows the model by: its path or built-in name
    builtin: str | None
    resume: bool


@dataclass
class OpenSession:
    """An open session with its analysed model and candidates; `close()` releases the
    profiler claim (if the request took one) and closes the session."""

    session: Session
    analysis: ModelAnalysis
    model_ref: str
    candidates: list[int]
    resumed: bool
    held: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)

    def close(self) -> None:
        try:
            self.held.close()
        finally:
            self.session.close()

    def __enter__(self) -> OpenSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def peek_model(path: Path) -> ModelRef:
    """The model a session was made for (read-only, closed at once)."""
    with Session.open(path, check_model=False, readonly=True) as s:
        return s.model()


def prepare(request: OpenRequest) -> Prepared:
    """Analyse the model and decide between resume and create; writes nothing, so a
    worker thread may run it."""
    resume = present(request.path)
    model, shapes = request.model, request.input_shapes
    if model is None or (resume and not shapes):
        ref = peek_model(request.path)
        model = model or ref.builtin or ref.path
        shapes = shapes or ref.input_shapes
        if model is None:
            raise OmdpError(
                f"session {request.path} does not say where its model is", "start a new session"
            )
    analysis = analyze(model, shapes)
    builtin = model if analysis.path is None else None
    return Prepared(request, analysis, model, builtin, resume)


def open_prepared(prepared: Prepared) -> OpenSession:
    """Resume the file (same model, same chain names) or create it, whole or not at all.
    Every input is checked before the file is touched; a creation that loses a race to
    another process resumes the winner's file. The connection belongs to the calling
    thread."""
    req, analysis = prepared.request, prepared.analysis
    if not prepared.resume:
        chain = req.chain or req.new.chain or local_chain()
        cands = choose(analysis, req.candidates, None, req.new.auto_candidates)
        check_size(len(cands), len(chain.devices))
        with contextlib.suppress(SessionExists):
            session = create_session(
                req.path,
                analysis,
                chain,
                cands,
                builtin=prepared.builtin,
                new=req.new,
                claim=req.claim,
                dry_run=req.dry_run,
            )
            opened = OpenSession(session, analysis, prepared.model_ref, cands, resumed=False)
            if req.claim and not req.dry_run:
                opened.held.enter_context(session.claim_profiler())
            if not req.dry_run:
                recent.remember(req.path)
            return opened
    session = Session.open(req.path, check_model=True, readonly=req.dry_run)
    opened = OpenSession(session, analysis, prepared.model_ref, [], resumed=True)
    try:
        session.check_model(analysis)
        if req.chain is not None:
            session.check_chain(req.chain)
        stored = session.candidates()
        opened.candidates = cands = choose(analysis, req.candidates, stored)
        check_size(len(cands), len(session.chain().devices))
        if req.dry_run:
            opened.session = session = session.to_memory()
        elif req.claim:
            opened.held.enter_context(session.claim_profiler())
        if req.chain is not None:
            session.update_chain(req.chain)
        if cands != stored:
            session.set_candidates(cands, analysis)
    except BaseException:
        opened.close()
        raise
    if not req.dry_run:
        recent.remember(req.path)
    return opened


def open_session(request: OpenRequest) -> OpenSession:
    """Both halves at once (the CLI's way)."""
    return open_prepared(prepare(request))


def create_session(
    path: Path,
    analysis: ModelAnalysis,
    chain: Chain,
    candidates: list[int],
    *,
    builtin: str | None,
    new: NewSession,
    claim: bool = False,
    dry_run: bool = False,
) -> Session:
    """The one place a session file is created, whole with the settings it starts with
    (SessionExists when something is already at `path`)."""

    def settings(session: Session) -> None:
        if new.timing is not None:
            session.set_meta("timing", new.timing)
        if new.node_times_runs is not None:
            session.set_meta("node_times_runs", new.node_times_runs)
        for key, value in new.ui.items():
            session.set_ui_state(key, value)

    return Session.create(
        path,
        analysis,
        chain,
        candidates,
        builtin=builtin,
        claim_profiler=claim and not dry_run,
        in_memory=dry_run,
        settings=settings,
    )


def session_analysis(session: Session) -> ModelAnalysis:
    """The session's model, analysed again (it must still be the file that was measured)."""
    ref = session.model()
    source = ref.path or ref.builtin
    if source is None:
        raise OmdpError("the session does not say where its model is", "start a new one")
    analysis = analyze(source, ref.input_shapes)
    if analysis.sha256 != ref.sha256:
        raise OmdpError(
            f"the model at {source} is not the one this session measured",
            "restore the original model file",
        )
    return analysis


def has_measurements(session: Session) -> bool:
    """Whether anything was ever recorded (under any configuration, even a pending run)."""
    return bool(session.results_frame(all_configs=True)["measurement_id"].notna().any())


def change_chain(session: Session, analysis: ModelAnalysis, chain: Chain) -> Session:
    """The session with `chain`; returns the session to use from now on.

    The same device names in the same order: new options and link values, in place
    (measurements under old options stay but no longer count). Other names or order: only
    while nothing is measured (measurements are keyed by device name); the session is then
    made again, keeping its candidates, settings and UI state, and its content replaced in
    place (SQLite's backup), so the file is never deleted or renamed.
    """
    old = session.chain().names
    if chain.names == old:
        session.update_chain(chain)
        return session
    if has_measurements(session):
        raise OmdpError(
            f"this session has measurements for the chain {' → '.join(old)}; "
            "its devices (names and order) can no longer change",
            "edit the devices' options here, or start a new session for another chain",
        )
    new = NewSession(
        timing=session.get_meta("timing"),
        node_times_runs=session.get_meta("node_times_runs"),
        ui=session.get_ui_state() or {},
    )
    builtin = session.model().builtin
    with tempfile.TemporaryDirectory(prefix="omdp-chain-") as folder:
        fresh = create_session(
            Path(folder) / session.path.name,
            analysis,
            chain,
            session.candidates(),
            builtin=builtin,
            new=new,
        )
        try:
            fresh.conn.backup(session.conn)
        finally:
            fresh.close()
    path = session.path
    session.close()
    return Session.open(path, check_model=False)


def copy_session(session: Session, path: Path) -> Session:
    """Copy the session to `path` (SQLite's online backup: consistent even while a run
    writes) and return the copy, opened; the original is left open as it was."""
    path = Path(path)
    if path.exists():
        raise OmdpError(f"{path} already exists", "choose another name")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        target = sqlite3.connect(path)
    except OSError as exc:
        raise os_error(exc, path, "write") from None
    try:
        session.conn.backup(target)
    finally:
        target.close()
    copy = Session.open(path, check_model=False)
    recent.remember(path)
    return copy
