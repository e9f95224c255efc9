"""Who is online in which room: session counts per (room, user), in this process or shared through Redis.

A user is online in a room while at least one of their sessions subscribes to ``/topic/rooms.<slug>``;
``enter`` reports the first session of a user, ``leave`` the last, so join/leave events fire once per
user however many tabs or processes they use. With ``REDIS_URL`` the counts live in one Redis hash per
room (``HINCRBY`` makes first/last exact across processes); without it, in this process's memory.

Known limit: a process killed with SIGKILL cannot decrement its counts, so its users stay online until
they reconnect and leave again; graceful shutdown (SIGTERM) closes every connection and decrements.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter, defaultdict
from typing import Protocol

from django.conf import settings
from redis.exceptions import RedisError

logger = logging.getLogger(__name__)


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


class RedisPresence:
    """Several processes: one hash per room, user -> session count.

    Presence is best effort: while Redis is unreachable (or a pooled connection turns out dead after a
    Redis restart) it reports nothing new instead of failing the SUBSCRIBE it is part of, which would
    end the user's connection with an internal error.
    """

    def __init__(self, url: str, prefix: str) -> None:
        import redis.asyncio as redis

        self._redis = redis.from_url(url)
        self._prefix = prefix

    def _key(self, room: str) -> str:
        return f"{self._prefix}presence:{room}"

    async def enter(self, room: str, user: str) -> bool:
        try:
            return int(await self._redis.hincrby(self._key(room), user, 1)) == 1
        except (RedisError, OSError) as exc:
            logger.warning("presence: Redis unavailable, %s not counted in %s (%s)", user, room, exc)
            return False

    async def leave(self, room: str, user: str) -> bool:
        key = self._key(room)
        try:
            remaining = int(await self._redis.hincrby(key, user, -1))
            if remaining <= 0:
                await self._redis.hdel(key, user)
                return remaining == 0
        except (RedisError, OSError) as exc:
            logger.warning("presence: Redis unavailable, %s not uncounted in %s (%s)", user, room, exc)
        return False

    async def online(self, room: str) -> list[str]:
        try:
            counts = await self._redis.hgetall(self._key(room))
        except (RedisError, OSError) as exc:
            logger.warning("presence: Redis unavailable, no snapshot of %s (%s)", room, exc)
            return []
        return sorted(n.decode() if isinstance(n, bytes) else n for n, count in counts.items() if int(count) > 0)


_stores: dict[asyncio.AbstractEventLoop, PresenceStore] = {}


def presence() -> PresenceStore:
    """The presence store of the running event loop (Redis when REDIS_URL is set)."""
    loop = asyncio.get_running_loop()
    store = _stores.get(loop)
    if store is None:
        for stale in [known for known in _stores if known.is_closed()]:
            del _stores[stale]
        if settings.REDIS_URL:
            store = RedisPresence(settings.REDIS_URL, settings.STOMP_REDIS_PREFIX)
        else:
            store = MemoryPresence()
        _stores[loop] = store
    return store
