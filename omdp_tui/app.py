"""The OMDP Textual app: a session picker, then four screens over one open workspace.

The engine does the work; the app shows it and drives it. Long work (opening a model,
profiling, checking devices) runs in workers that post typed messages
(`omdp_tui.messages`); errors reach the user as a toast or a modal, never as a crash.
"""

from __future__ import annotations

import argparse
import gc
import sqlite3
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from textual import on, work
from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.screen import Screen
from textual.theme import Theme
from textual.timer import Timer
from textual.worker import Worker, WorkerState

from backend.chain import Chain
from backend.errors import OmdpError
from backend.usecases import demo, sessions
from backend.usecases.sessions import NewSession, OpenRequest
from omdp_tui import settings
from omdp_tui.messages import WorkspaceFailed, WorkspaceOpened
from omdp_tui.screens.devices import DevicesScreen
from omdp_tui.screens.dialogs import ErrorDialog, TextPrompt
from omdp_tui.screens.graph import GraphScreen
from omdp_tui.screens.partitions import PartitionsScreen
from omdp_tui.screens.picker import LoadingScreen, PickerScreen
from omdp_tui.screens.profile import ProfileScreen
from omdp_tui.themes import DEFAULT_THEME, load_themes
from omdp_tui.workspace import Workspace, open_workspace

SCREEN_NAMES = ("graph", "devices", "profile", "partitions")
SAVE_CHECK_S = 0.1  # how often the app asks whether keystroke state is due to be saved


@dataclass
class Launch:
    """What to open, from the command line or the picker."""

    kind: str = "picker"  # "picker" | "model" | "session" | "demo"
    model: str | None = None
    session: Path | None = None
    devices: Path | None = None
    input_shapes: dict[str, list[int]] = field(default_factory=dict)
    demo_options: dict[str, Any] = field(default_factory=dict)  # tests shrink the demo here
    lab_chain: Chain | None = None  # `omdp demo --lab`: the emulated lab's chain
    prepared: Workspace | None = None  # kind "workspace": already open (tests, embedding)

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Launch:
        from backend.model.analysis import parse_input_shapes

        verb = getattr(args, "verb", None)
        session = Path(args.session) if getattr(args, "session", None) else None
        if verb == "demo":
            if not getattr(args, "lab", False):
                return cls("demo", session=session)
            folder = Path(args.lab_dir)
            chain, warnings = demo.lab_chain(folder)  # before the TUI: errors are one line
            for warning in warnings:
                print(f"omdp: warning: {warning}", file=sys.stderr)
            return cls("demo", session=session or folder / "demo.omdp", lab_chain=chain)
        if verb == "tui":
            shapes = parse_input_shapes(getattr(args, "input_shape", []))
            devices = Path(args.devices) if getattr(args, "devices", None) else None
            if args.model:
                return cls("model", args.model, session, devices, shapes)
            if session is not None:
                return cls("session", session=session, devices=devices)
        return cls("picker")

    def request(self) -> OpenRequest:
        """What the engine opens for this launch (reads the devices file, if any)."""
        from backend.chain import load_devices
        from backend.profiling.session import default_path
        from backend.profiling.sessionfile import present

        if self.kind == "demo":
            request = demo.demo_request(
                self.session, input_shapes=self.input_shapes, **self.demo_options
            )
            if self.lab_chain is not None:
                request.new.chain = self.lab_chain
            return request
        chain = load_devices(self.devices) if self.devices else None
        if self.kind == "session":
            assert self.session is not None, "a session launch names its file"
            return OpenRequest(Path(self.session), input_shapes=self.input_shapes, chain=chain)
        model = self.model or demo.MODEL
        notes = []
        if self.session:
            path = Path(self.session)
        else:
            path = default_path(model, sessions.sessions_dir())
            if self.devices is not None:
                path, note = sessions.session_for_chain(path, chain, self.devices.stem)
                notes += [note] if note else []
        if chain is None and not present(path):
            notes.append(
                "new session on one local device ('local'): add devices on screen 2, "
                "or start with omdp tui MODEL --devices devices.toml"
            )
        elif chain is not None and not present(path):
            notes.append(f"new session on the devices in {self.devices}")
        return OpenRequest(
            path,
            model,
            self.input_shapes,
            chain=chain,
            new=NewSession(auto_candidates=None),  # the operator picks them
            notes=notes,
        )


def _settle_memory() -> None:
    """Put what lives as long as the workspace (the model's analysis, the session's state,
    the screens) out of the garbage collector's way: a full collection scanning it took
    50–70 ms, several frames, at random keystrokes (`benchmarks/bench_tui.py`). What an
    earlier workspace left is collected first."""
    gc.unfreeze()
    gc.collect()
    gc.freeze()


