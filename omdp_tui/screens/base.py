"""What every workspace screen shares: the title bar, the footer, the open workspace."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from textual.app import ComposeResult
from textual.screen import Screen

from omdp_tui.widgets.key_bar import KeyBar
from omdp_tui.widgets.title_bar import TitleBar

if TYPE_CHECKING:
    from omdp_tui.app import OmdpApp
    from omdp_tui.workspace import Workspace


class WorkspaceScreen(Screen):
    """A screen showing part of the open workspace. `NAME` is its mode name."""

    NAME: ClassVar[str] = ""

    @property
    def omdp(self) -> OmdpApp:
        return self.app  # type: ignore[return-value]

    @property
    def ws(self) -> Workspace:
        ws = self.omdp.workspace
        assert ws is not None, "workspace screens exist only once a session is open"
        return ws

    def compose_title(self) -> ComposeResult:
        yield TitleBar(self.NAME, self.ws.title)

    def compose_footer(self) -> ComposeResult:
        yield KeyBar()

    def on_screen_resume(self) -> None:
        self.query_one(TitleBar).info = self.ws.title
        self.ws.set_ui("screen", self.NAME)
