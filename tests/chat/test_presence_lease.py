"""Presence leases against a real redis-server, with RedisPresence objects as the workers (issue 16 item 15):
a worker that stops renewing loses its users after the lease; one that stalled past it and comes back
writes its users back; a debounced leave followed by a join announces nothing."""

from __future__ import annotations

import asyncio
import uuid

import pytest
import redis

from chat.presence import MemoryPresence, Presence, RedisPresence

pytestmark = pytest.mark.live
LEASE = 0.6


@pytest.fixture
def redis_url(redis_server) -> str:
    return f"redis://127.0.0.1:{redis_server.port}/0"


async def until(predicate, *, what: str, attempts: int = 400, interval: float = 0.05) -> None:
    """Poll ``predicate`` on the loop until it holds; fail naming ``what`` after ``attempts`` polls."""
    for _ in range(attempts):
        if predicate():
            return
        await asyncio.sleep(interval)
    raise AssertionError(f"gave up after {attempts * interval:.0f}s waiting for {what}")


def online(url: str, prefix: str, room: str) -> set[str]:
    counts = redis.Redis.from_url(url).hgetall(f"{prefix}presence:{room}")
    return {k.decode() for k, v in counts.items() if int(v) > 0}


async def worker(url: str, prefix: str, name: str, told: list) -> RedisPresence:
    store = RedisPresence(url, prefix, lease=LEASE, worker=name)
    store.announce = lambda room, kind, user: told.append((name, kind, user))
    store.start()
    return store


def test_a_worker_that_stops_renewing_loses_its_users_and_a_stalled_one_writes_them_back(redis_url):
    prefix = f"t{uuid.uuid4().hex[:6]}:"
    told: list = []

    async def scenario() -> None:
        dying = await worker(redis_url, prefix, "dying", told)
        living = await worker(redis_url, prefix, "living", told)
        assert await dying.enter("lobby", "ann") and await living.enter("lobby", "ben")
        assert await dying.enter("lobby", "ben") is False  # ben's second session
        await dying.stop()  # stops renewing, as a killed process would; nothing is decremented
        await until(lambda: online(redis_url, prefix, "lobby") == {"ben"}, what="ann to go offline")
        assert ("living", "leave", "ann") in told  # the reaper announced it; ben still has a session
        assert ("living", "leave", "ben") not in told
        # The stalled worker comes back: its lease is gone, so it writes its sessions back.
        dying.start()
        await until(lambda: online(redis_url, prefix, "lobby") == {"ann", "ben"}, what="ann to be back")
        assert ("dying", "join", "ann") in told
        counts = redis.Redis.from_url(redis_url).hgetall(f"{prefix}presence:lobby")
        assert {k.decode(): int(v) for k, v in counts.items()} == {"ann": 1, "ben": 2}
        # Leaving still counts down exactly.
        assert await dying.leave("lobby", "ann") and not await dying.leave("lobby", "ben")
        assert await living.leave("lobby", "ben")
        await dying.stop()
        await living.stop()

    asyncio.run(scenario())


def test_a_live_worker_keeps_its_users_over_several_leases(redis_url):
    prefix = f"t{uuid.uuid4().hex[:6]}:"
    told: list = []

    async def scenario() -> list[set[str]]:
        living = await worker(redis_url, prefix, "living", told)
        other = await worker(redis_url, prefix, "other", told)  # reaping too
        await living.enter("lobby", "ben")
        seen = []
        for _ in range(20):  # five leases
            await asyncio.sleep(LEASE / 4)
            seen.append(online(redis_url, prefix, "lobby"))
        await living.stop()
        await other.stop()
        return seen

    assert asyncio.run(scenario()) == [{"ben"}] * 20
    assert told == []


def test_a_leave_then_a_join_within_the_window_announces_nothing_and_a_real_leave_arrives():
    told: list = []

    async def scenario() -> None:
        presence = Presence(MemoryPresence(), announce=lambda *event: told.append(event), debounce=0.2)
        await presence.enter("lobby", "bob")
        for _ in range(50):
            await presence.leave("lobby", "bob")
            assert await presence.online("lobby") == ["bob"]  # the snapshot agrees with the events
            await presence.enter("lobby", "bob")
        await presence.leave("lobby", "bob")
        await until(lambda: len(told) >= 2, what="the real leave")
        assert await presence.online("lobby") == []

    asyncio.run(scenario())
    assert told == [("lobby", "join", "bob"), ("lobby", "leave", "bob")]
