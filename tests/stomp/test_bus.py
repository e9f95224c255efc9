"""The one bus: the channel layer over the broker (in memory and over a real Redis), the replay gate, the runtime."""

from __future__ import annotations

import asyncio
import threading

import pytest
from channels.exceptions import ChannelFull

from stompengine import runtime
from stompengine.broker.local import Publication
from stompengine.gating import ReplayGate, replay_then_live
from stompengine.layers import GROUP_KEY, SWEEP_EVERY, BrokerChannelLayer

WAIT = 5.0


@pytest.fixture
async def bus(settings):
    """A runtime of the test's own, without Redis (one process)."""
    settings.REDIS_URL = ""
    built = runtime.install(runtime.Runtime())
    yield built
    await runtime.uninstall()


async def test_in_memory_layer_sends_to_channels_and_groups(bus):
    layer = BrokerChannelLayer(capacity=2)
    first, second = await layer.new_channel(), await layer.new_channel("chat.ops.")
    assert "!" in first and second.startswith("chat.ops.")
    await layer.send(first, {"type": "direct", "n": 1})
    assert await asyncio.wait_for(layer.receive(first), WAIT) == {"type": "direct", "n": 1}
    await layer.group_add("room", first)
    await layer.group_add("room", second)
    await layer.group_send("room", {"type": "hello"})
    assert await asyncio.wait_for(layer.receive(first), WAIT) == {"type": "hello"}
    assert await asyncio.wait_for(layer.receive(second), WAIT) == {"type": "hello"}
    await layer.group_discard("room", second)
    await layer.group_send("room", {"type": "again"})
    assert await asyncio.wait_for(layer.receive(first), WAIT) == {"type": "again"}
    # A full channel of this process refuses a direct send; a group send to it is dropped.
    await layer.send(first, {"type": "a"})
    await layer.send(first, {"type": "b"})
    with pytest.raises(ChannelFull):
        await layer.send(first, {"type": "c"})
    await layer.group_send("room", {"type": "dropped"})
    assert [await layer.receive(first), await layer.receive(first)] == [{"type": "a"}, {"type": "b"}]
    await layer.flush()


async def test_in_memory_layer_reaches_a_receiver_on_another_event_loop_of_the_process(bus):
    layer = BrokerChannelLayer()
    channel = await layer.new_channel()
    await layer.group_add("everyone", channel)
    receiving = asyncio.ensure_future(layer.receive(channel))
    await asyncio.sleep(0)

    def other_loop() -> None:  # a sync view's async_to_sync runs on a loop of its own
        asyncio.run(layer.group_send("everyone", {"type": "from.elsewhere"}))

    await asyncio.to_thread(other_loop)
    assert await asyncio.wait_for(receiving, WAIT) == {"type": "from.elsewhere"}


async def test_expired_messages_are_not_received(bus):
    layer = BrokerChannelLayer(expiry=0)
    channel = await layer.new_channel()
    await layer.send(channel, {"type": "stale"})
    await asyncio.sleep(0.01)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(layer.receive(channel), 0.2)


async def test_a_consumer_that_crashed_in_a_group_leaves_it_after_the_group_expiry(bus):
    layer = BrokerChannelLayer(expiry=0.05, group_expiry=0.05)
    crashed, waiting = await layer.new_channel(), await layer.new_channel()
    for channel in (crashed, waiting):
        await layer.group_add("room", channel)
    await layer.group_add("ops", crashed)  # its only member: the group's subscription ends with it
    receiving = asyncio.ensure_future(layer.receive(waiting))  # alive, however long it waits
    await asyncio.sleep(0.1)
    for _ in range(SWEEP_EVERY):  # the sweep runs every SWEEP_EVERY new channels
        await layer.new_channel()
    state = layer._state()
    assert state.groups == {"room": {waiting}}
    assert GROUP_KEY + "ops" not in state.routes and crashed not in state.inboxes
    await layer.group_send("room", {"type": "still.here"})
    assert await asyncio.wait_for(receiving, WAIT) == {"type": "still.here"}


def run_elsewhere(coroutine_function) -> threading.Thread:
    """Run ``coroutine_function()`` on an event loop (and so a runtime, a Redis bridge) of its own."""

    def main() -> None:
        async def wrapped() -> None:
            try:
                await coroutine_function()
            finally:
                await runtime.uninstall()

        asyncio.run(wrapped())

    thread = threading.Thread(target=main, daemon=True)
    thread.start()
    return thread


