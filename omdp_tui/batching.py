"""Coalescing a fast stream of engine events into a few UI messages per second.

A profiling job can report hundreds of progress lines a second; handling each one on the
UI thread (a table cell, a progress bar, a log line) would starve key handling over a
slow SSH link. `pump` forwards events in batches: the first event of a batch waits at most
`interval` seconds, so the UI stays live, and it never sends more than ~1/interval
batches a second, however fast the engine talks.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, Callable
from typing import Any

DEFAULT_INTERVAL_S = 0.1


async def pump(
    events: AsyncIterable[Any],
    post: Callable[[list[Any]], None],
    interval: float = DEFAULT_INTERVAL_S,
) -> int:
    """Read `events` to the end, calling `post(batch)` at most every `interval` seconds
    (and once more for the tail). Returns the number of events forwarded."""
    loop = asyncio.get_running_loop()
    iterator = aiter(events)
    pending: list[Any] = []
    deadline = 0.0
    count = 0
    next_event: asyncio.Future | None = None
    try:
        while True:
            if next_event is None:
                next_event = asyncio.ensure_future(anext(iterator))
            timeout = max(0.0, deadline - loop.time()) if pending else None
            done, _ = await asyncio.wait({next_event}, timeout=timeout)
            if next_event in done:
                task, next_event = next_event, None
                try:
                    event = task.result()
                except StopAsyncIteration:
                    break
                if not pending:
                    deadline = loop.time() + interval
                pending.append(event)
                count += 1
            if pending and loop.time() >= deadline:
                post(pending)
                pending = []
    finally:
        if next_event is not None and not next_event.done():
            next_event.cancel()
        if pending:
            post(pending)
    return count
