"""Per-key delivery in sequence order, for publications that say where they stand (``seq`` and ``prev``).

Why: room messages take their ids in commit order (the room row is locked), but each process publishes
its own after its commit, so two processes can hand Redis ids 10 and 11 the other way round. A client
that saw 11 and reconnects with ``since-id: 11`` would then never get 10. Each message therefore carries
its id and the id of the room's message before it, and every process delivers a message only once its
predecessor went out, holding it for at most ``wait`` seconds (a predecessor whose publisher died
between commit and publish never comes: its successor goes out after the wait).

Anything without a sequence, a repeat (``prev`` already passed) or the first message of a key this
process has seen goes out at once. The state of a key lives only while the process has subscribers
for it (``forget``): without them it hears nothing of the key, so what it knew goes stale.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from stompengine.broker.local import Publication

logger = logging.getLogger(__name__)

HOLD_SECONDS = 1.0


class _Key:
    __slots__ = ("held", "last", "timer")

    def __init__(self, last: int) -> None:
        self.last = last  # the highest seq delivered
        self.held: dict[int, Publication] = {}  # prev -> the publication waiting for it
        self.timer: asyncio.TimerHandle | None = None


class Sequencer:
    """Delivers sequenced publications of each key in order; ``deliver`` is the broker's local fan-out."""

    def __init__(self, deliver: Callable[[Publication], object], *, wait: float = HOLD_SECONDS) -> None:
        self._deliver = deliver
        self._wait = wait
        self._keys: dict[str, _Key] = {}

    def offer(self, publication: Publication) -> None:
        """Deliver now, or once the publication before it was delivered (or ``wait`` has passed)."""
        if not publication.seq:
            self._deliver(publication)
            return
        state = self._keys.get(publication.key)
        if state is None:
            self._keys[publication.key] = _Key(publication.seq)
            self._deliver(publication)
            return
        if publication.prev > state.last:  # its predecessor has not been delivered yet
            state.held[publication.prev] = publication
            if state.timer is None:
                state.timer = asyncio.get_running_loop().call_later(self._wait, self._give_up, publication.key)
            return
        self._emit(state, publication)
        self._drain(state)

    def knows(self, key: str) -> bool:
        """Whether the sequence of ``key`` is being followed here."""
        return key in self._keys

    def seed(self, key: str, last: int) -> None:
        """Start following ``key`` from ``last`` (its newest sequence number now), unless already followed."""
        if key not in self._keys:
            self._keys[key] = _Key(last)

    def forget(self, key: str) -> None:
        """The last local subscriber of ``key`` left: drop what was held and known."""
        state = self._keys.pop(key, None)
        if state is not None:
            self._stop_timer(state)

    def held(self, key: str) -> int:
        """Publications of ``key`` waiting for a predecessor."""
        state = self._keys.get(key)
        return len(state.held) if state is not None else 0

    def close(self) -> None:
        """Deliver everything held (shutdown: better out of order than lost), and forget all keys."""
        for key, state in list(self._keys.items()):
            self._flush(state)
            self.forget(key)

    # -- internals -------------------------------------------------------------------------------------------
    def _emit(self, state: _Key, publication: Publication) -> None:
        self._deliver(publication)
        if publication.seq > state.last:
            state.last = publication.seq

    def _drain(self, state: _Key) -> None:
        while state.held:
            following = state.held.pop(state.last, None)
            if following is None:
                break
            self._emit(state, following)
        if not state.held:
            self._stop_timer(state)

    def _give_up(self, key: str) -> None:
        state = self._keys.get(key)
        if state is None:
            return
        state.timer = None
        logger.info("a message of %s waited %.1f s for its predecessor; delivering what was held", key, self._wait)
        self._flush(state)

    def _flush(self, state: _Key) -> None:
        for publication in sorted(state.held.values(), key=lambda p: p.seq):
            self._emit(state, publication)
        state.held.clear()
        self._stop_timer(state)

    @staticmethod
    def _stop_timer(state: _Key) -> None:
        if state.timer is not None:
            state.timer.cancel()
            state.timer = None
