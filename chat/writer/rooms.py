"""Rooms by slug, remembered for a few seconds per process, so that a SEND to a public room is validated
without a query.

Only what cannot be abused is taken from here: a public room's identity. Membership of private rooms is
always read, and the batch checks every room again under its lock (a room deleted or made private
meanwhile refuses the SEND there), so a stale entry costs at most a refused SEND, never a wrong write.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from chat.models import Room

ROOM_CACHE_SECONDS = 5.0
ROOM_CACHE_SIZE = 10_000


class RoomCache:
    """slug -> (expiry, Room); a plain dict touched only from the event loop's thread."""

    def __init__(self, *, ttl: float = ROOM_CACHE_SECONDS, size: int = ROOM_CACHE_SIZE) -> None:
        self.ttl = ttl
        self.size = size
        self._rooms: dict[str, tuple[float, Room]] = {}

    def get(self, slug: str) -> Room | None:
        entry = self._rooms.get(slug)
        if entry is None:
            return None
        if entry[0] < time.monotonic():
            del self._rooms[slug]
            return None
        return entry[1]

    def put(self, room: Room) -> None:
        if len(self._rooms) >= self.size:
            self._rooms.clear()  # crude, and rare: rooms are few next to SENDs
        self._rooms[room.slug] = (time.monotonic() + self.ttl, room)


public_rooms = RoomCache()
