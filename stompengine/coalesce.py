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

``BatchCoalescer`` is the same for reads that are not "after n": each waiter brings an item (a user whose
membership of a room is checked), the shared query reads for all the items of its batch at once, and each
waiter derives its own answer (or refusal) from that. It has the same rule: a waiter never joins a query
already running, so its answer is never older than its request.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
R = TypeVar("R")
T = TypeVar("T")
S = TypeVar("S")

__all__ = ["BatchCoalescer", "SinceCoalescer"]


class _Batch(Generic[R]):
    """The waiters of one query: the lowest ``since`` among them and the future they all await."""

    __slots__ = ("future", "since")

    def __init__(self, since: int, future: asyncio.Future[R]) -> None:
        self.since = since
        self.future = future


class SinceCoalescer(Generic[K, R]):
    """``await coalescer.fetch(key, since)``: ``narrow(key, query(key, lowest since), since)``, one query at a
    time per key.

    ``query(key, since)`` must return what lies after ``since`` in a form ``narrow(key, result, since)`` can
    cut down to what lies after a higher ``since`` exactly as a query of its own would have returned it.
    """

    def __init__(self, query: Callable[[K, int], Awaitable[R]], narrow: Callable[[K, R, int], R]) -> None:
        self._query = query
        self._narrow = narrow
        self._running: dict[K, asyncio.Task[None]] = {}
        self._waiting: dict[K, _Batch[R]] = {}
        self.queries = 0  # queries run (tests and the benchmark compare it with the waiters served)

    async def fetch(self, key: K, since: int) -> R:
        """What ``query(key, since)`` would return, from a query shared with the other waiters of ``key``."""
        batch = self._waiting.get(key)
        if batch is None:
            batch = self._waiting[key] = _Batch(since, asyncio.get_running_loop().create_future())
            if key not in self._running:
                self._start(key)
        else:
            batch.since = min(batch.since, since)
        # shield: one waiter cancelled (its client left) must not cancel the query the others await.
        result = await asyncio.shield(batch.future)
        return self._narrow(key, result, since)

    def _start(self, key: K) -> None:
        self._running[key] = asyncio.get_running_loop().create_task(self._run(key), name="stomp-coalesced-query")

    async def _run(self, key: K) -> None:
        cancelled = False
        try:
            # One turn of the loop lets the waiters arriving in the same burst join before the query starts.
            await asyncio.sleep(0)
            batch = self._waiting.pop(key)
            self.queries += 1
            try:
                result = await self._query(key, batch.since)
            except Exception as exc:
                batch.future.set_exception(exc)
                batch.future.exception()  # retrieved here too: waiters that were cancelled never read it
            else:
                batch.future.set_result(result)
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
                    self._start(key)


class _Items(Generic[T, S]):
    """The waiters of one batch query: their items and the future of the shared result they all await."""

    __slots__ = ("future", "items")

    def __init__(self, future: asyncio.Future[S]) -> None:
        self.items: list[T] = []
        self.future = future


class BatchCoalescer(Generic[K, T, S, R]):
    """``await coalescer.fetch(key, item)``: ``answer(key, query(key, items of the batch), item)``, one query
    at a time per key; the waiters that arrive while it runs make up the next batch.

    ``query(key, items)`` reads what every item's answer needs (the items may repeat); ``answer`` may raise,
    and then only that waiter gets the exception.
    """

    def __init__(self, query: Callable[[K, list[T]], Awaitable[S]], answer: Callable[[K, S, T], R]) -> None:
        self._query = query
        self._answer = answer
        self._running: dict[K, asyncio.Task[None]] = {}
        self._waiting: dict[K, _Items[T, S]] = {}
        self.queries = 0  # batch queries run
        self.items = 0  # items served by them

    async def fetch(self, key: K, item: T) -> R:
        """What ``answer(key, query(key, [item]), item)`` would be, from a query shared with ``key``'s waiters."""
        batch = self._waiting.get(key)
        if batch is None:
            batch = self._waiting[key] = _Items(asyncio.get_running_loop().create_future())
            if key not in self._running:
                self._start(key)
        batch.items.append(item)
        # shield: one waiter cancelled (its client left) must not cancel the query the others await.
        shared = await asyncio.shield(batch.future)
        return self._answer(key, shared, item)

    def _start(self, key: K) -> None:
        self._running[key] = asyncio.get_running_loop().create_task(self._run(key), name="stomp-batched-query")

    async def _run(self, key: K) -> None:
        cancelled = False
        try:
            await asyncio.sleep(0)  # the waiters of the same burst join before the query starts
            batch = self._waiting.pop(key)
            self.queries += 1
            self.items += len(batch.items)
            try:
                shared = await self._query(key, batch.items)
            except Exception as exc:
                batch.future.set_exception(exc)
                batch.future.exception()  # retrieved here too: waiters that were cancelled never read it
            else:
                batch.future.set_result(shared)
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
                    self._start(key)
