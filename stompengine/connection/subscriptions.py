"""Subscriptions of a connection: SUBSCRIBE/UNSUBSCRIBE, the broker's subscribers, replays, delivery.

A SUBSCRIBE is checked (destination syntax, policy, guards), becomes live in the broker, gets its replay
(live messages held back meanwhile, released after it minus duplicates), then its RECEIPT. A replay
counts against the connection's ``max_replays`` until the transport has written its last byte.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

from stompengine.broker.broker import encode_body
from stompengine.broker.destinations import (
    SUBSCRIBE,
    USER_PREFIX,
    InvalidDestination,
    user_routing_key,
    validate_destination,
)
from stompengine.broker.local import Publication
from stompengine.connection.state import ERRORS_DESTINATION, ConnectionBase
from stompengine.gating import ReplayGate, replay_then_live
from stompengine.realtime.registry import Denied, Rejected, Replayer, SubscribeContext
from stompengine.stomp.codec import message_prefix
from stompengine.stomp.errors import ProtocolViolation
from stompengine.stomp.session import AckMode, SubscribeRequested, Subscription

logger = logging.getLogger(__name__)

_REPLAY_POLL = 0.05  # seconds between looks at the transport's buffer while a SUBSCRIBE waits for a replay slot
#: on_unsubscribe hooks still running (a shutdown waits for them: presence "leave" in Redis).
background: set[asyncio.Task[Any]] = set()


def _publication_seq(publication: Publication) -> int:
    """A publication's number for the replay gate (0: unsequenced)."""
    return publication.seq


class BrokerSubscriber:
    """The broker's handle on one subscription of one connection: pre-encoded prefix, routing key."""

    __slots__ = ("auto", "connection", "gate", "key", "prefix", "subscription")

    def __init__(self, connection: SubscriptionsMixin, subscription: Subscription, key: str, prefix: bytes) -> None:
        self.connection = connection
        self.subscription = subscription
        self.key = key
        self.prefix = prefix
        self.auto = subscription.ack is AckMode.AUTO
        # A subscription with a replay: holds live messages while it is sent, then drops late copies of
        # replayed ones (stompengine.gating, shared with the SSE stream). None: deliver at once.
        self.gate: ReplayGate[Publication] | None = None

    def deliver(self, publication: Publication) -> None:
        """Queue a MESSAGE frame for this subscription (or hold it back while a replay is being sent)."""
        gate = self.gate
        if gate is not None and not gate.admit(publication):
            return
        self.connection.deliver(self, publication)

    def __repr__(self) -> str:
        return f"<BrokerSubscriber {self.key} {self.subscription.id!r} of {self.connection.session_id}>"


