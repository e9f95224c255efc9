"""The broker of one process: local fan-out plus, when ``REDIS_URL`` is set, the Redis seam to the others.

Without Redis, ``publish`` delivers to this process's subscribers directly. With Redis, the encoded bytes
go to Redis and every process, this one included, delivers them to its subscribers as they come back,
so all subscribers everywhere see one order per destination (Redis'). While Redis is away a process
delivers to its own subscribers directly and marks the copy it still hands to Redis so that its echo
is ignored: nobody gets a message twice.

A message sent to Redis for its echo is held until Redis settles it, never dropped: the echo delivers
it, and so does anything that says no echo will come (the PUBLISH failed or reached no one, the
subscriber connection was lost, or it waited longer than ``ECHO_TIMEOUT``), in publish order either way.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import secrets
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any

from stompengine.broker.destinations import user_routing_key, user_visible_destination, validate_destination
from stompengine.broker.local import LocalBroker, Publication, Subscriber
from stompengine.broker.redis_bridge import RedisBridge
from stompengine.broker.redis_cluster import RedisClusterBridge
from stompengine.broker.sequencer import Sequencer

logger = logging.getLogger(__name__)

Body = bytes | str | Mapping[str, Any] | list[Any]
HeaderItems = Mapping[str, str] | Iterable[tuple[str, str]]
TEXT = "text/plain;charset=utf-8"
JSON = "application/json"
# An own message whose echo has not come back after one to two of these is delivered locally anyway
# (a safety net: a lost connection or a failed PUBLISH releases it at once).
ECHO_TIMEOUT = 2.0


def encode_body(body: Body, content_type: str | None) -> tuple[bytes, str]:
    """Bytes and content type of a body given as bytes, text or JSON-able data."""
    if isinstance(body, bytes):
        return body, content_type or "application/octet-stream"
    if isinstance(body, str):
        return body.encode("utf-8"), content_type or TEXT
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode("utf-8"), content_type or JSON


def frame_parts(body: Body, content_type: str | None, headers: HeaderItems) -> tuple[bytes, list[tuple[str, str]]]:
    """The body bytes and the headers after ``destination``/``message-id`` of a message published from code."""
    data, ctype = encode_body(body, content_type)
    items = headers.items() if isinstance(headers, Mapping) else headers
    return data, [("content-type", ctype), *((k, v) for k, v in items if k not in ("content-type", "content-length"))]


#: ``gap_fill(destination, after, until)``: the stored messages of a sequenced destination numbered after
#: ``after`` up to ``until``, each ``(seq, body, headers)`` (the project's store; see ``Sequencer``).
GapFill = Callable[[str, int, int], Awaitable[Sequence[tuple[int, Any, HeaderItems]]]]


class Broker:
    """Destinations -> subscribers for this process, with optional Redis fan-out to the other processes."""

    def __init__(
        self,
        *,
        redis_url: str | None = None,
        redis_prefix: str = "stomp:",
        redis_cluster: bool = False,
        redis_linger: float = 0.0,
        gap_fill: GapFill | None = None,
    ) -> None:
        """``redis_cluster``: ``redis_url`` names a node of a Redis Cluster (sharded pub/sub);
        ``redis_linger``: seconds the Redis writer waits for more messages to join a short batch;
        ``gap_fill``: where the sequencer reads sequenced messages that never came through the bus."""
        self.node = secrets.token_hex(4)
        self.local = LocalBroker()
        self._gap_fill = gap_fill
        self.sequencer = Sequencer(self.local.deliver, repair=self._stored if gap_fill is not None else None)
        self._ids = itertools.count(1)
        self._own = self.node.encode("ascii")
        # Own publications sent to Redis for their echo, oldest first, by message id.
        self._awaiting_echo: dict[str, Publication] = {}
        # The same ids by lane (``RedisBridge.lane``): echoes come back in publish order within a lane only
        # (one Redis: one lane; a cluster: one per hash slot, each slot's shard answering on its own).
        self._lanes: dict[int, dict[str, None]] = {}
        self._sweep: asyncio.TimerHandle | None = None
        self._sweep_mark: str | None = None
        bridge_class = RedisClusterBridge if redis_cluster else RedisBridge
        self.bridge = (
            bridge_class(
                redis_url,
                self._on_remote,
                on_unrouted=self._on_unrouted,
                on_disconnect=self._release_all,
                prefix=redis_prefix,
                linger=redis_linger,
            )
            if redis_url
            else None
        )

    def next_message_id(self, *, echo: bool = False) -> str:
        """A message id unique across processes: ``<node>-<n>``, or ``<node>~<n>`` for one this process
        delivers to its own subscribers only when Redis echoes it back."""
        return f"{self.node}{'~' if echo else '-'}{next(self._ids)}"

    async def subscribe(self, key: str, subscriber: Subscriber) -> None:
        """Attach a subscriber to a routing key (the first local one also subscribes on Redis)."""
        self.local.add(key, subscriber)
        if self.bridge is not None:
            await self.bridge.retain(key)

    def unsubscribe(self, key: str, subscriber: Subscriber) -> None:
        """Detach a subscriber (the last local one also unsubscribes on Redis)."""
        if self.local.remove(key, subscriber):
            self.sequencer.forget(key)  # with no subscriber here this process stops hearing the key
        if self.bridge is not None:
            self.bridge.release(key)

    def publish_frame(
        self,
        key: str,
        destination: str,
        headers: Iterable[tuple[str, str]],
        body: bytes,
        *,
        seq: int = 0,
        prev: int = 0,
    ) -> Publication:
        """Deliver an already-validated message to routing ``key``, shown to subscribers as ``destination``.

        With Redis up and this process subscribed to ``key``, local subscribers get the message when it
        comes back from Redis, like every other process: Redis' order is then the one order everybody
        sees, even when two processes publish to one destination at once. Without Redis (or while it is
        away) local subscribers get it at once and the Redis copy is marked so that its echo is ignored.
        ``seq``/``prev`` (a message number and the one before it) make every process deliver in that order.
        """
        bridge = self.bridge
        via_redis = bridge is not None and self.local.count(key) > 0 and bridge.routes(key)
        message_id = self.next_message_id(echo=via_redis)
        shared = (("destination", destination), ("message-id", message_id), *headers)
        publication = Publication(key, message_id, shared, body, seq=seq, prev=prev)
        if via_redis:
            self._await_echo(publication)
        else:
            if self._awaiting_echo:
                self._release_all()  # older ones first: locally, the order is always the publish order
            self.sequencer.offer(publication)
        if bridge is not None:
            bridge.publish(key, publication.to_wire())
        return publication

    def publish(
        self,
        destination: str,
        body: Body,
        *,
        headers: HeaderItems = (),
        content_type: str | None = None,
        seq: int = 0,
        prev: int = 0,
    ) -> Publication:
        """Publish to a destination (``/topic/...``) from server code; returns once local delivery is done.

        ``seq``/``prev``: this message's number in the destination's sequence and the number of the one
        before it (0: none), for destinations whose messages must reach everyone in that order.
        """
        validate_destination(destination)
        data, shown = frame_parts(body, content_type, headers)
        return self.publish_frame(destination, destination, shown, data, seq=seq, prev=prev)

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
        data, shown = frame_parts(body, content_type, headers)
        return self.publish_frame(user_routing_key(user_id, visible), visible, shown, data)

    async def _stored(self, key: str, after: int, until: int) -> list[Publication]:
        """The sequencer's repair: what ``gap_fill`` finds of ``key`` (a destination) numbered after
        ``after`` up to ``until``, as publications for this process's subscribers only."""
        assert self._gap_fill is not None
        found = []
        for seq, body, headers in await self._gap_fill(key, after, until):
            data, shown = frame_parts(body, None, headers)
            message_id = self.next_message_id()
            found.append(Publication(key, message_id, (("destination", key), ("message-id", message_id), *shown),
                                     data, seq=seq, prev=seq - 1))  # fmt: skip
        return found

    def _on_remote(self, key: str, payload: bytes) -> None:
        if payload.startswith(self._own):
            if payload[len(self._own) : len(self._own) + 1] == b"~":
                self._release_through(self._own_message_id(payload))
            return  # a ``-`` one of ours was delivered locally when it was published
        if not self.local.count(key):
            return
        self.sequencer.offer(Publication.from_wire(key, payload))

    # -- own publications waiting for their echo -------------------------------------------------------------
    def _await_echo(self, publication: Publication) -> None:
        self._awaiting_echo[publication.message_id] = publication
        self._lanes.setdefault(self._lane(publication.key), {})[publication.message_id] = None
        if self._sweep is None:
            self._sweep_mark = publication.message_id
            self._sweep = asyncio.get_running_loop().call_later(ECHO_TIMEOUT, self._sweep_overdue)

    def _lane(self, key: str) -> int:
        return self.bridge.lane(key) if self.bridge is not None else 0

    def _release_through(self, message_id: str) -> None:
        """Deliver locally every publication of ``message_id``'s lane up to and including it, oldest first.

        Redis hands one publisher's messages to a subscriber in publish order (per shard on a cluster: per
        lane), so once the echo of ``message_id`` is here (or is known never to come) no older echo of its
        lane will arrive either.
        """
        awaiting = self._awaiting_echo
        found = awaiting.get(message_id)
        if found is None:
            return  # released already
        lane_id = self._lane(found.key)
        lane = self._lanes[lane_id]
        while lane:
            oldest = next(iter(lane))
            del lane[oldest]
            publication = awaiting.pop(oldest)
            if self.local.count(publication.key):
                self.sequencer.offer(publication)
            if oldest == message_id:
                break
        if not lane:
            del self._lanes[lane_id]

    def _release_older(self, message_id: str) -> None:
        """Deliver locally every publication up to and including ``message_id`` whatever its lane, oldest first."""
        awaiting = self._awaiting_echo
        if message_id not in awaiting:
            return
        while awaiting:
            oldest = next(iter(awaiting))
            publication = awaiting.pop(oldest)
            lane_id = self._lane(publication.key)
            lane = self._lanes.get(lane_id)
            if lane is not None:
                lane.pop(oldest, None)
                if not lane:
                    del self._lanes[lane_id]
            if self.local.count(publication.key):
                self.sequencer.offer(publication)
            if oldest == message_id:
                return

    def _release_all(self) -> None:
        if self._awaiting_echo:
            self._release_older(next(reversed(self._awaiting_echo)))

    def _on_unrouted(self, payloads: list[bytes]) -> None:
        """The bridge's word that these PUBLISHes reached no subscriber (failed, or nobody was listening)."""
        done: set[int] = set()
        for payload in reversed(payloads):
            if payload.startswith(self._own):
                found = self._awaiting_echo.get(self._own_message_id(payload))
                if found is None:
                    continue
                lane = self._lane(found.key)
                if lane not in done:
                    done.add(lane)
                    self._release_through(found.message_id)

    def _own_message_id(self, payload: bytes) -> str:
        return payload[: payload.find(b"\n")].split(b" ", 1)[0].decode("ascii")

    def _sweep_overdue(self) -> None:
        # Whatever was waiting when this sweep was scheduled has waited at least ECHO_TIMEOUT.
        self._sweep = None
        mark, self._sweep_mark = self._sweep_mark, None
        if mark is not None and mark in self._awaiting_echo:
            logger.warning("Redis did not echo own messages within %.0f s; delivered them locally", ECHO_TIMEOUT)
            self._release_older(mark)
        if self._awaiting_echo:
            self._sweep_mark = next(reversed(self._awaiting_echo))
            self._sweep = asyncio.get_running_loop().call_later(ECHO_TIMEOUT, self._sweep_overdue)

    async def close(self) -> None:
        """Close the Redis connections (tests; server shutdown); nothing waiting for an echo is dropped."""
        if self._sweep is not None:
            self._sweep.cancel()
            self._sweep = None
        if self.bridge is not None:
            await self.bridge.close()
        self._release_all()
        self.sequencer.close()
