"""The time source of a connection's timers: the event loop by default, a hand-driven one in tests.

A connection reads the time and sets timers only through a ``Clock`` (CONNECT timeout, heart-beats both
ways, token expiry, SEND rate limits), so a test can move time forward with ``ManualClock.advance`` and see
a timeout at once instead of sleeping for it.

``LoopClock`` is shared by every connection of an event loop (the runtime's part ``stomp.clock``). Its
timers of a second or more (heart-beats, token expiry, the CONNECT timeout) go on a coarse wheel: one loop
timer per 0.1 s tick that has timers due, not one ``TimerHandle`` per connection (about 500 bytes each,
two per idle connection, docs/memory.md); such a timer fires at most one tick late, never early. Shorter
timers are the loop's own, exact.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math
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


#: The wheel's tick (seconds): how late at most a coarse timer fires.
TICK = 0.1
#: Timers this long or longer go on the wheel; a tick late is then at most a tenth of their delay.
COARSE_FROM = 1.0


class _WheelTimer:
    """A timer on the wheel: cancelling drops the callback (and what it holds) at once."""

    __slots__ = ("callback",)

    def __init__(self, callback: Callable[[], None]) -> None:
        self.callback: Callable[[], None] | None = callback

    def cancel(self) -> None:
        self.callback = None


class LoopClock:
    """The event loop's clock: ``loop.time()``; ``call_later`` on the coarse wheel for delays of a second or
    more, ``loop.call_later`` for shorter ones."""

    __slots__ = ("_buckets", "_loop")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        # tick number -> the timers due at its end; a loop timer is set for each tick that has any.
        self._buckets: dict[int, list[_WheelTimer]] = {}

    def time(self) -> float:
        """The loop's monotonic time."""
        return self._loop.time()

    def call_later(self, delay: float, callback: Callable[[], None]) -> Timer:
        """Call ``callback()`` after ``delay`` seconds: at most one tick later when it is a second or more."""
        if delay < COARSE_FROM:
            return self._loop.call_later(delay, callback)
        tick = math.ceil((self._loop.time() + delay) / TICK)
        timer = _WheelTimer(callback)
        bucket = self._buckets.get(tick)
        if bucket is None:
            self._buckets[tick] = [timer]
            self._loop.call_at(tick * TICK, self._fire, tick)
        else:
            bucket.append(timer)
        return timer

    def pending(self) -> int:
        """Wheel timers not yet run nor cancelled."""
        return sum(1 for bucket in self._buckets.values() for timer in bucket if timer.callback is not None)

    def _fire(self, tick: int) -> None:
        # Timers set from these callbacks for this same tick (a loop timer can fire a hair early) get a new
        # bucket and loop timer: this one is taken out first.
        for timer in self._buckets.pop(tick, ()):
            callback = timer.callback
            if callback is None:
                continue
            timer.callback = None
            try:
                callback()
            except Exception as exc:  # as the loop does for its own timers: report, go on with the others
                self._loop.call_exception_handler(
                    {"message": "Exception in a LoopClock timer callback", "exception": exc, "callback": callback}
                )


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
