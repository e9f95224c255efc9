"""The bus on a real local Redis Cluster (three masters, three replicas): sharded pub/sub per shard,
the channel layer and presence on the cluster, and subscriptions following a failover to the promoted replica.
"""

from __future__ import annotations

import asyncio
import secrets

import msgpack
import pytest
import redis
from redis.crc import key_slot

from stompengine.broker.broker import Broker
from stompengine.broker.local import Publication
from stompengine.broker.redis_cluster import RedisClusterBridge

pytestmark = pytest.mark.live


class Recorder:
    def __init__(self) -> None:
        self.bodies: list[bytes] = []

    def deliver(self, publication: Publication) -> None:
        self.bodies.append(publication.body)


async def eventually(predicate, what: str, within: float = 15.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not predicate():
        assert loop.time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


def topics_on_distinct_masters(cluster, prefix: str, count: int = 3) -> list[str]:
    """``count`` topics whose Redis channels hash to slots of ``count`` different masters."""
    return cluster.spread((f"/topic/rooms.r{n}" for n in range(10_000)), lambda topic: prefix + topic, count)


def shard_subscribers(cluster, channel: str) -> int:
    """SSUBSCRIBErs of ``channel`` on the master owning its slot (PUBSUB SHARDNUMSUB is per node)."""
    owner = cluster.master_of_slot(key_slot(channel.encode()))
    with redis.Redis(port=owner) as client:
        return int(client.execute_command("PUBSUB", "SHARDNUMSUB", channel)[1])


def new_broker(cluster, prefix: str) -> Broker:
    return Broker(redis_url=cluster.url, redis_prefix=prefix, redis_cluster=True)


async def test_messages_cross_processes_over_sharded_pubsub_in_order(redis_cluster):
    prefix = f"t{secrets.token_hex(4)}:"
    one, two = new_broker(redis_cluster, prefix), new_broker(redis_cluster, prefix)
    assert isinstance(one.bridge, RedisClusterBridge)
    topics = topics_on_distinct_masters(redis_cluster, prefix)
    try:
        heard = {}
        for topic in topics:
            for broker in (one, two):
                heard[broker, topic] = Recorder()
                await broker.subscribe(topic, heard[broker, topic])
        # One SSUBSCRIBE per channel per process, each on the master owning the channel's slot.
        for topic in topics:
            assert shard_subscribers(redis_cluster, f"{prefix}{topic}") == 2
        assert len(one.bridge._shards) == 3  # one subscriber connection per master holding its channels
        for n in range(30):
            (one if n % 2 else two).publish(topics[n % 3], f"m{n}")
        for topic_index, topic in enumerate(topics):
            expected = [f"m{n}".encode() for n in range(30) if n % 3 == topic_index]
            for broker in (one, two):
                await eventually(lambda b=broker, t=topic, e=expected: len(heard[b, t].bodies) >= len(e), topic)
                assert sorted(heard[broker, topic].bodies) == sorted(expected)  # once each
                for publisher in (0, 1):  # each publisher's messages in its publish order
                    mine = [b for b in heard[broker, topic].bodies if int(b[1:]) % 2 == publisher]
                    assert mine == [b for b in expected if int(b[1:]) % 2 == publisher]
            # The shard's order is the one order both processes deliver, own messages included.
            assert heard[one, topic].bodies == heard[two, topic].bodies
        # The last local subscriber leaving ends the process's SSUBSCRIBE.
        for topic in topics:
            one.unsubscribe(topic, heard[one, topic])
        await eventually(
            lambda: all(shard_subscribers(redis_cluster, f"{prefix}{t}") == 1 for t in topics), "SUNSUBSCRIBE"
        )
    finally:
        await one.close()
        await two.close()


async def test_channel_layer_groups_cross_processes_on_the_cluster(redis_cluster, settings):
    from stompengine import runtime
    from stompengine.layers import BrokerChannelLayer

    prefix = f"t{secrets.token_hex(4)}:"
    settings.REDIS_URL, settings.STOMP_REDIS_CLUSTER, settings.STOMP_REDIS_PREFIX = redis_cluster.url, True, prefix
    layer = BrokerChannelLayer()
    other = runtime.Runtime(redis_url=redis_cluster.url, redis_prefix=prefix, redis_cluster=True)
    runtime.install(runtime.Runtime(redis_url=redis_cluster.url, redis_prefix=prefix, redis_cluster=True))
    try:
        channel = await layer.new_channel()
        await layer.group_add("notify.42", channel)
        # Another process's broker (no subscriber there) publishes to the group over SPUBLISH.
        packed = msgpack.packb({"type": "note", "n": 1})
        other.broker.publish_frame("layer:g:notify.42", "layer:g:notify.42", (), packed)
        async with asyncio.timeout(10):
            message = await layer.receive(channel)
        assert message == {"type": "note", "n": 1}
        await layer.group_send("notify.42", {"type": "note", "n": 2})
        async with asyncio.timeout(10):
            assert (await layer.receive(channel))["n"] == 2
    finally:
        await other.close()
        await runtime.uninstall()


async def test_presence_and_budgets_keep_each_script_on_one_shard(redis_cluster):
    from redis.asyncio.cluster import RedisCluster

    from chat.presence import RedisPresence

    prefix = f"t{secrets.token_hex(4)}:"
    client = RedisCluster.from_url(redis_cluster.url)
    one = RedisPresence(client, prefix, lease=2.0, worker="one")
    two = RedisPresence(client, prefix, lease=2.0, worker="two")
    try:
        for room in ("lobby", "r1", "r2", "r3"):  # rooms whose plain keys would hash to different shards
            assert await one.enter(room, "ann") is True
            assert await two.enter(room, "ann") is False
            assert await two.enter(room, "ben") is True
            assert await one.online(room) == ["ann", "ben"]
            assert await one.leave(room, "ann") is False
            assert await two.leave(room, "ann") is True
            assert await one.online(room) == ["ben"]
        # A worker whose lease lapses is reaped by another (the multi-key script), its users leaving.
        left: list[tuple[str, str, str]] = []
        one.announce = lambda room, kind, user: left.append((room, kind, user))
        await two.stop()
        await client.delete(f"{prefix}{{presence}}:presence-alive:two")
        assert await one.reap() == 4
        assert sorted(left) == [(room, "leave", "ben") for room in ("lobby", "r1", "r2", "r3")]
        assert await one.online("lobby") == []
    finally:
        await one.stop()
        await two.stop()
        await client.aclose()


async def test_subscriptions_follow_a_failover_to_the_promoted_replica(redis_cluster):
    prefix = f"t{secrets.token_hex(4)}:"
    one, two = new_broker(redis_cluster, prefix), new_broker(redis_cluster, prefix)
    topics = topics_on_distinct_masters(redis_cluster, prefix)
    victim_port = redis_cluster.master_of_slot(key_slot(f"{prefix}{topics[0]}".encode()))
    victim = redis_cluster.node(victim_port)
    try:
        heard = {topic: Recorder() for topic in topics}
        for topic in topics:
            await two.subscribe(topic, heard[topic])
            await one.subscribe(topic, Recorder())
        victim.kill()
        # The replica takes over (cluster-node-timeout 1 s); both bridges move the lost shard's channels there.
        await eventually(lambda: redis_cluster.master_of_slot(key_slot(f"{prefix}{topics[0]}".encode())) != victim_port,
                         "the replica to be promoted", within=30)  # fmt: skip
        await eventually(lambda: two.bridge.routes(topics[0]) and one.bridge.routes(topics[0]),
                         "the subscriptions to be re-established on the new master", within=30)  # fmt: skip
        for topic in topics:
            one.publish(topic, f"after {topic}")
        for topic in topics:
            await eventually(lambda t=topic: f"after {t}".encode() in heard[t].bodies, f"{topic} after the failover")
        new_owner = redis_cluster.master_of_slot(key_slot(f"{prefix}{topics[0]}".encode()))
        assert shard_subscribers(redis_cluster, f"{prefix}{topics[0]}") == 2
        assert new_owner in redis_cluster.ports and new_owner != victim_port
    finally:
        await one.close()
        await two.close()
        redis_cluster.restart(victim)  # rejoins as a replica of the promoted node
        redis_cluster.wait_ok()


def node_id(port: int) -> str:
    with redis.Redis(port=port) as client:
        return client.execute_command("CLUSTER", "MYID").decode()


def move_slot(cluster, slot: int, source: int, target: int) -> None:
    """Migrate an empty slot from one master to another, as ``redis-cli --cluster reshard`` does."""
    source_id, target_id = node_id(source), node_id(target)
    with redis.Redis(port=target) as client:
        client.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", source_id)
    with redis.Redis(port=source) as client:
        client.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", target_id)
    for port in (target, source):  # the target first, so the slot is never unowned
        with redis.Redis(port=port) as client:
            client.execute_command("CLUSTER", "SETSLOT", slot, "NODE", target_id)


async def test_a_migrated_slot_moves_its_subscriptions_to_the_new_owner(redis_cluster):
    prefix = f"t{secrets.token_hex(4)}:"
    one, two = new_broker(redis_cluster, prefix), new_broker(redis_cluster, prefix)
    topic, other = topics_on_distinct_masters(redis_cluster, prefix, 2)
    channel = f"{prefix}{topic}"
    slot = key_slot(channel.encode())
    source = redis_cluster.master_of_slot(slot)
    target = redis_cluster.master_of_slot(key_slot(f"{prefix}{other}".encode()))
    try:
        heard = Recorder()
        await two.subscribe(topic, heard)
        await one.subscribe(topic, Recorder())
        move_slot(redis_cluster, slot, source, target)
        # The old owner SUNSUBSCRIBEs both processes; each moves the channel to the new owner.
        await eventually(lambda: redis_cluster.master_of_slot(slot) == target, "the slot to move")
        await eventually(lambda: shard_subscribers(redis_cluster, channel) == 2, "SSUBSCRIBE on the new owner")
        await eventually(lambda: one.bridge.routes(topic) and two.bridge.routes(topic), "both bridges to route it")
        one.publish(topic, "after the move")
        await eventually(lambda: heard.bodies == [b"after the move"], "the message through the new owner")
    finally:
        await one.close()
        await two.close()
        move_slot(redis_cluster, slot, target, source)  # as it was, for the other tests
        redis_cluster.wait_ok()
