"""Coalesced reads: one query per key serves every waiter, each taking its own part of the result.

A reconnect storm resumes thousands of subscriptions of the same room at once, each asking for what came
after its own ``since``. ``SinceCoalescer`` runs at most one query per key at a time: the waiters that
arrive while it runs are collected into the next one, which asks from the lowest ``since`` among them,
and each waiter then narrows that result to its own ``since`` (``narrow``). So a room costs one query per
query-time however many clients resume it, instead of one query each.

Why a waiter never joins a query already running: a resume must see everything committed up to the
moment its subscription went live (stompengine.gating's barrier). A query that started before that moment
may miss a message committed just before it; a query that starts after every one of its waiters is live
cannot. Callers call ``fetch`` after their barrier, and the collected query starts after the last of
them joined.

In a burst (a query of the key finished with waiters already queued for the next one), the next query
waits ``burst_wait`` seconds before it starts, so that more waiters join it: without that, a batch is
only the waiters that arrived during one query, and on a fast loop a 10,000-client storm's resumes went out
about 11 per query (bench/storm.py: 4 ORM queries per batch were most of a resume's CPU). A key's first
query after a calm moment starts at once (one turn of the loop). Waiting longer never breaks the rule
above: the query still starts after the last of its waiters joined.

``BatchCoalescer`` is the same for reads that are not "after n": each waiter brings an item (a user whose
membership of a room is checked), the shared query reads for all the items of its batch at once, and each
waiter derives its own answer (or refusal) from that. It has the same rule: a waiter never joins a query
already running, so its answer is never older than its request.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from typing import Any, Generic, TypeVar

K = TypeVar("K", bound=Hashable)
R = TypeVar("R")
T = TypeVar("T")
S = TypeVar("S")

__all__ = ["BURST_WAIT", "BatchCoalescer", "SinceCoalescer"]

BURST_WAIT = 0.025  # seconds a query waits for more waiters while its key's queries run back to back


class _Waiters(Generic[R]):
    """The waiters of one query: the future of its result, which they all await."""

    __slots__ = ("future",)

    def __init__(self, future: asyncio.Future[R]) -> None:
        self.future = future


W = TypeVar("W", bound=_Waiters[Any])


class _OneQueryPerKey(Generic[K, W]):
    """At most one query per key at a time; the waiters arriving meanwhile are collected for the next one."""

    def __init__(self, *, burst_wait: float = BURST_WAIT) -> None:
        self.burst_wait = burst_wait
        self._running: dict[K, asyncio.Task[None]] = {}
        self._waiting: dict[K, W] = {}
        self.queries = 0  # queries run (tests and the benchmark compare it with the waiters served)

    async def _query_for(self, key: K, waiters: W) -> Any:
        raise NotImplementedError

    def _waiters(self, key: K, new: Callable[[asyncio.Future[Any]], W]) -> W:
        """The waiters of ``key``'s next query, created (and the query started if none runs) when needed."""
        waiters = self._waiting.get(key)
        if waiters is None:
            waiters = self._waiting[key] = new(asyncio.get_running_loop().create_future())
            if key not in self._running:
                self._start(key, 0)
        return waiters

    def _start(self, key: K, wait: float) -> None:
        self._running[key] = asyncio.get_running_loop().create_task(self._run(key, wait), name="stomp-coalesced-query")

    async def _run(self, key: K, wait: float) -> None:
        cancelled = False
        try:
            # At least one turn of the loop lets the waiters arriving in the same step join before the query
            # starts; in a burst, ``burst_wait`` lets those of the next moments join too.
            await asyncio.sleep(wait)
            waiters = self._waiting.pop(key)
            self.queries += 1
            try:
                result = await self._query_for(key, waiters)
            except Exception as exc:
                waiters.future.set_exception(exc)
                waiters.future.exception()  # retrieved here too: waiters that were cancelled never read it
            else:
                waiters.future.set_result(result)
        except asyncio.CancelledError:
            cancelled = True  # the loop is closing
            raise
        finally:
            del self._running[key]
            pending = self._waiting.get(key)
            if pending is not None:  # waiters that came while this query ran: their own query, now
                if cancelled:
                    del self._waiting[key]
                    pending.future.cancel()
                else:
                    self._start(key, self.burst_wait)


class _Batch(_Waiters[R]):
    """The waiters of one "after since" query and the lowest ``since`` among them."""

    __slots__ = ("since",)

    def __init__(self, future: asyncio.Future[R]) -> None:
        super().__init__(future)
        self.since: int | None = None


class SinceCoalescer(_OneQueryPerKey[K, _Batch[R]], Generic[K, R]):
    """``await coalescer.fetch(key, since)``: ``narrow(key, query(key, lowest since), since)``, one query at a
    time per key.

    ``query(key, since)`` must return what lies after ``since`` in a form ``narrow(key, result, since)`` can
    cut down to what lies after a higher ``since`` exactly as a query of its own would have returned it.
    """

    def __init__(
        self,
        query: Callable[[K, int], Awaitable[R]],
        narrow: Callable[[K, R, int], R],
        *,
        burst_wait: float = BURST_WAIT,
    ) -> None:
        super().__init__(burst_wait=burst_wait)
        self._query = query
        self._narrow = narrow

    async def fetch(self, key: K, since: int) -> R:
        """What ``query(key, since)`` would return, from a query shared with the other waiters of ``key``."""
        batch = self._waiters(key, _Batch)
        batch.since = since if batch.since is None else min(batch.since, since)
        # shield: one waiter cancelled (its client left) must not cancel the query the others await.
        result: R = await asyncio.shield(batch.future)
        return self._narrow(key, result, since)

    async def _query_for(self, key: K, waiters: _Batch[R]) -> R:
        assert waiters.since is not None  # set by the waiter that created the batch, in the same step
        return await self._query(key, waiters.since)


class _Items(_Waiters[S], Generic[T, S]):
    """The waiters of one batch query and their items."""

    __slots__ = ("items",)

    def __init__(self, future: asyncio.Future[S]) -> None:
        super().__init__(future)
        self.items: list[T] = []


class BatchCoalescer(_OneQueryPerKey[K, _Items[T, S]], Generic[K, T, S, R]):
    """``await coalescer.fetch(key, item)``: ``answer(key, query(key, items of the batch), item)``, one query
    at a time per key; the waiters that arrive while it runs make up the next batch.

    ``query(key, items)`` reads what every item's answer needs (the items may repeat); ``answer`` may raise,
    and then only that waiter gets the exception.
    """

    def __init__(
        self,
        query: Callable[[K, list[T]], Awaitable[S]],
        answer: Callable[[K, S, T], R],
        *,
        burst_wait: float = BURST_WAIT,
    ) -> None:
        super().__init__(burst_wait=burst_wait)
        self._query = query
        self._answer = answer
        self.items = 0  # items served by the queries

    async def fetch(self, key: K, item: T) -> R:
        """What ``answer(key, query(key, [item]), item)`` would be, from a query shared with ``key``'s waiters."""
        batch = self._waiters(key, _Items)
        batch.items.append(item)
        # shield: one waiter cancelled (its client left) must not cancel the query the others await.
        shared: S = await asyncio.shield(batch.future)
        return self._answer(key, shared, item)

    async def _query_for(self, key: K, waiters: _Items[T, S]) -> S:
        self.items += len(waiters.items)
        return await self._query(key, waiters.items)
