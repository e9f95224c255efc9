"""In-process fan-out: routing key -> subscribers, and the once-encoded Publication every subscriber shares.

Delivery is synchronous and direct: ``LocalBroker.deliver`` calls each subscriber's ``deliver`` in
subscription order, which only appends bytes to that connection's bounded queue. No channel-layer
message, task or copy of the body per subscriber; per-destination order is the publish order.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Protocol

from stompengine import metrics
from stompengine.broker.destinations import LAYER_PREFIX
from stompengine.stomp.codec import FrameParser, encode_message_tail
from stompengine.stomp.frames import Escaping, Headers

logger = logging.getLogger(__name__)


class Publication:
    """One published message: headers and body encoded once per escaping mode, on first use.

    ``seq``/``prev`` (both 0 when unused) place it in a sequence of its key: its own number and the number
    of the one before it, so every process can deliver the sequence in order (see ``sequencer.py``).
    """

    __slots__ = ("_headers", "_tails", "body", "key", "message_id", "prev", "seq")

    def __init__(
        self,
        key: str,
        message_id: str,
        headers: Headers | None,
        body: bytes,
        *,
        tail12: bytes = b"",
        seq: int = 0,
        prev: int = 0,
    ) -> None:
        self.key = key
        self.message_id = message_id
        self.body = body
        self.seq = seq
        self.prev = prev
        self._headers = headers
        self._tails: dict[Escaping, bytes] = {Escaping.V12: tail12} if tail12 else {}

    def tail(self, escaping: Escaping) -> bytes:
        """The shared MESSAGE tail (headers after ``subscription``/``ack``, body, NUL) for one escaping mode."""
        tail = self._tails.get(escaping)
        if tail is None:
            tail = self._tails[escaping] = encode_message_tail(self.headers, self.body, escaping)
        return tail

    @property
    def headers(self) -> Headers:
        """The shared headers (``destination``, ``message-id``, the sender's own), without content-length."""
        if self._headers is None:
            # Arrived from another process as a 1.2 tail; a 1.0/1.1 subscriber needs the headers again.
            parsed = FrameParser(max_frame_size=1 << 30, max_headers=1 << 16, max_header_length=1 << 30)
            frame = parsed.feed(b"MESSAGE\n" + self._tails[Escaping.V12])[0]
            self._headers = tuple((k, v) for k, v in frame.headers if k != "content-length")
        return self._headers

    def to_wire(self) -> bytes:
        """Serialise for another process: ``message-id[ seq prev] LF`` then the STOMP 1.2 tail."""
        head = self.message_id if not self.seq else f"{self.message_id} {self.seq} {self.prev}"
        return head.encode("ascii") + b"\n" + self.tail(Escaping.V12)

    @classmethod
    def from_wire(cls, key: str, payload: bytes) -> Publication:
        """Rebuild a publication another process serialised with ``to_wire``."""
        head, _, tail = payload.partition(b"\n")
        frame_body_start = tail.find(b"\n\n")
        body = tail[frame_body_start + 2 : -1] if frame_body_start >= 0 else b""
        message_id, seq, prev = head, 0, 0
        if b" " in head:
            message_id, seq_text, prev_text = head.split(b" ")
            seq, prev = int(seq_text), int(prev_text)
        return cls(key, message_id.decode("ascii"), None, body, tail12=tail, seq=seq, prev=prev)


class Subscriber(Protocol):
    """What the broker delivers to: one subscription of one connection."""

    def deliver(self, publication: Publication) -> None:
        """Queue the publication for the client; must not block or raise."""


class LocalBroker:
    """The registry of this process: routing key -> subscribers (insertion-ordered)."""

    def __init__(self) -> None:
        self._routes: dict[str, dict[Subscriber, None]] = {}

    def add(self, key: str, subscriber: Subscriber) -> bool:
        """Register a subscriber; True when it is the first for ``key`` in this process."""
        subscribers = self._routes.get(key)
        if subscribers is None:
            self._routes[key] = {subscriber: None}
            return True
        subscribers[subscriber] = None
        return False

    def remove(self, key: str, subscriber: Subscriber) -> bool:
        """Unregister a subscriber; True when ``key`` has no subscriber left in this process."""
        subscribers = self._routes.get(key)
        if subscribers is None:
            return False
        subscribers.pop(subscriber, None)
        if subscribers:
            return False
        del self._routes[key]
        return True

    def deliver(self, publication: Publication) -> int:
        """Hand the publication to every local subscriber of its key; returns how many there were."""
        subscribers = self._routes.get(publication.key)
        if not subscribers:
            return 0
        # A copy: a subscriber that overflows its queue is removed while we iterate.
        targets: Iterable[Subscriber] = tuple(subscribers)
        count = 0
        for subscriber in targets:
            try:
                subscriber.deliver(publication)
            except Exception:
                logger.exception("subscriber %r failed to take a message for %s", subscriber, publication.key)
            count += 1
        if not publication.key.startswith(LAYER_PREFIX):  # channel-layer messages are not STOMP MESSAGE frames
            metrics.delivered(count)
        return count

    def keys(self) -> list[str]:
        """Routing keys with at least one local subscriber."""
        return list(self._routes)

    def count(self, key: str) -> int:
        """Local subscribers of ``key``."""
        return len(self._routes.get(key, ()))
