"""The time source of a connection's timers: the event loop by default, a hand-driven one in tests.

A connection reads the time and sets timers only through a ``Clock`` (CONNECT timeout, heart-beats both
ways, token expiry, SEND rate limits), so a test can move time forward with ``ManualClock.advance`` and see
a timeout at once instead of sleeping for it.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Callable
from typing import Protocol

_MAX_TIMERS_PER_ADVANCE = 100_000


class Timer(Protocol):
    """A pending callback; ``cancel()`` is idempotent."""

    def cancel(self) -> None:
        """Do not call the callback (nothing happens when it already ran)."""


class Clock(Protocol):
    """Monotonic seconds and one-shot timers."""

    def time(self) -> float:
        """Now, in monotonic seconds."""
        ...

    def call_later(self, delay: float, callback: Callable[[], None]) -> Timer:
        """Call ``callback()`` after ``delay`` seconds (at once, on the next turn, when ``delay <= 0``)."""
        ...


class LoopClock:
    """The event loop's clock: ``loop.time()`` and ``loop.call_later``."""

    __slots__ = ("_loop",)

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def time(self) -> float:
        """The loop's monotonic time."""
        return self._loop.time()

    def call_later(self, delay: float, callback: Callable[[], None]) -> Timer:
        """``loop.call_later``."""
        return self._loop.call_later(delay, callback)


class _ManualTimer:
    __slots__ = ("callback", "cancelled", "when")

    def __init__(self, when: float, callback: Callable[[], None]) -> None:
        self.when = when
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class ManualClock:
    """A clock that only moves when told to (tests): ``advance(seconds)`` runs the timers that fall due."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self._timers: list[tuple[float, int, _ManualTimer]] = []
        self._order = itertools.count()

    def time(self) -> float:
        """The clock's current time."""
        return self.now

    def call_later(self, delay: float, callback: Callable[[], None]) -> Timer:
        """Register a timer, run by the ``advance`` that reaches its time."""
        timer = _ManualTimer(self.now + max(delay, 0.0), callback)
        heapq.heappush(self._timers, (timer.when, next(self._order), timer))
        return timer

    def advance(self, seconds: float) -> None:
        """Move time forward, calling every timer that falls due on the way, in time order."""
        target = self.now + seconds
        fired = 0
        while self._timers and self._timers[0][0] <= target:
            fired += 1
            if fired > _MAX_TIMERS_PER_ADVANCE:  # a timer that keeps setting itself for the same instant
                raise RuntimeError(f"more than {_MAX_TIMERS_PER_ADVANCE} timers fell due in one advance")
            when, _, timer = heapq.heappop(self._timers)
            self.now = max(self.now, when)
            if not timer.cancelled:
                timer.callback()
        self.now = target

    def pending(self) -> int:
        """Timers not yet run nor cancelled."""
        return sum(1 for _, _, timer in self._timers if not timer.cancelled)
