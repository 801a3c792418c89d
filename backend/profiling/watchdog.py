"""The watchdog: every wait on a device is bounded.

Each step of an agent's work gets a deadline when it starts: its start-up (until
`hello`), then each segment in the job's order, the real-input run of prefix mode, the
per-node profile. A segment's limit is `factor` × the time the plan expects for it, scaled
by how much slower than expected this device has been on the segments it already answered
in this run, kept within [floor, cap]. While nothing is known of the device's speed (no
earlier measurement, no configured GFLOP/s, no answer yet) a segment may take up to the cap:
the estimate would be a guess. Lines that do not start a new step never extend a deadline,
so a device cannot keep itself alive by talking. A device that overruns is stopped and
reported; what it had not answered stays pending, so a resumed run retries it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from backend.device.protocol import (
    AgentProgress,
    Event,
    Hello,
    NodeTimes,
    Result,
    Segment,
    SegmentError,
)


class Overrun(Exception):
    """A device took longer than its limit for one step."""


@dataclass(frozen=True)
class WatchdogSettings:
    """How long a device may take: see the module docstring."""

    floor_s: float = 60.0  # no step is cut shorter than this
    cap_s: float = 1800.0  # no step may take longer than this
    factor: float = 5.0  # × the expected time of a segment
    startup_s: float = 120.0  # from starting the agent (upload done) to its hello

    def __post_init__(self) -> None:
        for name in ("floor_s", "cap_s", "factor", "startup_s"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                raise ValueError(f"watchdog {name} must be a positive number, got {value!r}")
        if self.floor_s > self.cap_s:
            raise ValueError(f"watchdog floor {self.floor_s:g} s is above its cap {self.cap_s:g} s")

    def clamp(self, seconds: float) -> float:
        return min(self.cap_s, max(self.floor_s, seconds))


class Watch:
    """The deadline of one device's current step, moved on by the events it sends."""

    def __init__(
        self,
        settings: WatchdogSettings,
        items: list[Segment],
        expected: Callable[[Segment], float],
        whole: Segment,
        speed_known: bool,
        node_times: bool,
    ):
        self.settings = settings
        self.items = items
        self.expected = expected
        self.whole = whole
        self.speed_known = speed_known
        self.node_times = node_times
        self.index = 0  # the next item the agent will answer (it goes in order)
        self.scale = 1.0  # slowest actual / expected so far
        self.step = "start"
        self.step_expected = 0.0
        self.armed_at = time.monotonic()
        self.limit = settings.startup_s
        self.deadline = self.armed_at + self.limit
        self._keys: set[object] = set()

    def _arm(self, key: object, step: str, expected: float | None) -> None:
        if key in self._keys:
            return
        self._keys.add(key)
        self.step = step
        self.step_expected = expected or 0.0
        if expected is None:
            self.limit = self.settings.floor_s
        elif not self.speed_known:
            self.limit = self.settings.cap_s
        else:
            self.limit = self.settings.clamp(self.settings.factor * expected * self.scale)
        self.armed_at = time.monotonic()
        self.deadline = self.armed_at + self.limit

    def _arm_next(self, started: bool = False) -> None:
        """Arm for what comes next: after an answer (or hello) the wait for the next item;
        once the agent says it started that item (`started`), its run, once more."""
        if self.index < len(self.items):
            seg = self.items[self.index]
            key = ("started" if started else "next", self.index)
            self._arm(key, f"segment [{seg[0]}, {seg[1]})", self.expected(seg))
        elif self.node_times:
            self._arm("node_times", "the per-node profile", self.expected(self.whole))
        else:
            self._arm("end", "the end of the job", None)

    def seen(self, event: Event) -> None:
        """Move the deadline on if `event` starts a new step."""
        if isinstance(event, Hello):
            self._arm_next()
        elif isinstance(event, AgentProgress):
            if event.phase == "inputs":
                self._arm("inputs", "the real-input run", self.expected(self.whole))
            elif event.phase == "node_times":
                self._arm("node_times", "the per-node profile", self.expected(self.whole))
            elif self.index < len(self.items) and event.segment == self.items[self.index]:
                self._arm_next(started=True)
        elif isinstance(event, Result | SegmentError) and event.segment is not None:
            if isinstance(event, SegmentError) and event.kind == "node_times":
                self.node_times = False
                self._arm_next()
                return
            expected = self.expected(event.segment)
            if isinstance(event, Result) and expected > 0:
                took = time.monotonic() - self.armed_at
                self.scale = max(self.scale, took / expected)
                self.speed_known = True
            if self.index < len(self.items) and event.segment == self.items[self.index]:
                self.index += 1
            self._arm_next()
        elif isinstance(event, NodeTimes):
            self.node_times = False
            self._arm_next()

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def hold(self, seconds: float) -> None:
        """The device was paused for `seconds`: that time does not count."""
        self.deadline += seconds
        self.armed_at += seconds

    def overrun(self) -> Overrun:
        s = self.settings
        if self.step == "start":
            why = f"no hello within {self.limit:g} s of starting the agent"
        elif not self.speed_known and self.limit == s.cap_s:
            why = (
                f"{self.step} took longer than {self.limit:g} s (the cap: this device's speed "
                "is not known yet)"
            )
        else:
            why = (
                f"{self.step} took longer than {self.limit:g} s ({s.factor:g} × its expected "
                f"{self.step_expected * self.scale:.3g} s, within {s.floor_s:g}..{s.cap_s:g} s)"
            )
        return Overrun(f"{why}; its agent was stopped — run again to retry what is left")