@pytest.mark.live
async def test_redis_layer_crosses_runtimes_with_one_redis_channel_per_name_and_a_confirmed_group(
    settings, redis_server
):
    import redis.asyncio as aioredis

    url = f"redis://127.0.0.1:{redis_server.port}/0"
    settings.REDIS_URL = url
    here = runtime.install(runtime.Runtime.from_settings())
    layer = BrokerChannelLayer()
    try:
        channel = await layer.new_channel()
        await layer.group_add("notifications.user.7", channel)
        # The barrier: once group_add returned, Redis has the subscription (one plain channel, no pattern).
        assert here.broker.bridge.routes(GROUP_KEY + "notifications.user.7")
        watcher = aioredis.from_url(url)
        channels = {c.decode() for c in await watcher.pubsub_channels()}
        assert f"stomp:{GROUP_KEY}notifications.user.7" in channels
        assert await watcher.execute_command("PUBSUB", "NUMPAT") == 0
        await watcher.aclose()

        async def elsewhere() -> None:  # another process would do the same
            await layer.group_send("notifications.user.7", {"type": "notification.event", "id": 1})
            await layer.send(channel, {"type": "direct", "to": "a channel of another runtime"})

        thread = run_elsewhere(elsewhere)
        received = [await asyncio.wait_for(layer.receive(channel), WAIT) for _ in range(2)]
        await asyncio.to_thread(thread.join, WAIT)
        assert received == [
            {"type": "notification.event", "id": 1},
            {"type": "direct", "to": "a channel of another runtime"},
        ]
        # A plain channel name: received on the bus once somebody receives it.
        receiving = asyncio.ensure_future(layer.receive("chat.ops.plain"))

        async def subscribed() -> None:
            while not here.broker.bridge.routes("layer:c:chat.ops.plain"):  # noqa: ASYNC110 - bounded by WAIT
                await asyncio.sleep(0.01)

        await asyncio.wait_for(subscribed(), WAIT)
        thread = run_elsewhere(lambda: layer.send("chat.ops.plain", {"type": "plain"}))
        assert await asyncio.wait_for(receiving, WAIT) == {"type": "plain"}
        await asyncio.to_thread(thread.join, WAIT)
        await layer.group_discard("notifications.user.7", channel)
    finally:
        await runtime.uninstall()


@pytest.mark.live
async def test_presence_and_readiness_use_the_bus_command_connection(settings, redis_server):
    from chat.presence import presence
    from operations import readiness

    settings.REDIS_URL = f"redis://127.0.0.1:{redis_server.port}/0"
    here = runtime.install(runtime.Runtime.from_settings())
    try:
        tracked = presence()
        assert tracked.store._redis is here.commands
        await tracked.enter("lobby", "alice")
        assert await tracked.online("lobby") == ["alice"]
        result = await readiness.check(redis_url=settings.REDIS_URL, limit=2.0)
        assert result["checks"]["redis"] == {"ok": True, "detail": "ok"}
    finally:
        await runtime.uninstall()


def publication(seq: int) -> Publication:
    return Publication("/topic/x", f"n-{seq}", (), b"", seq=seq, prev=seq - 1 if seq else 0)


async def test_replay_gate_holds_then_releases_the_held_minus_what_the_replay_sent():
    gate: ReplayGate[Publication] = ReplayGate(lambda p: p.seq)
    order: list[str] = []

    async def subscribe() -> None:
        order.append("subscribed")
        assert not gate.admit(publication(5))  # live while replaying: held

    async def replay(gate: ReplayGate[Publication]) -> None:
        order.append("replayed")
        assert not gate.admit(publication(6))
        gate.replayed_through(5)

    held = await replay_then_live(gate, subscribe, replay)
    assert order == ["subscribed", "replayed"]
    assert [p.seq for p in held] == [6]
    assert gate.live and not gate.admit(publication(4)) and gate.admit(publication(7)) and gate.admit(publication(0))


async def test_replay_gate_remembers_replayed_numbers_and_overflows_to_another_pass():
    gate: ReplayGate[int] = ReplayGate(lambda n: n, limit=2)
    assert gate.replayed([3, 4]) == [3, 4] and gate.replayed([4, 5]) == [5]
    for n in (9, 8, 10):
        assert not gate.admit(n)
    assert gate.take_overflow() == 7 and gate.take_overflow() is None
    assert gate.replayed([8, 9, 10]) == [8, 9, 10]
    assert gate.release() == []
    assert not gate.admit(9) and gate.admit(11)
    gate.keep_newest(1)
    assert gate.admit(9) and not gate.admit(10)
    gate.forget_replayed()
    assert gate.admit(10)


async def test_a_failed_replay_still_opens_the_gate():
    gate: ReplayGate[int] = ReplayGate(lambda n: n)

    async def subscribe() -> None:
        pass

    async def replay(gate: ReplayGate[int]) -> None:
        raise RuntimeError("database down")

    with pytest.raises(RuntimeError):
        await replay_then_live(gate, subscribe, replay)
    assert gate.live
