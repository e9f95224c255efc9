"""Replay-then-live, written once: hold live messages, replay the stored ones, release the held minus duplicates.

Both the STOMP ``SUBSCRIBE`` with ``since-id`` and the SSE stream's ``Last-Event-ID`` resume go through
here, in this order:

1. **the barrier**: subscribe and wait until the subscription is live (the broker's Redis bridge returns
   once Redis confirmed the SUBSCRIBE; the channel layer's ``group_add`` rides on it). Anything committed
   from then on reaches the gate, so nothing committed between the replay query and going live is missed;
2. **hold**: while the replay runs, live messages are held by the ``ReplayGate`` (bounded if ``limit``:
   past it the gate drops them and says from which number to replay again: they are all stored);
3. **replay**: the caller sends the stored ones and tells the gate what they were (``replayed``: their
   numbers, or ``floor``: every number up to it);
4. **release**: ``release()`` returns the held ones the replay did not contain, and the gate is live;
   afterwards ``admit`` still drops a late live copy of a replayed message (its publisher commits, then
   publishes, so a copy can still be in flight), until ``forget_replayed``.

A message's number is its ``ident`` (0: not numbered, never a duplicate).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from typing import Generic, TypeVar

T = TypeVar("T")


class ReplayGate(Generic[T]):
    """The state of one resume: holding while replaying, then live with duplicate detection."""

    __slots__ = ("floor", "held", "ident", "limit", "lowest_dropped", "overflowed", "recent")

    def __init__(self, ident: Callable[[T], int], *, limit: int = 0) -> None:
        self.ident = ident
        self.limit = limit  # 0: hold everything
        self.held: deque[T] | None = deque()  # None once live
        self.floor = 0  # every number up to this one was replayed
        self.recent: set[int] | None = None  # numbers replayed (those above the floor)
        self.overflowed = False
        self.lowest_dropped: int | None = None

    @property
    def live(self) -> bool:
        """Whether the replay is over and live messages pass (minus duplicates)."""
        return self.held is None

    def admit(self, item: T) -> bool:
        """True when the caller should deliver ``item`` now; False when it is held or a duplicate."""
        held = self.held
        if held is not None:
            self._hold(held, item)
            return False
        return not self.duplicate(self.ident(item))

    def duplicate(self, number: int) -> bool:
        """Whether message ``number`` was already sent by the replay."""
        return bool(number) and (number <= self.floor or (self.recent is not None and number in self.recent))

    def replayed(self, numbers: Iterable[int]) -> list[int]:
        """Record replayed numbers; returns those not sent before (send only these)."""
        recent = self.recent if self.recent is not None else set()
        fresh = [n for n in numbers if not self.duplicate(n)]
        recent.update(fresh)
        self.recent = recent
        return fresh

    def replayed_through(self, floor: int) -> None:
        """Record that every number up to ``floor`` was replayed."""
        self.floor = max(self.floor, floor)

    def take_overflow(self) -> int | None:
        """After an overflow: the number to replay after again (the lowest dropped minus one), else None."""
        if not self.overflowed:
            return None
        assert self.lowest_dropped is not None
        lowest, self.overflowed, self.lowest_dropped = self.lowest_dropped, False, None
        return lowest - 1

    def release(self) -> list[T]:
        """Go live: the held messages the replay did not contain, in arrival order (deliver them first)."""
        held, self.held = self.held or deque(), None
        return [item for item in held if not self.duplicate(self.ident(item))]

    def keep_newest(self, count: int) -> None:
        """Remember only the ``count`` newest replayed numbers above the floor (bounded memory once live)."""
        if self.recent is not None and len(self.recent) > count:
            self.recent = set(sorted(self.recent)[-count:]) if count > 0 else None

    def forget_replayed(self) -> None:
        """Stop recognising copies of replayed messages above the floor (their live copies have passed)."""
        self.recent = None

    def _hold(self, held: deque[T], item: T) -> None:
        if self.limit and (self.overflowed or len(held) >= self.limit):
            # Everything held is stored (published only after commit): another replay pass finds it.
            self.overflowed = True
            lowest = min([self.ident(item), *(self.ident(e) for e in held)])
            self.lowest_dropped = lowest if self.lowest_dropped is None else min(self.lowest_dropped, lowest)
            held.clear()
            return
        held.append(item)


async def replay_then_live(
    gate: ReplayGate[T],
    subscribe: Callable[[], Awaitable[object]],
    replay: Callable[[ReplayGate[T]], Awaitable[object]],
) -> list[T]:
    """The barrier, then the replay, then going live; returns the held messages to deliver first.

    ``subscribe`` returns once the subscription is live (confirmed); the gate holds from before it. The
    gate goes live even when the replay fails, so a failed replay never leaves a subscription holding.
    """
    await subscribe()
    try:
        await replay(gate)
    except BaseException:
        gate.release()
        raise
    return gate.release()
