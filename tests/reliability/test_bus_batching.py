"""The bus writer's batching and its Unix-socket transport against a real redis-server: messages published a
moment apart share one PUBLISH batch within the linger and still arrive once each, in publish order, in every
process; ``REDIS_URL=unix://…`` carries the same traffic as TCP.
"""

from __future__ import annotations

import asyncio
import secrets
import shutil
import subprocess

import pytest

from stompengine.broker.broker import Broker
from tests.conftest import wait_for
from tests.reliability.test_broker_redis import Recorder, eventually

pytestmark = pytest.mark.live
TOPIC = "/topic/batching"


def record_batches(broker: Broker) -> list[int]:
    """Sizes of the batches the broker's writer hands to Redis (the real send runs unchanged)."""
    assert broker.bridge is not None
    sizes: list[int] = []
    send = broker.bridge._send_batch

    async def recording(batch):
        sizes.append(len(batch))
        return await send(batch)

    broker.bridge._send_batch = recording  # type: ignore[method-assign]
    return sizes


async def pair(url: str, *, linger: float) -> tuple[Broker, Broker, Recorder, Recorder]:
    """Two brokers (two processes' worth) subscribed to TOPIC, each with a local subscriber."""
    prefix = f"b{secrets.token_hex(4)}:"
    one = Broker(redis_url=url, redis_prefix=prefix, redis_linger=linger)
    two = Broker(redis_url=url, redis_prefix=prefix, redis_linger=linger)
    here, there = Recorder(), Recorder()
    await one.subscribe(TOPIC, here)
    await two.subscribe(TOPIC, there)
    return one, two, here, there


async def test_messages_a_moment_apart_share_one_batch_and_keep_their_order(redis_server):
    url = f"redis://127.0.0.1:{redis_server.port}/0"
    one, two, here, there = await pair(url, linger=0.5)
    try:
        sizes = record_batches(one)
        bodies = [f"m{i}".encode() for i in range(5)]
        for body in bodies:  # each on its own event-loop tick, well within the linger
            one.publish(TOPIC, body.decode())
            await asyncio.sleep(0.01)
        await eventually(lambda: len(here.bodies) == 5 and len(there.bodies) == 5, "both processes' deliveries")
        assert sizes == [5]
        assert here.bodies == bodies
        assert there.bodies == bodies
    finally:
        await one.close()
        await two.close()


async def test_without_linger_a_lone_message_is_written_at_once(redis_server):
    url = f"redis://127.0.0.1:{redis_server.port}/0"
    one, two, here, there = await pair(url, linger=0.0)
    try:
        sizes = record_batches(one)
        for i in range(3):
            one.publish(TOPIC, f"m{i}")
            await eventually(lambda i=i: len(there.bodies) == i + 1, f"message {i} in the other process")
        assert sizes == [1, 1, 1]
        assert here.bodies == there.bodies == [b"m0", b"m1", b"m2"]
    finally:
        await one.close()
        await two.close()


@pytest.fixture
def redis_unix(tmp_path):
    """A redis-server listening on a Unix socket only (no TCP port); stopped by PID."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail("redis-server is not installed: run `make test`, which installs it (Debian package redis-server)")
    path = tmp_path / "redis.sock"
    process = subprocess.Popen(
        [binary, "--port", "0", "--unixsocket", str(path), "--unixsocketperm", "700", "--save", "",
         "--appendonly", "no"],
        stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        wait_for(path.exists, timeout=10, what="redis-server to open its Unix socket")
        yield path
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


async def test_the_bus_crosses_processes_over_a_unix_socket(redis_unix):
    one, two, here, there = await pair(f"unix://{redis_unix}", linger=0.001)
    try:
        assert one.bridge is not None and two.bridge is not None
        await eventually(lambda: one.bridge.connected and two.bridge.connected, "both subscriber connections")
        for i in range(20):
            (one if i % 2 else two).publish(TOPIC, f"m{i}")
        await eventually(lambda: len(here.bodies) == 20 and len(there.bodies) == 20, "every message in both")
        assert here.bodies == there.bodies  # one order everywhere: Redis'
        assert sorted(here.bodies) == sorted(f"m{i}".encode() for i in range(20))
        assert await one.bridge.commands.ping()  # the command pool (presence, budgets, readiness) too
    finally:
        await one.close()
        await two.close()
