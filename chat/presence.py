"""Who is online in which room: session counts per (room, user), in this process or shared through Redis.

A user is online in a room while at least one of their sessions subscribes to ``/topic/rooms.<slug>``;
the first session of a user announces ``join`` on the room's presence topic, the last one leaving
announces ``leave``, once per user however many tabs or processes they use.

Debounce (``CHAT_PRESENCE_DEBOUNCE_MS``): a session's leave is counted only after the window; a join
of the same user in the same room on this process within it takes the leaving session's place, so a
quick UNSUBSCRIBE/SUBSCRIBE (or a reconnect) announces nothing, and a real leave arrives late by at most
the window. Counts include the leaving sessions until then, so a snapshot agrees with the events.

Leases (``CHAT_PRESENCE_LEASE``, Redis only): the room hashes hold the total per user (``HINCRBY``
makes first/last exact across processes), and each worker also records its own share in a hash of
its own, next to a key that lives one lease and that the worker renews on a timer (one round trip per
third of a lease, none per message). On the same timer every worker looks for workers whose key has
expired (killed, or stopped without cleanup) and takes their shares out of the room totals in one
Lua script, announcing the users that thereby left. A worker that finds its own key gone (it stalled
longer than a lease and was reaped) writes its shares back from memory.

On a Redis Cluster every presence key carries the hash tag ``{presence}`` (one slot), so the scripts,
which read and write several keys, stay on one shard.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Coroutine
from typing import Any, Protocol, TypeVar

from django.conf import settings

from stompengine.broker.redis_bridge import REDIS_FAILURES
from stompengine.conf import stomp_settings

logger = logging.getLogger(__name__)

Announce = Callable[[str, str, str], None]  # (room, "join" | "leave", user)
T = TypeVar("T")

# Seconds one presence call on Redis may take as a whole (connecting, a NOSCRIPT reload, every reply) before it
# counts as failed. Presence is best effort and sits on the SUBSCRIBE path and in shutdown: a Redis that stops
# answering must cost a bounded wait whatever the client's own socket timeouts are (the bus's client has 5 s per
# read, and a script call can take three round trips; a client may have none).
CALL_TIMEOUT = 2.0


class PresenceStore(Protocol):
    async def enter(self, room: str, user: str) -> bool:
        """Count one more session of ``user`` in ``room``; True when it is their first."""

    async def leave(self, room: str, user: str) -> bool:
        """Count one session less; True when it was their last."""

    async def online(self, room: str) -> list[str]:
        """The users with at least one session in ``room``, sorted."""


class MemoryPresence:
    """One process: plain counters."""

    def __init__(self) -> None:
        self._rooms: dict[str, Counter[str]] = defaultdict(Counter)

    async def enter(self, room: str, user: str) -> bool:
        counts = self._rooms[room]
        counts[user] += 1
        return counts[user] == 1

    async def leave(self, room: str, user: str) -> bool:
        counts = self._rooms.get(room)
        if not counts or counts[user] <= 0:
            return False
        counts[user] -= 1
        if counts[user] == 0:
            del counts[user]
            if not counts:
                del self._rooms[room]
            return True
        return False

    async def online(self, room: str) -> list[str]:
        return sorted(self._rooms.get(room, ()))


# --- Redis, with per-worker leases -------------------------------------------------------------------------

# KEYS: room hash, worker hash; ARGV: user, field. Returns the user's total. (Only a resync puts a worker
# in the workers set, so a worker reaped while stalled is not reaped again before it has written back.)
_ENTER = """
local total = redis.call('HINCRBY', KEYS[1], ARGV[1], 1)
redis.call('HINCRBY', KEYS[2], ARGV[2], 1)
return total
"""

# KEYS: room hash, worker hash; ARGV: user, field. Returns the user's total, -1 when this worker had no
# session of theirs left (it was reaped meanwhile, which already announced the leave).
_LEAVE = """
local mine = tonumber(redis.call('HGET', KEYS[2], ARGV[2]) or '0')
if mine <= 0 then return -1 end
if mine == 1 then redis.call('HDEL', KEYS[2], ARGV[2]) else redis.call('HINCRBY', KEYS[2], ARGV[2], -1) end
local total = redis.call('HINCRBY', KEYS[1], ARGV[1], -1)
if total <= 0 then redis.call('HDEL', KEYS[1], ARGV[1]) end
return total
"""

# KEYS: alive key; ARGV: lease ms. 1 when renewed, 0 when it had expired (this worker may have been reaped).
_RENEW = "return redis.call('PEXPIRE', KEYS[1], ARGV[1])"

# KEYS: worker hash, alive key, workers set; ARGV: lease ms, worker id, key prefix, then field, count pairs:
# this worker's shares as it knows them. Sets its hash to exactly these, adjusting the room totals by the
# difference. Returns the fields whose user went from offline to online (to announce as joins).
_RESYNC = """
local prefix = ARGV[3]
local old = {}
local flat = redis.call('HGETALL', KEYS[1])
for i = 1, #flat, 2 do old[flat[i]] = tonumber(flat[i + 1]) end
local joined = {}
local function apply(field, delta)
  local sep = string.find(field, ' ', 1, true)
  local room, user = string.sub(field, 1, sep - 1), string.sub(field, sep + 1)
  local key = prefix .. room
  local total = redis.call('HINCRBY', key, user, delta)
  if total <= 0 then redis.call('HDEL', key, user) end
  if total > 0 and total - delta <= 0 then table.insert(joined, field) end
