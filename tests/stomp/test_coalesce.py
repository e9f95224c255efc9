"""stompengine.coalesce: one query per key for the waiters of a burst, each taking its own part of the result."""

from __future__ import annotations

import asyncio

import pytest

from stompengine.coalesce import BatchCoalescer, SinceCoalescer

STORED = list(range(1, 101))


def after(since: int) -> list[int]:
    return [n for n in STORED if n > since]


class HeldQuery:
    """An "after since" query that records its since and runs until ``release`` is set."""

    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.release = asyncio.Event()
        self.asked: list[int] = []

    async def query(self, key: str, since: int) -> list[int]:
        self.asked.append(since)
        self.started.set()
        await self.release.wait()
        return after(since)


async def test_a_burst_of_waiters_shares_one_query_from_the_lowest_since_and_each_gets_its_own_slice():
    asked: list[tuple[str, int]] = []

    async def query(key: str, since: int) -> list[int]:
        asked.append((key, since))
        await asyncio.sleep(0.01)
        return after(since)

    coalescer = SinceCoalescer(query, lambda key, result, since: [n for n in result if n > since])
    sinces = [(n * 37) % 100 for n in range(500)]
    results = await asyncio.gather(*(coalescer.fetch("room", since) for since in sinces))
    assert results == [after(since) for since in sinces]
    assert asked == [("room", 0)] and coalescer.queries == 1


async def test_waiters_arriving_during_a_query_get_the_next_query_never_the_running_one():
    held = HeldQuery()
    started, release, asked, query = held.started, held.release, held.asked, held.query
    coalescer = SinceCoalescer(query, lambda key, result, since: [n for n in result if n > since])
    first = asyncio.ensure_future(coalescer.fetch("room", 50))
    await started.wait()
    # Started after the query began: a message committed in between would be missing from its result.
    late = [asyncio.ensure_future(coalescer.fetch("room", since)) for since in (70, 60, 90)]
    await asyncio.sleep(0.01)
    assert asked == [50]
    release.set()
    assert await first == after(50)
    assert [await task for task in late] == [after(70), after(60), after(90)]
    assert asked == [50, 60] and coalescer.queries == 2


async def test_keys_are_independent_and_a_failure_reaches_every_waiter_of_its_query_only():
    async def query(key: str, since: int) -> list[int]:
        await asyncio.sleep(0)
        if key == "broken":
            raise RuntimeError("database gone")
        return after(since)

    coalescer = SinceCoalescer(query, lambda key, result, since: [n for n in result if n > since])
    results = await asyncio.gather(
        coalescer.fetch("a", 10), coalescer.fetch("broken", 1), coalescer.fetch("broken", 2),
        coalescer.fetch("b", 20), return_exceptions=True,
    )  # fmt: skip
    assert results[0] == after(10) and results[3] == after(20)
    assert [str(r) for r in results[1:3]] == ["database gone", "database gone"]
    assert coalescer.queries == 3
    assert await coalescer.fetch("a", 99) == [100]  # nothing left running or waiting


async def test_a_cancelled_waiter_does_not_cancel_the_query_the_others_await():
    async def query(key: str, since: int) -> list[int]:
        await asyncio.sleep(0.02)
        return after(since)

    coalescer = SinceCoalescer(query, lambda key, result, since: [n for n in result if n > since])
    leaving = asyncio.ensure_future(coalescer.fetch("room", 0))
    staying = asyncio.ensure_future(coalescer.fetch("room", 95))
    await asyncio.sleep(0.005)
    leaving.cancel()
    assert await staying == after(95)
    with pytest.raises(asyncio.CancelledError):
        await leaving


async def test_a_batch_reads_for_every_waiter_once_each_answers_or_is_refused_alone_and_late_ones_wait():
    """BatchCoalescer: the burst's items in one query, each waiter's own answer (a refusal reaches that waiter
    only), and an item arriving while the query runs is read by the next query, never the running one."""
    members = {"room": {1, 2, 3}}
    asked: list[list[int]] = []
    release = asyncio.Event()

    async def query(key: str, items: list[int]) -> frozenset[int]:
        asked.append(sorted(items))
        found = frozenset(members[key] & set(items))  # read at the query's start
        await release.wait()
        return found

    def answer(key: str, found: frozenset[int], item: int) -> int:
        if item not in found:
            raise LookupError(f"{item} is not in {key}")
        return item * 10

    coalescer = BatchCoalescer(query, answer)
    first = [asyncio.ensure_future(coalescer.fetch("room", n)) for n in (1, 2, 9, 2)]
    await asyncio.sleep(0.01)
    members["room"].add(9)  # changed while the first query runs: the late waiter must see it
    late = asyncio.ensure_future(coalescer.fetch("room", 9))
    await asyncio.sleep(0.01)
    assert asked == [[1, 2, 2, 9]] and not late.done()
    release.set()
    results = await asyncio.gather(*first, return_exceptions=True)
    assert results[0] == 10 and results[1] == 20 and results[3] == 20
    assert isinstance(results[2], LookupError)
    assert await late == 90 and asked == [[1, 2, 2, 9], [9]]
    assert coalescer.queries == 2 and coalescer.items == 5


async def test_in_a_burst_the_next_query_waits_for_the_waiters_of_the_following_moments_too():
    """A query that finds waiters queued behind it is a burst: the next query waits ``burst_wait`` before it
    starts, so the waiters arriving in the moments after join it instead of making up a third query."""
    held = HeldQuery()
    started, release, asked, query = held.started, held.release, held.asked, held.query
    coalescer = SinceCoalescer(query, lambda key, result, since: [n for n in result if n > since], burst_wait=2.0)
    first = asyncio.ensure_future(coalescer.fetch("room", 50))
    await started.wait()
    queued = asyncio.ensure_future(coalescer.fetch("room", 70))  # arrives while the first query runs
    await asyncio.sleep(0)
    release.set()
    assert await first == after(50)
    # The first query is over and the next one (for 70) is waiting: these join it.
    later = [asyncio.ensure_future(coalescer.fetch("room", since)) for since in (60, 90)]
    assert [await queued, *[await task for task in later]] == [after(70), after(60), after(90)]
    assert asked == [50, 60] and coalescer.queries == 2


async def test_a_query_after_a_calm_moment_starts_without_the_burst_wait():
    async def query(key: str, items: list[int]) -> set[int]:
        return set(items)

    coalescer = BatchCoalescer(query, lambda key, found, item: item in found, burst_wait=3600)
    # Were the burst wait applied to a first query, this would wait an hour (and fail on the 30 s bound).
    assert await asyncio.wait_for(coalescer.fetch("room", 1), timeout=30) is True
    assert await asyncio.wait_for(coalescer.fetch("room", 2), timeout=30) is True  # the first one had ended
    assert coalescer.queries == 2
