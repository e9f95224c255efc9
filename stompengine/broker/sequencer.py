"""Per-key delivery in sequence order, for publications that say where they stand (``seq`` and ``prev``).

Why: room messages take their ids in commit order (the room row is locked), but each process publishes
its own after its commit, so two processes can hand Redis ids 10 and 11 the other way round. A client
that saw 11 and reconnects with ``since-id: 11`` would then never get 10. Each message therefore carries
its id and the id of the room's message before it, and every process delivers a message only once its
predecessor went out, holding it for at most ``wait`` seconds.

A predecessor whose publisher died between commit and publish never comes (a worker SIGKILLed with a
batch in its Redis writer: its RECEIPTs may already be out). After the wait the sequencer asks ``repair``
(the project's store, through the broker) for the missing numbers and delivers what it finds first, so a
subscriber that stays connected still gets every stored message, in order; a number the store does not
have (removed since) is passed over.

Anything without a sequence, a repeat (``prev`` already passed) or the first message of a key this
process has seen goes out at once. The state of a key lives only while the process has subscribers
for it (``forget``): without them it hears nothing of the key, so what it knew goes stale.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence

from stompengine import metrics
from stompengine.broker.local import Publication

logger = logging.getLogger(__name__)

HOLD_SECONDS = 1.0
REPAIR_SECONDS = 5.0  # a store that does not answer within this is passed over like an empty answer

#: ``repair(key, after, until)``: the stored publications of ``key`` numbered after ``after`` up to ``until``.
Repair = Callable[[str, int, int], Awaitable[Sequence[Publication]]]


class _Key:
    __slots__ = ("held", "last", "repairing", "timer")

    def __init__(self, last: int) -> None:
        self.last = last  # the highest seq delivered (or passed over)
        self.held: dict[int, Publication] = {}  # prev -> the publication waiting for it
        self.timer: asyncio.TimerHandle | None = None
        self.repairing = False  # a read of the missing numbers is under way: hold, start no timer


class Sequencer:
    """Delivers sequenced publications of each key in order; ``deliver`` is the broker's local fan-out."""

    def __init__(
        self,
        deliver: Callable[[Publication], object],
        *,
        wait: float = HOLD_SECONDS,
        repair: Repair | None = None,
        repair_timeout: float = REPAIR_SECONDS,
    ) -> None:
        self._deliver = deliver
        self._wait = wait
        self._repair = repair
        self._repair_timeout = repair_timeout
        self._keys: dict[str, _Key] = {}
        self._repairs: set[asyncio.Task[None]] = set()

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
            if state.timer is None and not state.repairing:
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
        for task in self._repairs:
            task.cancel()
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
        if self._repair is None:
            logger.info("a message of %s waited %.1f s for its predecessor; delivering what was held", key, self._wait)
            self._flush(state)
            return
        state.repairing = True
        task = asyncio.get_running_loop().create_task(self._fill(key, state, state.last, min(state.held)))
        self._repairs.add(task)
        task.add_done_callback(self._repairs.discard)

    async def _fill(self, key: str, state: _Key, after: int, until: int) -> None:
        """Deliver the stored publications numbered after ``after`` up to ``until`` (the lowest number a
        held one waits for), pass over any the store lacks, then carry on with what was held."""
        assert self._repair is not None
        found: Sequence[Publication] = ()
        try:
            async with asyncio.timeout(self._repair_timeout):
                found = await self._repair(key, after, until)
        except Exception as exc:  # the store is down or slow: deliver what was held rather than hold it longer
            logger.warning("could not read the missing messages %d-%d of %s from the store: %r", after + 1, until,
                           key, exc)  # fmt: skip
        if self._keys.get(key) is not state:
            return  # forgotten meanwhile (its last local subscriber left)
        state.repairing = False
        recovered = 0
        for publication in sorted(found, key=lambda p: p.seq):
            if state.last < publication.seq <= until:  # one that came live meanwhile went out already
                self._emit(state, publication)
                recovered += 1
        metrics.SEQUENCE_REPAIRED.inc(recovered)
        if state.last < until:
            metrics.SEQUENCE_SKIPPED.inc(until - state.last)
            logger.info("messages %d-%d of %s are neither published nor stored; passing over them", state.last + 1,
                        until, key)  # fmt: skip
            state.last = until
        else:
            logger.info("read %d message(s) of %s whose publisher never published them from the store", recovered,
                        key)  # fmt: skip
        self._drain(state)
        if state.held and state.timer is None:  # another gap further on: wait for it as for the first
            state.timer = asyncio.get_running_loop().call_later(self._wait, self._give_up, key)

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