class SubscriptionsMixin(ConnectionBase):
    """The subscription side of ``StompConnection``."""

    _replay_ends: tuple[int, ...]

    # -- the broker's side -------------------------------------------------------------------------------
    def deliver(self, subscriber: BrokerSubscriber, publication: Publication) -> None:
        """Queue a MESSAGE for one of this connection's subscriptions (called by the broker)."""
        out = self._out
        if out.closing:
            return
        core = self._core
        tail = publication.tail(core.escaping)
        if subscriber.auto:
            out.put(subscriber.prefix + tail)
            return
        try:
            ack = core.track_delivery(subscriber.subscription, publication.message_id)
        except ProtocolViolation as exc:
            self.fail(exc.message, exc.detail)
            return
        out.put(subscriber.prefix + ack + tail)

    def notify(self, destination: str, body: Any) -> bool:
        """A MESSAGE to this session's own subscriptions to ``destination`` only; False when it has none."""
        delivered = False
        for subscription in list(self._core.subscriptions.values()):
            subscriber = subscription.handle
            if subscription.destination == destination and isinstance(subscriber, BrokerSubscriber):
                self.send_to(subscriber, body)
                delivered = True
        return delivered

    def send_to(self, subscriber: BrokerSubscriber, body: Any, headers: Any = ()) -> None:
        """A MESSAGE for one subscription only (replays, snapshots), encoded like a broker publication."""
        items: list[tuple[str, str]] = list(headers.items() if isinstance(headers, Mapping) else headers)
        content_type = next((v for k, v in items if k == "content-type"), None)
        data, ctype = encode_body(body, content_type)
        message_id = self.broker.next_message_id()
        shared = (
            ("destination", subscriber.subscription.destination),
            ("message-id", message_id),
            ("content-type", ctype),
            *((k, v) for k, v in items if k not in ("content-type", "content-length")),
        )
        self.deliver(subscriber, Publication(subscriber.key, message_id, shared, data))

    def _report_error(self, exc: Rejected, receipt: str | None) -> None:
        """A refused SEND: tell this session on /user/queue/errors; no RECEIPT, the connection stays."""
        payload = {"detail": exc.detail, "code": exc.code, "receipt": receipt, **exc.extra}
        if not self.notify(ERRORS_DESTINATION, payload):
            logger.info("STOMP session %s: refused a SEND (%s) with no /user/queue/errors subscription",
                        self.session_id, exc.code)  # fmt: skip

    # -- for operations (chat/ops.py) --------------------------------------------------------------------
    def subscribed_destinations(self) -> list[str]:
        """The destinations of this connection's live subscriptions."""
        return [subscription.destination for subscription in self._core.subscriptions.values()]

    def is_subscribed(self, subscription_id: str, destination: str) -> bool:
        """Whether subscription ``subscription_id`` is live and to ``destination`` (cheap: for every SEND)."""
        subscription = self._core.subscriptions.get(subscription_id)
        return subscription is not None and subscription.destination == destination

    def drop_subscriptions(self, predicate: Callable[[str], bool]) -> list[str]:
        """End, server-side, every subscription whose destination matches; returns their destinations."""
        dropped = [s for s in self._core.subscriptions.values() if predicate(s.destination)]
        for subscription in dropped:
            self._core.drop_subscription(subscription.id)
        self._detach(tuple(dropped))
        return [s.destination for s in dropped]

    # -- SUBSCRIBE / UNSUBSCRIBE -------------------------------------------------------------------------
    def _checked(self, destination: str, verb: str) -> str:
        try:
            validate_destination(destination)
        except InvalidDestination as exc:
            raise Denied("invalid destination", str(exc), code="invalid-destination") from None
        if not self.config.policy.allows(verb, destination):
            raise Denied("Forbidden", f"clients may not {verb.upper()} to {destination}", code="forbidden")
        return destination

    def _detach(self, subscriptions: tuple[Subscription, ...]) -> None:
        for subscription in subscriptions:
            subscriber = subscription.handle
            if isinstance(subscriber, BrokerSubscriber):
                subscription.handle = None
                self.broker.unsubscribe(subscriber.key, subscriber)
                for watcher, params in self._registry.unsubscribed_for(subscription.destination):
                    self._spawn(watcher(self.handle, subscription.destination, **params))

    def _spawn(self, coroutine: Awaitable[Any]) -> None:
        """Run a hook in the background (detaching is synchronous), keeping a reference until it ends."""
        task = asyncio.ensure_future(coroutine)
        background.add(task)
        task.add_done_callback(_hook_done)

    async def _replay_slot(self) -> None:
        """Wait until fewer than ``max_replays`` earlier replays are still on their way to the socket.

        A replay counts until the transport has written its last byte (bytes handed to it minus what it
        still holds). The wait is polled, since no server tells the application when its buffer drains;
        it ends with ERROR slow consumer after ``replay_wait`` seconds: such a client is not reading.
        """
        limit = self.config.max_replays
        if not limit:
            return
        out = self._out
        deadline = self._loop.time() + self.config.replay_wait
        while not out.closing:
            written = out.handed_bytes - (out.unsent_bytes() - out.queued_bytes)
            self._replay_ends = tuple(end for end in self._replay_ends if end > written)
            if len(self._replay_ends) < limit:
                return
            if self._loop.time() >= deadline:
                out.slow(f"{limit} replays were still unread after {self.config.replay_wait:g} seconds")
                return
            await asyncio.sleep(_REPLAY_POLL)

    async def _subscribe(self, event: SubscribeRequested) -> None:
        self._send_gate.admit_subscription(self._clock.time())
        destination = self._checked(event.destination, SUBSCRIBE)
        if self._registry.replayers_for(destination):
            await self._replay_slot()
            if self._out.closing:
                return
        context = SubscribeContext(self.handle, destination, event.subscription_id, event.headers)
        for guard, params in self._registry.guards_for(destination):
            if await guard(context, **params) is False:
                raise Denied("Forbidden", f"you may not subscribe to {destination}")
            if self._out.closing:
                return
        subscription = self._core.add_subscription(event)
        key = destination
        if destination.startswith(USER_PREFIX):
            assert self.principal is not None  # SUBSCRIBE is only read once CONNECT succeeded
            key = user_routing_key(self.principal.user_id, destination)
        subscriber = BrokerSubscriber(self, subscription, key, message_prefix(subscription.id, self._core.escaping))
        subscription.handle = subscriber
        replayers = self._registry.replayers_for(destination)
        if replayers:
            # Replay-then-live and the confirmation barrier are stompengine.gating's (shared with SSE).
            gate = subscriber.gate = ReplayGate(_publication_seq)  # holds from the moment it is live
            held = await replay_then_live(
                gate,
                lambda: self.broker.subscribe(key, subscriber),  # returns once Redis confirmed the SUBSCRIBE
                lambda gate: self._replay(context, subscriber, replayers, gate),
            )
            if self._out.closing:
                return
            for publication in held:
                self.deliver(subscriber, publication)
            if not gate.floor:
                subscriber.gate = None  # nothing was replayed with a sequence: nothing to recognise later
            self._replay_ends = (*self._replay_ends, self._out.handed_bytes + self._out.queued_bytes)
        else:
            await self.broker.subscribe(key, subscriber)
            if self._out.closing:  # closed while Redis confirmed: the close already ran, undo our part
                self.broker.unsubscribe(key, subscriber)
                return
        self._core.receipt(event.receipt)
        for watcher, params in self._registry.subscribed_for(destination):
            await watcher(context, **params)

    async def _replay(
        self,
        context: SubscribeContext,
        subscriber: BrokerSubscriber,
        replayers: Iterable[tuple[Replayer, dict[str, str]]],
        gate: ReplayGate[Publication],
    ) -> None:
        """Send what the replay hooks return (the gate then releases what was held meanwhile)."""
        if self._out.closing:  # closed while Redis confirmed: the close already ran, undo our part
            self.broker.unsubscribe(subscriber.key, subscriber)
            return
        for replayer, params in replayers:
            replay = await replayer(context, **params)
            if replay is None:
                continue
            for body, headers in replay.messages:
                self.send_to(subscriber, body, headers)
            gate.replayed_through(replay.after_seq)


def _hook_done(task: asyncio.Task[Any]) -> None:
    background.discard(task)
    if not task.cancelled() and task.exception() is not None:
        logger.error("an on_unsubscribe hook failed", exc_info=task.exception())
