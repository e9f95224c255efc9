"""Cross-process fan-out over Redis Cluster's sharded pub/sub: SSUBSCRIBE on the shard that owns each channel.

The cluster form of ``RedisBridge`` (``REDIS_CLUSTER``): the same refcounted subscriptions, the same
pipelined writer, but a channel lives on the master that owns its hash slot. Classic PUBLISH on a cluster
is broadcast to every node; SPUBLISH/SSUBSCRIBE keep each message on one shard, so adding shards adds
pub/sub capacity.

Connections per process: one RedisCluster client (SPUBLISH and the other parts' commands, which it routes
by key; one pooled connection per master in practice) and **one subscriber connection per master that
owns at least one of the process's channels** (a reader task each). redis-py's async ``ClusterPubSub``
reads its shards by polling them round-robin with a timeout; a blocking reader per shard delivers at once
and costs nothing while idle, and keeps the subscription confirmations the broker's barrier needs.

When the owner of a slot changes — a master dies and its replica is promoted, or a slot is migrated
(Redis then sends an unsolicited SUNSUBSCRIBE) — the reader refreshes the slot map (CLUSTER SLOTS through
the cluster client) and moves each affected channel to its new owner's subscriber connection. Messages
published while a shard is away are lost to the other processes, as on one Redis: clients get them back
through resume (``since-id``), and the broker delivers its own locally (``on_disconnect``/``on_unrouted``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.crc import key_slot

from stompengine import metrics
from stompengine.broker.redis_bridge import _BACKOFF_START, REDIS_FAILURES, RedisBridge, _as_is

logger = logging.getLogger(__name__)

_SHARD_BACKOFF_MAX = 1.0  # a failover takes a few seconds: look for the new owner often


class _Shard:
    """The subscriber connection to one master and the channels this process holds there."""

    __slots__ = ("channels", "host", "name", "port", "pubsub", "ready", "retired", "task")

    def __init__(self, name: str, host: str, port: int) -> None:
        self.name = name
        self.host = host
        self.port = port
        self.channels: set[bytes] = set()
        self.pubsub: Any = None  # a redis.asyncio PubSub once connected and subscribed
        self.ready = asyncio.Event()
        self.retired = False  # its channels all moved elsewhere: the reader ends
        self.task: asyncio.Task[None] | None = None


class RedisClusterBridge(RedisBridge):
    """``RedisBridge`` on a Redis Cluster: SPUBLISH, and SSUBSCRIBE per shard (see the module docstring)."""

    publish_command = "SPUBLISH"  # routed to the master owning the channel's slot

    def __init__(self, url: str, *args: Any, **kwargs: Any) -> None:
        super().__init__(url, *args, **kwargs)
        self._shards: dict[str, _Shard] = {}
        self._home: dict[bytes, _Shard] = {}  # channel -> the shard it is (to be) subscribed on
        self._initialized = False
        self._rehoming: asyncio.Task[None] | None = None

    # -- public ---------------------------------------------------------------------------------------------
    @property
    def connected(self) -> bool:
        """Whether every shard holding one of this process's subscriptions is connected."""
        return all(shard.ready.is_set() for shard in self._shards.values() if shard.channels)

    def lane(self, key: str) -> int:
        """The channel's hash slot: one slot is served by one master, which echoes it in publish order."""
        return int(key_slot(self._channel(key)))

    async def close(self) -> None:
        self._closed = True
        for shard in self._shards.values():
            shard.retired = True
            if shard.task is not None:
                shard.task.cancel()
        for shard in list(self._shards.values()):
            if shard.task is not None:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await shard.task
            await self._close_pubsub(shard)
        self._shards.clear()
        self._home.clear()
        await super().close()

    # -- internals -----------------------------------------------------------------------------------------
    async def _subscribe_now(self, channel: bytes) -> None:
        if channel not in self._home:
            try:
                await self._place(channel)
            except REDIS_FAILURES:
                # No shard reader holds it yet (say the cluster was unreachable at start): place it later.
                self._rehome_soon()
                raise

    def _subscribing(self) -> bool:
        return True  # the channel's shard decides (``_unsubscribe``)

    def _live(self, channel: bytes) -> bool:
        shard = self._home.get(channel)
        return shard is not None and shard.ready.is_set()

    def _connect_client(self) -> None:
        if self._client is None and not self._closed:
            self._client = RedisCluster.from_url(self._url, socket_connect_timeout=2, socket_keepalive=True)

    def _start(self, *, reader: bool = False) -> None:
        # No process-wide reader: each shard starts its own when it gets its first channel.
        super()._start(reader=False)

    async def _reset_publisher(self) -> None:
        # RedisCluster drops a dead node's connections and refreshes its slot map by itself.
        return None

    async def _send_batch(self, batch: list[tuple[bytes, bytes]]) -> list[int]:
        """SPUBLISH a batch through a cluster pipeline: one batch per owning master, in order within each."""
        async with self._client.pipeline(transaction=False) as pipe:
            for channel, payload in batch:
                pipe.execute_command(self.publish_command, channel, payload)
            receivers: list[int] = await pipe.execute()
        return receivers

    async def _topology(self) -> None:
        if not self._initialized:
            assert self._client is not None
            await self._client.initialize()
            self._initialized = True

    async def _place(self, channel: bytes) -> None:
        """Put ``channel`` on its owner's shard (under the lock); SSUBSCRIBE now if that shard is connected."""
        await self._topology()
        node = self._client.get_node_from_key(channel)
        shard = self._shards.get(node.name)
        if shard is None or shard.retired:
            shard = self._shards[node.name] = _Shard(node.name, node.host, node.port)
        shard.channels.add(channel)
        self._home[channel] = shard
        if shard.task is None or shard.task.done():
            shard.task = asyncio.get_running_loop().create_task(
                self._read_shard(shard), name=f"stomp-redis-shard-{node.name}"
            )
        elif shard.pubsub is not None:
            await shard.pubsub.ssubscribe(channel)

    async def _unsubscribe(self, key: str) -> None:
        channel = self._channel(key)
        async with self._lock:
            if key in self._refs:
                return  # subscribed again meanwhile
            shard = self._home.pop(channel, None)
            if shard is None:
                return
            shard.channels.discard(channel)  # before SUNSUBSCRIBE: its confirmation is then known as ours
            if shard.pubsub is not None:
                try:
                    await shard.pubsub.sunsubscribe(channel)
                except REDIS_FAILURES as exc:
                    logger.warning("Redis SUNSUBSCRIBE %s failed: %s", key, exc)

    async def _connect_shard(self, shard: _Shard) -> None:
        async with self._lock:
            await self._close_pubsub(shard)
            if shard.retired:
                return
            # No retries inside redis-py: a dead owner must surface at once so the slot map is refreshed.
            client = aioredis.Redis(host=shard.host, port=shard.port, socket_connect_timeout=1,
                                    socket_keepalive=True, retry=Retry(NoBackoff(), 0))  # fmt: skip
            pubsub = client.pubsub(push_handler_func=_as_is)
            try:
                await pubsub.connect()
                by_slot: defaultdict[int, list[bytes]] = defaultdict(list)
                for channel in shard.channels:
                    by_slot[key_slot(channel)].append(channel)
                for channels in by_slot.values():  # one SSUBSCRIBE may name channels of one slot only
                    await pubsub.ssubscribe(*channels)
            except BaseException:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
                with contextlib.suppress(Exception):
                    await client.aclose()
                raise
            shard.pubsub = pubsub

    async def _close_pubsub(self, shard: _Shard) -> None:
        pubsub, shard.pubsub = shard.pubsub, None
        if pubsub is not None:
            with contextlib.suppress(Exception):
                await pubsub.aclose()
            with contextlib.suppress(Exception):
                await pubsub.connection_pool.disconnect()

    async def _read_shard(self, shard: _Shard) -> None:
        backoff = _BACKOFF_START
        failures = 0
        while not self._closed and not shard.retired:
            try:
                await self._connect_shard(shard)
                if shard.retired:
                    break
                if failures:
                    metrics.REDIS_RECONNECTS.inc()
                    logger.info("Redis shard %s reconnected after %d attempts; resubscribed %d channels",
                                shard.name, failures, len(shard.channels))  # fmt: skip
                failures, backoff = 0, _BACKOFF_START
                shard.ready.set()
                if self.connected:
                    self._ready.set()
                    metrics.REDIS_UP.set(1)
                assert shard.pubsub is not None
                await self._pump(shard.pubsub, b"smessage", lambda message: self._dispatch_shard(shard, message))
            except asyncio.CancelledError:
                raise
            except REDIS_FAILURES as exc:
                shard.ready.clear()
                self._lost()
                failures += 1
                if failures == 1:
                    logger.warning("Redis shard %s lost (%s); looking for the owner of its slots", shard.name, exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, _SHARD_BACKOFF_MAX)
                await self._rehome()
            except Exception:
                shard.ready.clear()
                self._lost()
                logger.exception("unexpected error in the Redis shard reader of %s; restarting it", shard.name)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, _SHARD_BACKOFF_MAX)
        shard.ready.clear()
        await self._close_pubsub(shard)

    def _dispatch_shard(self, shard: _Shard, message: dict[str, Any]) -> None:
        kind = message.get("type")
        if isinstance(kind, bytes):
            kind = kind.decode()
        if kind == "smessage":
            self._dispatch({"type": "message", "channel": message.get("channel"), "data": message.get("data")})
        elif kind == "ssubscribe":
            self._dispatch({"type": "subscribe", "channel": message.get("channel")})
        elif kind == "sunsubscribe" and message.get("channel") in shard.channels:
            # Not ours (ours leave ``channels`` first): the slot moved to another master.
            logger.info("Redis shard %s gave up %r (slot moved); resubscribing on its new owner",
                        shard.name, message.get("channel"))  # fmt: skip
            self._rehome_soon()

    def _rehome_soon(self) -> None:
        """Re-home in the background, with back-off until every subscribed channel has a shard."""
        if self._rehoming is None or self._rehoming.done():
            task = self._rehoming = asyncio.get_running_loop().create_task(self._rehome_until_placed())
            self._tasks.append(task)
            task.add_done_callback(lambda done: self._tasks.remove(done) if done in self._tasks else None)

    async def _rehome_until_placed(self) -> None:
        backoff = _BACKOFF_START
        while not self._closed:
            await self._rehome()
            if all(self._channel(key) in self._home for key in self._refs):
                return
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, _SHARD_BACKOFF_MAX)

    async def _rehome(self) -> None:
        """Refresh the slot map and move every channel whose owner changed to its owner's shard."""
        async with self._lock:
            if self._closed:
                return
            try:
                if self._initialized:
                    await self._client.nodes_manager.initialize()
                else:
                    await self._topology()
            except REDIS_FAILURES as exc:
                logger.warning("Redis Cluster slot map refresh failed (%s); retrying", exc)
                return
            for key in list(self._refs):  # subscribed while no shard could be reached
                channel = self._channel(key)
                if channel not in self._home:
                    with contextlib.suppress(*REDIS_FAILURES):
                        await self._place(channel)
            moved = 0
            for shard in list(self._shards.values()):
                for channel in list(shard.channels):
                    try:
                        node = self._client.get_node_from_key(channel)
                    except REDIS_FAILURES:
                        continue  # slot not covered right now (mid-failover): the next round tries again
                    if node.name == shard.name:
                        continue
                    shard.channels.discard(channel)
                    target = self._shards.get(node.name)
                    if target is None or target.retired:
                        target = self._shards[node.name] = _Shard(node.name, node.host, node.port)
                    target.channels.add(channel)
                    self._home[channel] = target
                    moved += 1
                    if target.task is None or target.task.done():
                        target.task = asyncio.get_running_loop().create_task(
                            self._read_shard(target), name=f"stomp-redis-shard-{node.name}"
                        )
                    elif target.pubsub is not None:
                        # On failure that shard's reader resubscribes everything it holds when it reconnects.
                        with contextlib.suppress(*REDIS_FAILURES):
                            await target.pubsub.ssubscribe(channel)
            for name, shard in list(self._shards.items()):
                if not shard.channels:
                    shard.retired = True
                    del self._shards[name]
                    if shard.task is not None and shard.task is not asyncio.current_task():
                        shard.task.cancel()
            if moved:
                logger.info("Redis Cluster: moved %d channel(s) to their slots' new owners", moved)