end
for i = 4, #ARGV, 2 do
  local field, n = ARGV[i], tonumber(ARGV[i + 1])
  local delta = n - (old[field] or 0)
  old[field] = nil
  if delta ~= 0 then apply(field, delta) end
  redis.call('HSET', KEYS[1], field, n)
end
for field, n in pairs(old) do
  apply(field, -n)
  redis.call('HDEL', KEYS[1], field)
end
redis.call('SADD', KEYS[3], ARGV[2])
redis.call('SET', KEYS[2], '1', 'PX', ARGV[1])
return joined
"""

# KEYS: workers set; ARGV: prefix of room hashes, prefix of worker hashes, prefix of alive keys.
# Takes the shares of every worker whose lease expired out of the room totals; returns the fields
# ("room user") whose user thereby went offline.
_REAP = """
local left = {}
for _, worker in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  if redis.call('EXISTS', ARGV[3] .. worker) == 0 then
    local flat = redis.call('HGETALL', ARGV[2] .. worker)
    for i = 1, #flat, 2 do
      local field, n = flat[i], tonumber(flat[i + 1])
      local sep = string.find(field, ' ', 1, true)
      local room, user = string.sub(field, 1, sep - 1), string.sub(field, sep + 1)
      local total = redis.call('HINCRBY', ARGV[1] .. room, user, -n)
      if total <= 0 then
        redis.call('HDEL', ARGV[1] .. room, user)
        table.insert(left, field)
      end
    end
    redis.call('DEL', ARGV[2] .. worker)
    redis.call('SREM', KEYS[1], worker)
  end
