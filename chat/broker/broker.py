"""The broker of one process: local fan-out plus, when ``REDIS_URL`` is set, the Redis seam to the others.

``publish`` delivers to this process's subscribers directly and hands the same encoded bytes to Redis;
other processes deliver them to theirs. A process ignores its own messages coming back from Redis
(the message id starts with the process's node id), so nobody gets a message twice.
"""

from __future__ import annotations

import itertools
import json
import logging
import secrets
from collections.abc import Iterable, Mapping
from typing import Any

from chat.broker.destinations import user_routing_key, user_visible_destination, validate_destination
from chat.broker.local import LocalBroker, Publication, Subscriber
from chat.broker.redis_bridge import RedisBridge

logger = logging.getLogger(__name__)

Body = bytes | str | Mapping[str, Any] | list[Any]
HeaderItems = Mapping[str, str] | Iterable[tuple[str, str]]
TEXT = "text/plain;charset=utf-8"
JSON = "application/json"


def encode_body(body: Body, content_type: str | None) -> tuple[bytes, str]:
    """Bytes and content type of a body given as bytes, text or JSON-able data."""
    if isinstance(body, bytes):
        return body, content_type or "application/octet-stream"
    if isinstance(body, str):
        return body.encode("utf-8"), content_type or TEXT
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode("utf-8"), content_type or JSON


class Broker:
    """Destinations -> subscribers for this process, with optional Redis fan-out to the other processes."""

    def __init__(self, *, redis_url: str | None = None, redis_prefix: str = "stomp:") -> None:
        self.node = secrets.token_hex(4)
        self.local = LocalBroker()
        self._ids = itertools.count(1)
        self.bridge = RedisBridge(redis_url, self._on_remote, prefix=redis_prefix) if redis_url else None

    def next_message_id(self) -> str:
        """A message id unique across processes: ``<node>-<n>``."""
        return f"{self.node}-{next(self._ids)}"

    async def subscribe(self, key: str, subscriber: Subscriber) -> None:
        """Attach a subscriber to a routing key (the first local one also subscribes on Redis)."""
        self.local.add(key, subscriber)
        if self.bridge is not None:
            await self.bridge.retain(key)

    def unsubscribe(self, key: str, subscriber: Subscriber) -> None:
        """Detach a subscriber (the last local one also unsubscribes on Redis)."""
        self.local.remove(key, subscriber)
        if self.bridge is not None:
            self.bridge.release(key)

    def publish_frame(self, key: str, destination: str, headers: Iterable[tuple[str, str]], body: bytes) -> Publication:
        """Deliver an already-validated message to routing ``key``, shown to subscribers as ``destination``."""
        message_id = self.next_message_id()
        shared = (("destination", destination), ("message-id", message_id), *headers)
        publication = Publication(key, message_id, shared, body)
        self.local.deliver(publication)
        if self.bridge is not None:
            self.bridge.publish(key, publication.to_wire())
        return publication

    def publish(
        self,
        destination: str,
        body: Body,
        *,
        headers: HeaderItems = (),
        content_type: str | None = None,
    ) -> Publication:
        """Publish to a destination (``/topic/...``) from server code; returns once local delivery is done."""
        validate_destination(destination)
        data, ctype = encode_body(body, content_type)
        items = headers.items() if isinstance(headers, Mapping) else headers
        extra = [(k, v) for k, v in items if k not in ("content-type", "content-length")]
        return self.publish_frame(destination, destination, [("content-type", ctype), *extra], data)

    def publish_to_user(
        self,
        user_id: object,
        destination: str,
        body: Body,
        *,
        headers: HeaderItems = (),
        content_type: str | None = None,
    ) -> Publication:
        """Publish to every session of one user subscribed to ``/user/queue/...`` (``destination`` with or
        without the ``/user`` prefix)."""
        visible = user_visible_destination(destination)
        validate_destination(visible)
        data, ctype = encode_body(body, content_type)
        items = headers.items() if isinstance(headers, Mapping) else headers
        extra = [(k, v) for k, v in items if k not in ("content-type", "content-length")]
        return self.publish_frame(user_routing_key(user_id, visible), visible, [("content-type", ctype), *extra], data)

    def _on_remote(self, key: str, payload: bytes) -> None:
        if payload.startswith(self.node.encode("ascii") + b"-"):
            return  # our own message, already delivered locally
        if not self.local.count(key):
            return
        self.local.deliver(Publication.from_wire(key, payload))

    async def close(self) -> None:
        """Close the Redis connections (tests; server shutdown)."""
        if self.bridge is not None:
            await self.bridge.close()
