"""Cross-process fan-out over Redis pub/sub: one Redis subscription per routing key per process, refcounted.

Routing (which keys, which local subscribers) is the broker's; this module only moves bytes and keeps
the Redis connections alive. Connections per process: one subscribed (a reader task, started with the
first subscription), one for PUBLISH (a writer task's own, that pipelines whatever accumulated, so messages
keep their publish order and a burst costs one round trip; when it wakes to a short queue it lingers
``linger`` seconds first, so that messages published a moment apart share one write, one reply and one
read on every subscriber connection), and the pool of the process's other Redis commands (``commands``:
presence, the per-user budget, the readiness PING). When Redis goes away, local delivery
is unaffected: publishes are dropped with a warning and the subscriber reconnects with backoff,
resubscribing every key that still has local subscribers. The owner hears of both (``on_unrouted`` with
the payloads no subscriber got, ``on_disconnect`` when the subscriber connection drops), since it may be
waiting for those echoes. On a Redis Cluster the subclass in ``redis_cluster.py`` keeps this contract with
SPUBLISH and a subscriber connection per shard.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Callable, Coroutine
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisClusterException, RedisError

from stompengine import metrics

logger = logging.getLogger(__name__)

MessageHandler = Callable[[str, bytes], None]
UnroutedHandler = Callable[[list[bytes]], None]
OUTBOX_LIMIT = 100_000  # messages waiting for Redis before the oldest are dropped
# A queue this long at the writer's wake-up goes at once: the batch is already worth its round trip.
LINGER_BATCH = 64
# Seconds one PUBLISH batch may take (write and every reply) before its connection counts as dead
# (redis-py's default socket timeout, once per batch instead of once per write and per reply).
PUBLISH_TIMEOUT = 5.0
_BACKOFF_START = 0.1
_BACKOFF_MAX = 5.0
# What a Redis call raises when Redis (or, on a cluster, the owner of a slot) is unreachable or moving.
# redis-py's cluster errors (a slot not covered mid-failover) are not RedisErrors.
REDIS_FAILURES = (RedisError, RedisClusterException, OSError)


async def _as_is(response: Any) -> Any:
    """The subscriber connections' push handler. redis-py's default one builds ``str()`` of every message
    for a debug log line (whether or not it is logged): a copy of the payload per message."""
    return response


class RedisBridge:
    """Subscribe/unsubscribe routing keys on Redis and publish to them; ``on_message(key, payload)`` gets the rest."""

    publish_command = "PUBLISH"

    def __init__(
        self,
        url: str,
        on_message: MessageHandler,
        *,
        on_unrouted: UnroutedHandler | None = None,
        on_disconnect: Callable[[], None] | None = None,
        prefix: str = "stomp:",
        subscribe_timeout: float = 2.0,
        linger: float = 0.0,
    ) -> None:
        """``linger``: seconds the writer waits, on waking to fewer than ``LINGER_BATCH`` messages, for more
        to join the batch (0: it writes what is there at once)."""
        self._url = url
        self._linger = linger
        self._on_message = on_message
        self._on_unrouted = on_unrouted or (lambda _payloads: None)
        self._on_disconnect = on_disconnect or (lambda: None)
        self._prefix = prefix
        self._prefix_bytes = prefix.encode("utf-8")
        self._subscribe_timeout = subscribe_timeout
        self._refs: dict[str, int] = {}
        self._confirmations: dict[bytes, asyncio.Future[None]] = {}
        self._lock = asyncio.Lock()  # orders SUBSCRIBE/UNSUBSCRIBE commands and reconnects
        self._client: Any = None  # aioredis.Redis, or RedisCluster in the cluster bridge
        self._pubsub: aioredis.client.PubSub | None = None
        self._outbox: list[tuple[bytes, bytes]] = []
        self._outbox_ready = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._reader: asyncio.Task[None] | None = None
        self._writer: asyncio.Task[None] | None = None
        self._closed = False
        self._ready = asyncio.Event()  # set while the subscriber connection is up
        self._dropped = 0
        self._writing = False
        self._drained = asyncio.Event()  # set each time the writer finishes a batch
        self._publisher_stale = False  # the subscriber saw Redis go: the PUBLISH connection died with it
        self._publisher: Any = None  # the writer's own connection (one Redis), outside the command pool
        self._queued = 0  # PUBLISHes queued ever
        self._settled = 0  # of those, how many were handed to Redis (or failed, or were dropped)
        # Up until the subscriber connection is lost: a bridge with no subscription yet loses nothing (an idle
        # worker must not read as "Redis gone" to the ChatRedisGone alert before its first client subscribes).
        metrics.REDIS_UP.set(1)

    # -- public ---------------------------------------------------------------------------------------------
    @property
    def connected(self) -> bool:
        """Whether the subscriber connection is up (every subscription of this process is live)."""
        return self._ready.is_set()

    @property
    def subscribed_keys(self) -> list[str]:
        """Keys this process holds a Redis subscription for."""
        return list(self._refs)

    async def retain(self, key: str) -> None:
        """Count one more local subscriber of ``key``; the first one subscribes on Redis (and waits for it)."""
        count = self._refs.get(key, 0)
        self._refs[key] = count + 1
        channel = self._channel(key)
        if count:
            pending = self._confirmations.get(channel)
            if pending is not None:
                await self._wait(pending)
            return
        self._start(reader=True)
        confirmation = asyncio.get_running_loop().create_future()
        self._confirmations[channel] = confirmation
        try:
            async with self._lock:
                if self._refs.get(key):
                    await self._subscribe_now(channel)
            await self._wait(confirmation)
        except REDIS_FAILURES as exc:
            # The reader's reconnect resubscribes every key with subscribers, this one included.
            logger.warning("Redis SUBSCRIBE %s failed (%s); cross-process delivery resumes on reconnect", key, exc)
        finally:
            if self._confirmations.get(channel) is confirmation:
                del self._confirmations[channel]

    def release(self, key: str) -> None:
        """Count one local subscriber of ``key`` less; the last one unsubscribes on Redis (in the background)."""
        count = self._refs.get(key, 0)
        if count > 1:
            self._refs[key] = count - 1
            return
        self._refs.pop(key, None)
        if self._subscribing() and not self._closed:
            self._spawn(self._unsubscribe(key))

    def routes(self, key: str) -> bool:
        """True when a PUBLISH to ``key`` will come back to this process: connected and subscribed (confirmed)."""
        if not self._refs.get(key) or not self._live(self._channel(key)):
            return False
        pending = self._confirmations.get(self._channel(key))
        return pending is None or pending.done()

    def lane(self, key: str) -> int:
        """Messages of keys in one lane come back from Redis in publish order (one server: a single lane)."""
        return 0

    @property
    def commands(self) -> Any:
        """The command connection (PUBLISH, and the commands of the process's other parts: presence, budgets,
        PING); None once closed."""
        self._connect_client()
        return self._client

    def publish(self, key: str, payload: bytes) -> int:
        """Queue a PUBLISH; the writer task sends queued messages in order, pipelined. Returns its mark
        for ``settled``."""
        if self._closed:
            return 0
        self._start()
        self._outbox.append((self._channel(key), payload))
        self._queued += 1
        self._outbox_ready.set()
        if len(self._outbox) > OUTBOX_LIMIT:
            _, oldest = self._outbox.pop(0)
            self._settled += 1
            self._dropped += 1
            if self._dropped % 1000 == 1:
                logger.warning("Redis is not keeping up: dropped %d cross-process messages so far", self._dropped)
            self._unrouted([oldest])
        return self._queued

    @property
    def queued(self) -> int:
        """The mark of the newest queued PUBLISH (for ``settled``)."""
        return self._queued

    async def settled(self, mark: int) -> None:
        """Wait until the PUBLISH ``publish`` returned ``mark`` for was handed to Redis (or failed)."""
        while self._settled < mark and not self._closed and self._writer_alive():
            self._drained.clear()
            await self._drained.wait()

    async def flush(self) -> None:
        """Wait until every queued PUBLISH has been handed to Redis (or failed); bound it with a timeout."""
        while (self._outbox or self._writing) and self._writer_alive():
            self._drained.clear()
            await self._drained.wait()

    async def close(self) -> None:
        """Stop the tasks and close both Redis connections."""
        self._closed = True
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        if self._pubsub is not None:
            with contextlib.suppress(Exception):
                await self._pubsub.aclose()
        if self._publisher is not None:
            with contextlib.suppress(Exception):
                await self._publisher.disconnect()
        if self._client is not None:
            with contextlib.suppress(Exception):
                await self._client.aclose()

    # -- internals -----------------------------------------------------------------------------------------
    # The subscriber side, where the cluster bridge differs (one connection per shard, SSUBSCRIBE):
    async def _subscribe_now(self, channel: bytes) -> None:
        """SUBSCRIBE ``channel`` if the subscriber is connected (under the lock); otherwise the reader's
        (re)connect subscribes every key with subscribers, this one included."""
        if self._pubsub is not None:
            await self._pubsub.subscribe(channel)

    def _subscribing(self) -> bool:
        """Whether an UNSUBSCRIBE may be needed (a subscriber connection exists)."""
        return self._pubsub is not None

    def _live(self, channel: bytes) -> bool:
        """Whether the connection carrying ``channel``'s subscription is up."""
        return self._ready.is_set()

    def _channel(self, key: str) -> bytes:
        return self._prefix_bytes + key.encode("utf-8")

    def _connect_client(self) -> None:
        if self._client is None and not self._closed:
            # TCP keepalive notices a peer that vanished; a Unix socket (``unix:///run/redis.sock``, Redis on
            # the same machine) has no such option, and redis-py refuses it there.
            keepalive = {} if self._url.startswith("unix:") else {"socket_keepalive": True}
            self._client = aioredis.Redis.from_url(self._url, socket_connect_timeout=2, **keepalive)

    def _start(self, *, reader: bool = False) -> None:
        """Start the writer task, and the reader too when asked: a process that only publishes (a command,
        a sync caller's temporary loop) never opens the subscriber connection."""
        if self._closed:
            return
        self._connect_client()
        loop = asyncio.get_running_loop()
        if self._writer is None:
            self._writer = loop.create_task(self._write_forever(), name="stomp-redis-writer")
            self._tasks.append(self._writer)
        if reader and self._reader is None:
            self._reader = loop.create_task(self._read_forever(), name="stomp-redis-reader")
            self._tasks.append(self._reader)

    def _writer_alive(self) -> bool:
        return self._writer is not None and not self._writer.done()

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.append(task)
        task.add_done_callback(lambda t: self._tasks.remove(t) if t in self._tasks else None)

    async def _wait(self, future: asyncio.Future[None]) -> None:
        try:
            await asyncio.wait_for(asyncio.shield(future), self._subscribe_timeout)
        except TimeoutError:
            logger.warning("Redis did not confirm a subscription within %.1fs", self._subscribe_timeout)

    async def _unsubscribe(self, key: str) -> None:
        async with self._lock:
            if key in self._refs or self._pubsub is None:
                return  # subscribed again meanwhile
            try:
                await self._pubsub.unsubscribe(self._channel(key))
            except REDIS_FAILURES as exc:
                logger.warning("Redis UNSUBSCRIBE %s failed: %s", key, exc)

    async def _connect_subscriber(self) -> None:
        async with self._lock:
            if self._pubsub is not None:
                with contextlib.suppress(Exception):
                    await self._pubsub.aclose()
                self._pubsub = None
            assert self._client is not None
            pubsub = self._client.pubsub(push_handler_func=_as_is)
            await pubsub.connect()
            channels = [self._channel(key) for key in self._refs]
            if channels:
                await pubsub.subscribe(*channels)
            self._pubsub = pubsub

    async def _read_forever(self) -> None:
        backoff = _BACKOFF_START
        failures = 0
        while not self._closed:
            try:
                await self._connect_subscriber()
                if failures:
                    metrics.REDIS_RECONNECTS.inc()
                    logger.info("Redis pub/sub reconnected after %d attempts; resubscribed %d keys",
                                failures, len(self._refs))  # fmt: skip
                failures, backoff = 0, _BACKOFF_START
                self._ready.set()
                metrics.REDIS_UP.set(1)
                assert self._pubsub is not None
                await self._pump(self._pubsub, b"message", self._dispatch)
            except asyncio.CancelledError:
                raise
            except REDIS_FAILURES as exc:
                self._lost()
                failures += 1
                if failures == 1:
                    logger.warning("Redis pub/sub connection lost (%s); retrying with backoff", exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, _BACKOFF_MAX)
            except Exception:
                self._lost()
                logger.exception("unexpected error in the Redis pub/sub reader; restarting it")
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, _BACKOFF_MAX)

    async def _pump(self, pubsub: Any, kind: bytes, dispatch: Callable[[dict[str, Any]], Any]) -> None:
        """Deliver what a subscriber connection receives, until it fails.

        Messages (pushes of ``kind``: ``message``, or ``smessage`` on a cluster) go straight from the
        connection's reply parser to ``on_message``: ``PubSub.get_message`` would wrap each read in a retry
        call and build a dict per message. Everything else (confirmations) still goes through
        ``PubSub.handle_message``, which keeps redis-py's own channel bookkeeping right. A broken connection
        raises here at once (no silent reconnect inside redis-py) so the caller resubscribes and the broker
        hears of the gap (``on_disconnect``).
        """
        read = pubsub.connection.read_response
        deliver = self._on_message
        start = len(self._prefix_bytes)
        while True:
            # math.inf: block without a read timeout, as PubSub.get_message(timeout=None) does.
            response = await read(timeout=math.inf, disconnect_on_error=False, push_request=True)
            if isinstance(response, list) and len(response) == 3 and response[0] == kind:
                key = response[1][start:].decode("utf-8")
                try:
                    deliver(key, response[2])
                except Exception:
                    logger.exception("failed to deliver a cross-process message for %s", key)
                continue
            message = await pubsub.handle_message(response)
            if message is not None:
                dispatch(message)

    def _lost(self) -> None:
        was_ready = self._ready.is_set()
        self._ready.clear()
        self._publisher_stale = True
        metrics.REDIS_UP.set(0)
        if was_ready:
            metrics.REDIS_DISCONNECTS.inc()
            try:
                self._on_disconnect()
            except Exception:
                logger.exception("the Redis disconnect handler failed")

    def _unrouted(self, payloads: list[bytes]) -> None:
        try:
            self._on_unrouted(payloads)
        except Exception:
            logger.exception("the handler of undelivered Redis messages failed")

    def _dispatch(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        channel = message.get("channel") or b""
        if isinstance(kind, bytes):
            kind = kind.decode()
        if kind == "message":
            key = channel[len(self._prefix_bytes) :].decode("utf-8")
            try:
                self._on_message(key, message["data"])
            except Exception:
                logger.exception("failed to deliver a cross-process message for %s", key)
        elif kind == "subscribe":
            confirmation = self._confirmations.get(channel)
            if confirmation is not None and not confirmation.done():
                confirmation.set_result(None)

    async def _reset_publisher(self) -> None:
        """Drop the PUBLISH connection and the pooled command connections: otherwise the first batch after
        Redis returns goes out on the dead socket and fails."""
        if self._publisher is not None:
            await self._publisher.disconnect()
        assert self._client is not None
        await self._client.connection_pool.disconnect(inuse_connections=False)  # not the subscriber

    async def _send_batch(self, batch: list[tuple[bytes, bytes]]) -> list[int]:
        """PUBLISH a batch in one write on the writer's own connection; the number of subscribers each
        message reached.

        Not a redis-py Pipeline, and not a connection taken from the pool per batch: the Pipeline's retry
        wrapper and per-reply callbacks, and the pool's checkout (its lock, a read check and its counters),
        each cost about as much as the PUBLISH itself when batches are small. On any failure the connection
        is dropped (replies may be left unread on it), the next batch connects again, and the writer counts
        the whole batch as failed, as before."""
        connection = self._publisher
        if connection is None:
            assert self._client is not None
            pool = self._client.connection_pool
            # No socket timeout of its own: redis-py would run each write as a task under wait_for and arm a
            # timer per reply; one deadline covers the batch instead.
            connection = pool.connection_class(**{**pool.connection_kwargs, "socket_timeout": None})
            self._publisher = connection
        try:
            async with asyncio.timeout(PUBLISH_TIMEOUT):
                if not connection.is_connected:
                    await connection.connect()
                await connection.send_packed_command(
                    connection.pack_commands([(self.publish_command, channel, payload) for channel, payload in batch]),
                    check_health=False,
                )
                return [await connection.read_response() for _ in batch]
        except BaseException:
            await connection.disconnect()
            raise

    async def _write_forever(self) -> None:
        backoff = _BACKOFF_START
        while not self._closed:
            await self._outbox_ready.wait()
            if self._linger and len(self._outbox) < LINGER_BATCH:
                # Messages a moment apart (a paced load: each SEND on its own event-loop tick) would each be
                # a write here, a reply, and a read and a wake-up in every subscribed process.
                await asyncio.sleep(self._linger)
            self._outbox_ready.clear()
            batch, self._outbox = self._outbox, []
            if not batch:
                continue
            self._writing = True
            try:
                if self._publisher_stale:
                    self._publisher_stale = False
                    await self._reset_publisher()
                started = metrics.now()
                receivers = await self._send_batch(batch)
                metrics.redis_published(started, len(batch))
                backoff = _BACKOFF_START
                unheard = [payload for (_, payload), count in zip(batch, receivers, strict=True) if not count]
                if unheard:
                    self._unrouted(unheard)
            except asyncio.CancelledError:
                raise
            except REDIS_FAILURES as exc:
                self._dropped += len(batch)
                metrics.REDIS_PUBLISH_FAILURES.inc(len(batch))
                logger.warning("Redis PUBLISH of %d messages failed (%s); local delivery was not affected",
                               len(batch), exc)  # fmt: skip
                self._unrouted([payload for _, payload in batch])
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, _BACKOFF_MAX)
            finally:
                self._settled += len(batch)
                self._writing = False
                self._drained.set()