end
return left
"""


def _retrieve(task: asyncio.Task[Any]) -> None:
    """Done callback of a task given up on: take its outcome (no "exception never retrieved"); log a real error."""
    if not task.cancelled() and (exc := task.exception()) is not None and not isinstance(exc, REDIS_FAILURES):
        logger.error("presence: a Redis call given up on failed", exc_info=exc)


def _field(room: str, user: str) -> str:
    # Neither a room slug nor a username can hold a space.
    return f"{room} {user}"


def _split(field: bytes | str) -> tuple[str, str]:
    text = field.decode() if isinstance(field, bytes) else field
    room, _, user = text.partition(" ")
    return room, user


class RedisPresence:
    """Several processes: one hash per room (user -> session count), and a lease per worker.

    Presence is best effort: while Redis is unreachable (or a pooled connection turns out dead after a
    Redis restart, or Redis stops answering) it reports nothing new instead of failing the SUBSCRIBE it is
    part of, which would end the user's connection with an internal error. Every Redis call is bounded by
    ``timeout`` seconds, and ``stop()`` returns within about that long whatever the lease task is doing.
    """

    def __init__(
        self, redis: Any, prefix: str, *, lease: float, worker: str | None = None, timeout: float = CALL_TIMEOUT
    ) -> None:
        if isinstance(redis, str):  # a URL (tests); the server passes its bus's command connection
            import redis.asyncio as aioredis

            redis = aioredis.from_url(redis)
        self._redis = redis
        from redis.asyncio.cluster import RedisCluster

        if isinstance(redis, RedisCluster):
            # Every presence key in one hash slot, so each script's keys (declared, and those _RESYNC and
            # _REAP build from the prefix) are on one shard. Presence changes per join/leave, not per
            # message: one shard carries it easily while the messages spread over all of them.
            prefix = f"{prefix}{{presence}}:"
        self._prefix = prefix
        self.lease = lease
        self.timeout = timeout
        self.worker = worker or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._mine: Counter[str] = Counter()  # field -> this worker's sessions, the truth its lease carries
        self._workers_key = f"{prefix}presence-workers"
        self._worker_key = f"{prefix}presence-worker:{self.worker}"
        self._alive_key = f"{prefix}presence-alive:{self.worker}"
        self._scripts = {name: self._redis.register_script(code) for name, code in
                         (("enter", _ENTER), ("leave", _LEAVE), ("renew", _RENEW), ("resync", _RESYNC),
                          ("reap", _REAP))}  # fmt: skip
        self.announce: Announce | None = None  # set by Presence: who is told about reaped users
        self._lease_task: asyncio.Task[None] | None = None
        self._registered = False

    def _key(self, room: str) -> str:
        return f"{self._prefix}presence:{room}"

    @property
    def _lease_ms(self) -> int:
        return max(int(self.lease * 1000), 1)

    def start(self) -> None:
        """Start renewing this worker's lease (and reaping expired ones) on the running loop."""
        if self._lease_task is None or self._lease_task.done():
            self._lease_task = asyncio.get_running_loop().create_task(self._keep_lease(), name="presence-lease")

    async def stop(self) -> None:
        """Stop renewing (a stopped worker's shares expire with its lease); returns within about ``timeout`` s."""
        task, self._lease_task = self._lease_task, None  # a lease task that is no longer this one ends by itself
        if task is None or task.done():
            return
        task.cancel()
        task.add_done_callback(_retrieve)
        # asyncio.wait rather than awaiting the task under suppress(CancelledError): that also swallowed the
        # caller's own cancellation, and waited forever for a lease task that did not take the cancel.
        done, _ = await asyncio.wait({task}, timeout=self.timeout)
        if not done:
            logger.warning("presence: the lease task did not stop within %g s; it ends before its next renewal",
                           self.timeout)  # fmt: skip

    async def _call(self, call: Coroutine[Any, Any, T]) -> T:
        """Await one Redis call for at most ``timeout`` s; then TimeoutError (an OSError: one of REDIS_FAILURES).

        The call runs in a task of its own that the caller waits for with ``asyncio.wait``, instead of being
        awaited directly (or under ``asyncio.timeout``): on Python 3.11, redis-py writes each command under
        ``asyncio.wait_for``, which drops a cancellation that arrives as the write completes. Awaited directly,
        the lease task being stopped went on renewing and ``stop()`` never returned; here the caller's
        cancellation always reaches the caller, and the deadline holds even if the call ignores its own.
        """
        task = asyncio.ensure_future(call)
        try:
            done, _ = await asyncio.wait({task}, timeout=self.timeout)
        except BaseException:
            task.cancel()
            task.add_done_callback(_retrieve)
            raise
        if not done:
            task.cancel()  # its connection is dropped by redis-py, and a later call opens another
            task.add_done_callback(_retrieve)
            raise TimeoutError(f"no answer from Redis within {self.timeout:g} s")
        return task.result()

    async def _keep_lease(self) -> None:
        me = asyncio.current_task()
        while True:
            await asyncio.sleep(self.lease / 3)
            if self._lease_task is not me:  # stopped, though the cancellation did not reach this task
                return
            try:
                if not await self._call(self._scripts["renew"](keys=[self._alive_key], args=[self._lease_ms])):
                    logger.warning("presence: this worker's lease had expired; writing its counts back")
                    await self._resync()
                await self.reap()
            except REDIS_FAILURES as exc:
                logger.warning("presence: could not renew the lease (%s)", exc)

    async def _resync(self) -> None:
        pairs: list[Any] = []
        for field, count in self._mine.items():
            if count > 0:
                pairs += [field, count]
        try:
            joined = await self._call(
                self._scripts["resync"](
                    keys=[self._worker_key, self._alive_key, self._workers_key],
                    args=[self._lease_ms, self.worker, f"{self._prefix}presence:", *pairs],
                )
            )
        except REDIS_FAILURES as exc:
            logger.warning("presence: could not register this worker (%s)", exc)
            return
        self._registered = True
        for field in joined:
            self._tell(*_split(field), "join")

    async def reap(self) -> int:
        """Take expired workers' sessions out of the counts; returns how many users thereby went offline."""
        left = await self._call(
            self._scripts["reap"](
                keys=[self._workers_key],
                args=[f"{self._prefix}presence:", f"{self._prefix}presence-worker:", f"{self._prefix}presence-alive:"],
            )
        )
        for field in left:
            self._tell(*_split(field), "leave")
        if left:
            logger.info("presence: %d user(s) of stopped workers went offline", len(left))
        return len(left)

    def _tell(self, room: str, user: str, kind: str) -> None:
        if self.announce is not None:
            self.announce(room, kind, user)

    async def enter(self, room: str, user: str) -> bool:
        if not self._registered:
            await self._resync()  # the lease exists before the first share it covers
        field = _field(room, user)
        self._mine[field] += 1
        try:
            script = self._scripts["enter"](keys=[self._key(room), self._worker_key], args=[user, field])
            total = await self._call(script)
            return int(total) == 1
        except REDIS_FAILURES as exc:
            logger.warning("presence: Redis unavailable, %s not counted in %s (%s)", user, room, exc)
            return False

    async def leave(self, room: str, user: str) -> bool:
        field = _field(room, user)
        if self._mine[field] <= 1:
            self._mine.pop(field, None)
        else:
            self._mine[field] -= 1
        try:
            script = self._scripts["leave"](keys=[self._key(room), self._worker_key], args=[user, field])
            remaining = int(await self._call(script))
            return remaining == 0
        except REDIS_FAILURES as exc:
            logger.warning("presence: Redis unavailable, %s not uncounted in %s (%s)", user, room, exc)
        return False

    async def online(self, room: str) -> list[str]:
        try:
            counts = await self._call(self._redis.hgetall(self._key(room)))
        except REDIS_FAILURES as exc:
            logger.warning("presence: Redis unavailable, no snapshot of %s (%s)", room, exc)
            return []
        return sorted(n.decode() if isinstance(n, bytes) else n for n, count in counts.items() if int(count) > 0)


