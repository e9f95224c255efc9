"""Presence leases against a real redis-server, with RedisPresence objects as the workers (issue 16 item 15):
a worker that stops renewing loses its users after the lease; one that stalled past it and comes back
writes its users back; a debounced leave followed by a join announces nothing. And against a Redis that
stops answering (a TCP listener on 127.0.0.1 that accepts and reads but never replies): every presence
call gives up within its bound and stop() returns, even when the lease task is cancelled mid-write."""

from __future__ import annotations

import asyncio
import logging
import uuid

import pytest
import redis
import redis.asyncio as aioredis

from chat.presence import CALL_TIMEOUT, MemoryPresence, Presence, RedisPresence

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


class _Silent(asyncio.Protocol):
    """One connection to a Redis that stopped answering (stalled, or the far end of a half-open connection):
    what the client writes is read and never answered."""

    def __init__(self, on_data) -> None:
        self.on_data = on_data

    def data_received(self, data: bytes) -> None:
        self.on_data(data)


async def silent_redis(on_data=lambda data: None) -> tuple[asyncio.Server, int]:
    server = await asyncio.get_running_loop().create_server(lambda: _Silent(on_data), "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


def run_bounded(scenario, *, bound: float, what: str):
    """Run ``scenario()`` on a loop of its own; fail naming ``what`` if it has not returned after ``bound`` s
    (instead of hanging the suite until pytest-timeout). The bound is a hang detector, far above the
    expected time, not a timing assertion."""

    async def guarded():
        task = asyncio.ensure_future(scenario())
        done, _ = await asyncio.wait({task}, timeout=bound)
        if not done:
            for other in asyncio.all_tasks():  # end them, so that asyncio.run can close the loop
                if other is not asyncio.current_task():
                    other.cancel()
            raise AssertionError(f"{what} did not return within {bound:g} s")
        return task.result()

    return asyncio.run(guarded())


def test_every_presence_call_gives_up_when_redis_stops_answering_and_stop_returns(caplog):
    """A client with no socket timeouts of its own (the worst the server could pass): enter, leave and the
    snapshot each fail as "Redis unavailable" after CALL_TIMEOUT instead of holding the SUBSCRIBE."""
    caplog.set_level(logging.WARNING, logger="chat.presence")

    async def scenario() -> None:
        server, port = await silent_redis()
        client = aioredis.Redis(host="127.0.0.1", port=port, socket_timeout=None, socket_connect_timeout=None)
        store = RedisPresence(client, f"t{uuid.uuid4().hex[:6]}:", lease=LEASE, worker="stalled")
        store.start()
        assert await store.enter("lobby", "ann") is False  # not counted, and the caller goes on
        assert await store.leave("lobby", "ann") is False
        assert await store.online("lobby") == []
        await store.stop()
        server.close()

    run_bounded(scenario, bound=10 * CALL_TIMEOUT, what="presence on a Redis that stopped answering")
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("not counted in lobby" in w and "no answer from Redis" in w for w in warnings), warnings
    assert any("not uncounted in lobby" in w for w in warnings), warnings
    assert any("no snapshot of lobby" in w for w in warnings), warnings


def test_a_lease_task_cancelled_as_its_redis_write_completes_still_stops():
    """The CI hang: stop() cancelled the lease task while redis-py was writing a command under
    asyncio.wait_for (it does when the client has a socket timeout, as the bus's has); Python 3.11's wait_for
    drops a cancellation that arrives as the write completes, so the lease task went on renewing and stop()
    waited for it forever. The listener cancels the lease task in exactly that window: as the write arrives."""

    async def scenario() -> None:
        cancelled = asyncio.Event()
        store: RedisPresence | None = None

        def on_data(_data: bytes) -> None:
            if store is not None and not cancelled.is_set():
                store._lease_task.cancel()  # what stop() does, at the moment the bug needs
                cancelled.set()

        server, port = await silent_redis(on_data)
        store = RedisPresence(f"redis://127.0.0.1:{port}/0", f"t{uuid.uuid4().hex[:6]}:", lease=LEASE, worker="w")
        store.start()
        lease_task = store._lease_task
        await cancelled.wait()
        done, _ = await asyncio.wait({lease_task}, timeout=5 * CALL_TIMEOUT)
        assert done, "the lease task went on after being cancelled"
        assert lease_task.cancelled()
        await store.stop()
        server.close()

    run_bounded(scenario, bound=10 * CALL_TIMEOUT, what="stopping the lease task")
