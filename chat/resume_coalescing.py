"""One database read per room for a burst of ``since-id`` resumes (a reconnect storm), each cut to its own since.

``coalesced_resume(query)`` wraps the room replay query ``query(slug, since, limit) -> (messages oldest
first, truncated, reached, *more)`` in a ``stompengine.coalesce.SinceCoalescer`` keyed by (slug, limit): the
shared query asks for ``limit + 1`` messages after the lowest ``since`` of its waiters, and each waiter
keeps the ones after its own. That is exactly what its own query would have returned: the messages after
a higher ``since`` are the newest part of the shared result, so its ``limit + 1`` newest are there
whenever it has that many; ``truncated`` is whether more than ``limit`` remain; ``reached`` is the room's
newest id at the query either way (the newest message, or with none after ``since`` the newest stored),
and so is whatever the query tells of it after those three (``more``: the reached message's creation number).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from stompengine.coalesce import SinceCoalescer

ResumeRead = tuple[Any, ...]  # (messages oldest first, truncated, reached, *what else the query tells of reached)
ResumeKey = tuple[str, int]  # (room slug, most messages replayed)


def coalesced_resume(query: Callable[[str, int, int], Awaitable[ResumeRead]]) -> SinceCoalescer[ResumeKey, ResumeRead]:
    """``await resumes.fetch((slug, limit), since)`` returns what ``query(slug, since, limit)`` would."""

    async def shared(key: ResumeKey, since: int) -> ResumeRead:
        slug, limit = key
        return await query(slug, since, limit + 1)

    def narrow(key: ResumeKey, result: ResumeRead, since: int) -> ResumeRead:
        messages, _, *reached = result
        mine = [message for message in messages if message["id"] > since]
        return (mine[-key[1] :], len(mine) > key[1], *reached)

    return SinceCoalescer(shared, narrow)