# --- Debounce and announcements -------------------------------------------------------------------------------


class Presence:
    """Counts sessions through a store and announces joins and leaves, leaves debounced by ``debounce`` s."""

    def __init__(self, store: PresenceStore, *, announce: Announce, debounce: float) -> None:
        self.store = store
        self.announce = announce
        self.debounce = debounce
        self._leaving: dict[tuple[str, str], int] = {}  # sessions whose leave waits out the window
        self._timers: dict[tuple[str, str], asyncio.TimerHandle] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def enter(self, room: str, user: str) -> None:
        key = (room, user)
        waiting = self._leaving.get(key, 0)
        if waiting:
            # This session takes the place of one that is leaving: nothing changed for anyone else.
            if waiting == 1:
                del self._leaving[key]
                self._timers.pop(key).cancel()
            else:
                self._leaving[key] = waiting - 1
            return
        if await self.store.enter(room, user):
            self.announce(room, "join", user)

    async def leave(self, room: str, user: str) -> None:
        if self.debounce <= 0:
            await self._leave_now(room, user, 1)
            return
        key = (room, user)
        self._leaving[key] = self._leaving.get(key, 0) + 1
        if key not in self._timers:
            self._timers[key] = asyncio.get_running_loop().call_later(self.debounce, self._due, key)

    async def online(self, room: str) -> list[str]:
        return await self.store.online(room)

    def _due(self, key: tuple[str, str]) -> None:
        self._timers.pop(key, None)
        count = self._leaving.pop(key, 0)
        if count:
            task = asyncio.get_running_loop().create_task(self._leave_now(*key, count))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _leave_now(self, room: str, user: str, count: int) -> None:
        for _ in range(count):
            if await self.store.leave(room, user):
                self.announce(room, "leave", user)

    async def close(self) -> None:
        """Stop the store's lease renewal, if it has one (its runtime is closing)."""
        stop = getattr(self.store, "stop", None)
        if stop is not None:
            await stop()

    async def flush(self) -> None:
        """Count every waiting leave now (graceful shutdown), and wait for those already under way."""
        for key in list(self._timers):
            self._timers[key].cancel()
            self._due(key)
        if self._tasks:
            await asyncio.wait(list(self._tasks))


def _announce(room: str, kind: str, user: str) -> None:
    from chat.destinations import presence_topic
    from stompengine import broker

    broker.publish(presence_topic(room), {"type": kind, "user": user})


def _build(runtime: Any) -> Presence:
    store: PresenceStore
    if runtime.commands is not None:
        # The bus's command connection: presence opens no Redis client of its own.
        redis_store = RedisPresence(runtime.commands, stomp_settings().redis_prefix, lease=settings.CHAT_PRESENCE_LEASE)
        redis_store.announce = _announce
        redis_store.start()
        store = redis_store
    else:
        store = MemoryPresence()
    return Presence(store, announce=_announce, debounce=settings.CHAT_PRESENCE_DEBOUNCE_MS / 1000)


def presence() -> Presence:
    """The presence of the running event loop's runtime (Redis when the bus has Redis)."""
    from stompengine import runtime

    return runtime.current().attach("chat.presence", _build)


async def presence_flush() -> None:
    """Graceful shutdown: count the waiting leaves of this loop's presence now."""
    from stompengine import runtime

    found = runtime.existing()
    part = found.attached("chat.presence") if found is not None else None
    if part is not None:
        await part.flush()
