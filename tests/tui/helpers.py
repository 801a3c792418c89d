"""Helpers to drive the app with a Pilot and read what it shows."""

from __future__ import annotations

import asyncio
from collections.abc import Callable


async def wait_for(pilot, condition: Callable[[], bool], timeout: float = 20.0) -> None:
    """Let the app run until `condition()` holds (workers post messages meanwhile)."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not condition():
        if loop.time() > end:
            raise AssertionError(
                f"timed out after {timeout}s waiting for the app "
                f"(screen: {type(pilot.app.screen).__name__})"
            )
        await pilot.pause(0.05)
    await pilot.pause()


def screen_text(app) -> str:
    """The visible screen as plain text (what an operator reads)."""
    strips = app.screen._compositor.render_strips()
    return "\n".join("".join(seg.text for seg in strip) for strip in strips)
