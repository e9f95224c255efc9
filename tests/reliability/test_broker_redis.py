"""The broker against a real redis-server: a process's own subscribers get every message it publishes,
exactly once and in publish order, whatever Redis does with the echo they wait for (dies, stalls, comes back).
"""

from __future__ import annotations

import asyncio
import secrets

import pytest
import redis

from stompengine.broker import broker as broker_module
from stompengine.broker.broker import Broker
from stompengine.broker.local import Publication
from tests.conftest import redis_restart

pytestmark = pytest.mark.live
TOPIC = "/topic/faults"


class Recorder:
    """A subscriber that keeps the bodies it was handed."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []

    def deliver(self, publication: Publication) -> None:
        self.bodies.append(publication.body)


async def eventually(predicate, what: str, within: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not predicate():
        assert loop.time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


def new_broker(redis_server) -> Broker:
    # A private prefix: brokers of other tests on the same redis-server never hear these messages.
    return Broker(redis_url=f"redis://127.0.0.1:{redis_server.port}/0", redis_prefix=f"t{secrets.token_hex(4)}:")


async def subscribed(broker: Broker) -> Recorder:
    recorder = Recorder()
    await broker.subscribe(TOPIC, recorder)
    broker.publish(TOPIC, "first")  # confirms the bridge is up: it arrives on the Redis echo
    await eventually(lambda: recorder.bodies == [b"first"], "the first message back from Redis")
    return recorder


async def test_messages_waiting_for_an_echo_reach_local_subscribers_when_redis_dies(redis_server):
    broker = new_broker(redis_server)
    try:
        local = await subscribed(broker)
        redis_server.kill()
        # The bridge has not noticed yet, so these go to Redis for an echo that will never come.
        during = [f"during {i}".encode() for i in range(10)]
        for body in during:
            broker.publish(TOPIC, body.decode())
        await eventually(lambda: len(local.bodies) >= 11, "the messages published after the kill")
        # Redis is still down: now the process delivers directly, after the ones it held.
        await eventually(lambda: not broker.bridge.routes(TOPIC), "the bridge to notice")
        broker.publish(TOPIC, "direct")
        assert local.bodies == [b"first", *during, b"direct"]
    finally:
        redis_restart(redis_server)
        await broker.close()


async def test_after_redis_returns_a_message_is_delivered_once_on_every_process(redis_server):
    url_prefix = f"t{secrets.token_hex(4)}:"
    url = f"redis://127.0.0.1:{redis_server.port}/0"
    one, two = Broker(redis_url=url, redis_prefix=url_prefix), Broker(redis_url=url, redis_prefix=url_prefix)
    try:
        here, there = await subscribed(one), Recorder()
        await two.subscribe(TOPIC, there)
        redis_server.kill()
        one.publish(TOPIC, "lost-for-two")  # stored by a real server; only local delivery can happen
        await eventually(lambda: not one.bridge.routes(TOPIC) and not two.bridge.routes(TOPIC), "the outage seen")
        redis_restart(redis_server)
        await eventually(lambda: one.bridge.routes(TOPIC) and two.bridge.routes(TOPIC), "both bridges back")
        for i in range(20):
            (one if i % 2 else two).publish(TOPIC, f"after {i}")
        after = {f"after {i}".encode() for i in range(20)}
        await eventually(lambda: after <= set(here.bodies) and after <= set(there.bodies), "both processes")
        await asyncio.sleep(0.3)  # time for a stray echo to arrive, so a duplicate would show
        assert here.bodies[:2] == [b"first", b"lost-for-two"]
        # One order for both processes, and no duplicates (Redis may or may not have carried the message
        # published while it was down to the other process, depending on when the writer retried it).
        assert [b for b in here.bodies if b in after] == [b for b in there.bodies if b in after]
        assert len(set(here.bodies)) == len(here.bodies) and len(set(there.bodies)) == len(there.bodies)
    finally:
        await one.close()
        await two.close()


async def test_a_stalled_echo_is_delivered_locally_in_time_and_never_twice(redis_server, monkeypatch):
    monkeypatch.setattr(broker_module, "ECHO_TIMEOUT", 0.3)
    broker = new_broker(redis_server)
    admin = redis.Redis(port=redis_server.port)
    try:
        local = await subscribed(broker)
        admin.execute_command("CLIENT", "PAUSE", "2000", "WRITE")  # PUBLISH now waits inside Redis
        broker.publish(TOPIC, "stalled")
        await eventually(lambda: local.bodies == [b"first", b"stalled"], "the sweep", within=1.5)
        admin.execute_command("CLIENT", "UNPAUSE")
        broker.publish(TOPIC, "later")
        await eventually(lambda: b"later" in local.bodies, "the next message")
        await asyncio.sleep(0.3)
        assert local.bodies == [b"first", b"stalled", b"later"]  # the late echo was not delivered again
    finally:
        admin.execute_command("CLIENT", "UNPAUSE")
        admin.close()
        await broker.close()


async def test_room_messages_reach_every_process_in_sequence_order_whoever_reaches_redis_first(redis_server):
    prefix, url = f"t{secrets.token_hex(4)}:", f"redis://127.0.0.1:{redis_server.port}/0"
    one, two = Broker(redis_url=url, redis_prefix=prefix), Broker(redis_url=url, redis_prefix=prefix)
    try:
        here, there = await subscribed(one), Recorder()
        await two.subscribe(TOPIC, there)
        one.publish(TOPIC, "9", seq=9, prev=8)
        await eventually(lambda: b"9" in here.bodies and b"9" in there.bodies, "message 9 everywhere")
        # Message 11 committed after 10, but its process got it to Redis first.
        two.publish(TOPIC, "11", seq=11, prev=10)
        await two.bridge.flush()
        await asyncio.sleep(0.2)  # its echo is back on both processes by now, and held there
        assert b"11" not in here.bodies and b"11" not in there.bodies
        one.publish(TOPIC, "10", seq=10, prev=9)
        await eventually(lambda: b"11" in here.bodies and b"11" in there.bodies, "10 and 11 everywhere")
        assert here.bodies[-3:] == there.bodies[-3:] == [b"9", b"10", b"11"]
    finally:
        await one.close()
        await two.close()