class OmdpApp(App[int]):
    CSS_PATH = "app.tcss"
    TITLE = "OMDP"
    MODES: ClassVar = {
        "graph": GraphScreen,
        "devices": DevicesScreen,
        "profile": ProfileScreen,
        "partitions": PartitionsScreen,
    }
    HORIZONTAL_BREAKPOINTS: ClassVar = [(0, "-narrow"), (120, "-wide")]
    BINDINGS: ClassVar = [
        Binding("1", "show('graph')", "Graph", show=False, id="screen.graph"),
        Binding("2", "show('devices')", "Devices", show=False, id="screen.devices"),
        Binding("3", "show('profile')", "Profile", show=False, id="screen.profile"),
        Binding("4", "show('partitions')", "Partitions", show=False, id="screen.partitions"),
        Binding("ctrl+s", "save_as", "Save as", show=False, id="session.save_as"),
        Binding("q", "quit", "Quit", show=False, id="app.quit"),
        Binding("question_mark", "help", "Help", show=False, id="app.help"),
        Binding("f1", "help", "Help", show=False, priority=True, id="app.help_f1"),
    ]

    def __init__(self, launch: Launch | None = None) -> None:
        super().__init__()
        self.launch = launch or Launch()
        self.workspace: Workspace | None = None
        self._saver: Timer | None = None  # flushes the workspace's pending writes
        found = load_themes()
        self.theme_errors = found.errors
        for theme in found.themes.values():
            self.register_theme(theme)
        self.omdp_themes: list[str] = sorted(found.themes)
        wanted = settings.load_settings().get("theme", DEFAULT_THEME)
        self.theme = (
            wanted
            if wanted in self.available_themes
            else (DEFAULT_THEME if DEFAULT_THEME in self.available_themes else "textual-dark")
        )

    # -- startup -----------------------------------------------------------------------------

    def get_default_screen(self) -> Screen:
        if self.launch.kind == "picker":
            return PickerScreen()
        return LoadingScreen(self._loading_text(self.launch))

    def get_theme_variable_defaults(self) -> dict[str, str]:
        return {"chart-bytes": "#4f9de8", "chart-flops": "#57ab5a", "chart-transfer": "#f0a04b"}

    def on_mount(self) -> None:
        for error in self.theme_errors:
            self.notify(error, title="Theme not loaded", severity="error", timeout=10)
        self.theme_changed_signal.subscribe(self, self._theme_changed)
        if self.launch.kind != "picker":
            self.open(self.launch)

    def _theme_changed(self, theme: Theme) -> None:
        error = settings.save_setting("theme", theme.name)
        if error:
            self.notify(error, severity="warning")

    @staticmethod
    def _loading_text(launch: Launch) -> str:
        if launch.kind == "demo":
            return "Preparing the demo session (YOLOv5n, glasses → phone → cloud)…"
        what = launch.model or (launch.session.name if launch.session else "session")
        return f"Opening {what}…"

    def open(self, launch: Launch) -> None:
        """Open a workspace in a thread: a big model takes seconds to build and analyse."""
        if not isinstance(self.screen, LoadingScreen):
            self.push_screen(LoadingScreen(self._loading_text(launch)))
        self._open_worker(launch)

    @work(thread=True, exclusive=True, group="open", exit_on_error=False)
    def _open_worker(self, launch: Launch) -> None:
        """The slow part (building and analysing the model) off the UI thread."""
        if launch.prepared is not None:
            self.post_message(WorkspaceOpened(launch.prepared))
            return
        try:
            prepared = sessions.prepare(launch.request())
        except OmdpError as exc:
            self.post_message(WorkspaceFailed(str(exc)))
        except Exception as exc:  # an engine bug must not kill the UI: show it
            self.post_message(WorkspaceFailed(f"{type(exc).__name__}: {exc}"))
        else:
            self.post_message(WorkspaceOpened(prepared))

    @on(WorkspaceOpened)
    async def _opened(self, message: WorkspaceOpened) -> None:
        """Create or resume the session here: its connection belongs to this thread."""
        ws = message.workspace
        notes = [] if isinstance(ws, Workspace) else ws.request.notes
        if not isinstance(ws, Workspace):
            try:
                ws = open_workspace(ws)
            except OmdpError as exc:
                self.post_message(WorkspaceFailed(str(exc)))
                return
            except Exception as exc:  # sqlite errors, engine bugs: a dialog, not a crash
                self.post_message(WorkspaceFailed(f"{type(exc).__name__}: {exc}"))
                return
        if self.workspace is not None and self.workspace is not ws:
            self.workspace.flush()
        self.workspace = ws
        self.workspace.on_save_error = self._save_failed
        if self._saver is None:
            self._saver = self.set_interval(SAVE_CHECK_S, self._autosave)
        start = self.workspace.get_ui("screen", "graph")
        await self.switch_mode(start if start in SCREEN_NAMES else "graph")
        _settle_memory()
        for note in notes:
            self.notify(note, title="Session", timeout=12)

    def _autosave(self) -> None:
        """Write what keystrokes changed once they stop (Workspace.flush_due)."""
        if self.workspace is not None and self.workspace.flush_due():
            self.workspace.flush()

    def flush(self) -> None:
        """Write what keystrokes changed, now (on quit, on a crash, on a new session)."""
        if self.workspace is not None and self.workspace.unsaved:
            self.workspace.flush()

    def on_unmount(self) -> None:
        self.flush()

    async def action_quit(self) -> None:
        self.flush()
        self.exit()

    def _save_failed(self, error: str) -> None:
        self.notify(error, title="Not saved", severity="error", timeout=10)

    @on(WorkspaceFailed)
    def _open_failed(self, message: WorkspaceFailed) -> None:
        def back_to_picker(_: None) -> None:
            if isinstance(self.screen, LoadingScreen):
                self.pop_screen() if len(self.screen_stack) > 1 else None
            if not isinstance(self.screen, PickerScreen):
                self.push_screen(PickerScreen())

        self.push_screen(ErrorDialog("Cannot open", message.error), back_to_picker)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """Any worker that dies with an exception is reported, never fatal."""
        if event.state == WorkerState.ERROR and event.worker.error is not None:
            error = event.worker.error
            self.notify(
                f"{type(error).__name__}: {error}",
                title=f"{event.worker.name} failed",
                severity="error",
                timeout=10,
            )

    # -- actions -----------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in ("show", "save_as"):
            return self.workspace is not None
        return True

    def action_help(self) -> None:
        """Every key of the current screen, from its bindings."""
        from omdp_tui.screens.help import HelpScreen, screen_keys

        screen = self.screen
        if isinstance(screen, HelpScreen):
            return
        title = getattr(screen, "NAME", "") or type(screen).__name__.removesuffix("Screen")
        self.push_screen(HelpScreen(title.capitalize(), screen_keys(screen)))

    async def action_show(self, name: str) -> None:
        if self.workspace is not None and name in SCREEN_NAMES:
            await self.switch_mode(name)

    def action_save_as(self) -> None:
        ws = self.workspace
        if ws is None:
            return

        def chosen(path: str | None) -> None:
            if not path:
                return
            try:
                ws.save_as(Path(path))
            except (OmdpError, OSError, sqlite3.Error) as exc:  # bad path, full disk...
                self.notify(f"cannot save to {path}: {exc}", severity="error", timeout=8)
                return
            self.screen.query_one("TitleBar").info = ws.title  # type: ignore[attr-defined]
            self.notify(f"session saved as {ws.session_path}")

        current = str(ws.session_path) if ws.session_path else "sessions/untitled.omdp"
        self.push_screen(
            TextPrompt("Save session as", "File name:", current, check=_check_save_path), chosen
        )

    # -- command palette ---------------------------------------------------------------------

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        for name in self.omdp_themes:
            yield SystemCommand(
                f"Theme: {name}",
                f"Switch to the {name} theme (remembered)",
                lambda n=name: setattr(self, "theme", n),
            )
        seen: set[str] = set()
        for binding_info in screen.active_bindings.values():
            binding = binding_info.binding
            if not binding.description or binding.action in seen:
                continue
            if not binding_info.enabled:
                continue
            seen.add(binding.action)
            node = binding_info.node
            yield SystemCommand(
                binding.description,
                f"{binding.id or binding.action} — key {self.get_key_display(binding)}",
                lambda n=node, a=binding.action: self.call_later(n.run_action, a),
            )


def _check_save_path(text: str) -> str | None:
    if not text:
        return "give a file name"
    p = Path(text)
    if p.exists() and p.is_dir():
        return f"{p} is a folder: give a file name in it"
    if not p.parent.exists() and str(p.parent) not in ("", "."):
        return f"folder {p.parent} does not exist"
    return None


def run(args: argparse.Namespace) -> int:
    """Entry point for `omdp`, `omdp tui` and `omdp demo` (see omdp_tui.main)."""
    app = OmdpApp(Launch.from_args(args))
    try:
        result = app.run()
    finally:
        app.flush()  # a crash too: what was typed is saved
    return int(result or 0) if app.return_code in (None, 0) else app.return_code or 1
