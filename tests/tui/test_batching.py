"""High-rate engine events reach the UI in a few batches, none lost, none late."""

from __future__ import annotations

import asyncio
import time

import pytest

from omdp_tui.batching import pump


async def test_fast_stream_is_coalesced_without_loss():
    async def fast():
        for i in range(2000):
            yield i
            if i % 50 == 0:
                await asyncio.sleep(0.005)  # ~0.2 s in total, 10 000 events/s

    batches: list[list[int]] = []
    started = time.perf_counter()
    count = await pump(fast(), batches.append, interval=0.05)
    elapsed = time.perf_counter() - started
    assert count == 2000
    assert [e for b in batches for e in b] == list(range(2000))
    assert len(batches) <= elapsed / 0.05 + 2


async def test_slow_events_are_not_held_back():
    seen: list[tuple[float, list[int]]] = []
    arrivals: list[float] = []
    loop = asyncio.get_running_loop()

    async def slow():
        for i in range(3):
            arrivals.append(loop.time())
            yield i
            await asyncio.sleep(0.5)

    await pump(slow(), lambda b: seen.append((loop.time(), b)), interval=0.05)
    assert [b for _, b in seen] == [[0], [1], [2]]
    # each event is delivered within ~interval of when it really arrived (a busy machine
    # stretches the sleeps between events, not this bound), long before the next one
    for (at, _), arrived in zip(seen, arrivals, strict=True):
        assert at - arrived < 0.3


async def test_error_in_stream_still_delivers_what_came_before():
    async def broken():
        yield 1
        yield 2
        raise RuntimeError("agent died")

    batches: list[list[int]] = []
    with pytest.raises(RuntimeError, match="agent died"):
        await pump(broken(), batches.append, interval=10)
    assert [e for b in batches for e in b] == [1, 2]
