"""One STOMP connection over any transport: session core + authentication + broker + application handlers.

A transport (the raw WebSocket consumer, a SockJS session) creates a ``StompConnection`` with an object
that can ``send(bytes)`` and ``close(code)``, then calls ``open()`` once, ``data_received(bytes)`` for
everything the client sends (in order), and ``connection_lost()`` once when the peer is gone. Everything
else (the CONNECT timeout, heart-beats both ways, token expiry, the bounded send queue, closing after an
ERROR) happens in here, so all transports behave the same.

Frames are handled strictly in order: ``data_received`` awaits each application handler before the
next frame is parsed, except the slow end of a validated SEND that its handler hands back as a
``Completion`` (a chat write waiting for its batch): up to ``send_pipeline`` of those run while the next
frames are handled, and their RECEIPTs (or refusals) go out strictly in frame order.

Outgoing frames go through a bounded queue drained by a writer task that exists only while there is
something to write; frames queued meanwhile are joined into one transport write
(up to ``coalesce_bytes``), which is what keeps fan-out cheap.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from stompengine import metrics
from stompengine.broker import Broker, get_broker
from stompengine.broker.destinations import (
    APP_PREFIX,
    SEND,
    SUBSCRIBE,
    USER_PREFIX,
    DestinationPolicy,
    InvalidDestination,
    user_routing_key,
    validate_destination,
)
from stompengine.broker.local import Publication
from stompengine.realtime.limits import (
    SendGate,
    SendLimits,
    UserSendBudget,
    default_limits,
    start_budget_sync,
    too_many_connections,
    user_connections,
    user_send_budget,
)
from stompengine.realtime.registry import (
    Completion,
    Denied,
    DestinationRegistry,
    Rejected,
    SendContext,
    SubscribeContext,
    autodiscover,
    destinations,
)
from stompengine.realtime.tracking import tracker
from stompengine.stomp.codec import Frame, encode, message_prefix
from stompengine.stomp.errors import ProtocolViolation
from stompengine.stomp.heartbeat import Beat, HeartbeatClock
from stompengine.stomp.session import (
    AckMode,
    ConnectionFailed,
    ConnectRequested,
    DisconnectRequested,
    SendRequested,
    ServerSession,
    SessionLimits,
    State,
    SubscribeRequested,
    Subscription,
    TransactionCommitted,
    UnsubscribeRequested,
)

logger = logging.getLogger(__name__)

CLOSE_NORMAL = 1000
# After an ERROR frame too: the frame says what went wrong, and servers differ in which other codes an
# application may send (autobahn, under daphne, refuses 1008; SockJS allows only 1000 and 3000-4999).
CLOSE_AFTER_ERROR = 1000
ERRORS_DESTINATION = "/user/queue/errors"


class Transport(Protocol):
    """What a StompConnection writes to. Text-only transports (SockJS) decode the bytes as UTF-8.

    A transport that also has ``pending_bytes()`` (``BufferedTransport``) gets its backlog bounded end to end.
    """

    async def send(self, data: bytes) -> None:
        """Write bytes (one or more whole STOMP frames, or a heart-beat EOL) to the peer."""

    async def close(self, code: int) -> None:
        """Close the transport; called once, after everything queued was sent."""


class BufferedTransport(Transport, Protocol):
    """A transport that can tell how much it holds: ``StompConnection`` then bounds its bytes end to end.

    Optional (looked up with ``getattr``): after every write the connection adds ``pending_bytes()`` to the
    bytes in its own queue and ends a client past ``STOMP_MAX_UNSENT_BYTES`` with ERROR slow consumer; a
    replay counts as in flight until the transport has written its last byte (README "Security").
    """

    def pending_bytes(self) -> int:
        """Bytes accepted by ``send`` and not yet written to the socket; cheap, synchronous, never raises."""


class AuthenticatedLike(Protocol):
    user: Any
    expires_at: Any


Authenticator = Callable[[str], Awaitable[AuthenticatedLike]]


@dataclass(frozen=True)
class StompConfig:
    """Everything a connection needs from settings, read once per process."""

    limits: SessionLimits = field(default_factory=SessionLimits)
    server_name: str = "chatproject/1.0"
    heartbeat_grace: float = 2.0
    connect_timeout: float = 10.0
    send_queue_limit: int = 10_000
    max_unsent_bytes: int = 2 * 1024 * 1024
    max_replays: int = 4
    replay_wait: float = 30.0
    coalesce_bytes: int = 64 * 1024
    send_pipeline: int = 16  # SENDs of one connection whose slow end (a write) may run while later frames are read
    send_limits: SendLimits = field(default_factory=SendLimits)
    # Shared by every connection with this config (settings: the process's, reconciled through Redis).
    user_budget: UserSendBudget = field(default_factory=UserSendBudget)
    policy: DestinationPolicy = field(
        default_factory=lambda: DestinationPolicy.from_rules(
            [("/topic/", "send subscribe"), ("/topic/rooms.", "subscribe"), ("/app/", "send"),
             ("/user/queue/", "subscribe")]
        )
    )  # fmt: skip

    @classmethod
    def from_settings(cls) -> StompConfig:
        """Build from the STOMP_* settings (``stompengine.conf``)."""
        from stompengine.conf import stomp_settings

        conf = stomp_settings()
        return cls(
            limits=conf.session_limits(),
            server_name=conf.server_name,
            heartbeat_grace=conf.heartbeat_grace,
            connect_timeout=conf.connect_timeout,
            send_queue_limit=conf.send_queue_limit,
            max_unsent_bytes=conf.max_unsent_bytes,
            max_replays=conf.max_replays,
            replay_wait=conf.replay_wait,
            coalesce_bytes=conf.coalesce_bytes,
            send_pipeline=conf.send_pipeline,
            policy=DestinationPolicy.from_rules(conf.destination_rules),
            send_limits=default_limits(),
            user_budget=user_send_budget,
        )


async def authenticate_jwt(raw: str) -> AuthenticatedLike:
    """Validate an access token and load its user (the default authenticator; raises TokenRejected)."""
    from channels.db import database_sync_to_async

    from accounts.tokens import authenticate_access_token

    return await database_sync_to_async(authenticate_access_token)(raw)


@dataclass(slots=True)
class _Reply:
    """One place in a connection's reply order: a pipelined SEND's work (its RECEIPT or refusal follows it),
    or ``data`` the session core produced behind it (``task`` None)."""

    task: asyncio.Future[Any] | None
    receipt: str | None = None
    data: bytes = b""
    started: float = 0.0  # when the SEND was taken up (metrics: SEND -> RECEIPT)


class BrokerSubscriber:
    """The broker's handle on one subscription of one connection: pre-encoded prefix, routing key."""

    __slots__ = ("auto", "connection", "floor", "held", "key", "prefix", "subscription")

    def __init__(self, connection: StompConnection, subscription: Subscription, key: str, prefix: bytes) -> None:
        self.connection = connection
        self.subscription = subscription
        self.key = key
        self.prefix = prefix
        self.auto = subscription.ack is AckMode.AUTO
        # Live messages waiting while a replay is sent (None: deliver at once).
        self.held: list[Publication] | None = None
        # Sequenced messages up to this number were in the replay: a late live copy is a duplicate.
        self.floor = 0

    def deliver(self, publication: Publication) -> None:
        """Queue a MESSAGE frame for this subscription (or hold it back while a replay is being sent)."""
        if self.held is not None:
            self.held.append(publication)
            return
        if publication.seq and publication.seq <= self.floor:
            return
        self.connection.deliver(self, publication)

    def __repr__(self) -> str:
        return f"<BrokerSubscriber {self.key} {self.subscription.id!r} of {self.connection.session_id}>"


class StompConnection:
    """The server side of one STOMP connection, independent of the transport carrying it."""

    def __init__(
        self,
        transport: Transport,
        *,
        scope: dict[str, Any] | None = None,
        subprotocol: str | None = None,
        config: StompConfig | None = None,
        broker: Broker | None = None,
        registry: DestinationRegistry | None = None,
        authenticate: Authenticator | None = None,
    ) -> None:
        self.config = config or default_config()
        self.scope = scope or {}
        self.user: Any = None
        self.session_id = secrets.token_urlsafe(12)
        self._transport = transport
        self._core = ServerSession(limits=self.config.limits, subprotocol=subprotocol)
        self._broker = broker
        self._registry = registry or destinations
        self._authenticate = authenticate or authenticate_jwt
        self._queue: list[bytes] = []  # a list: an empty deque costs ~600 bytes per idle connection
        # Output accounting, in bytes: in _queue; handed to the transport ever; the transport's own
        # backlog as last read (pending_bytes, when it has one); where each recent replay's last frame ends.
        self._queued_bytes = 0
        self._handed_bytes = 0
        self._transport_pending = 0
        self._pending_bytes: Callable[[], int] | None = getattr(transport, "pending_bytes", None)
        self._replay_ends: tuple[int, ...] = ()  # a tuple: the empty one is shared by every idle connection
        self._writer: Any = None  # the running writer: a task, or _DRIVING while driven from _WriteScheduler
        self._write_scheduled = False
        self._processing = False
        self._closing = False  # no more frames accepted for sending, close after the queue drains
        self._close_code = CLOSE_NORMAL
        self._transport_closed = False
        self._clock: HeartbeatClock | None = None
        self._heartbeat_timer: asyncio.TimerHandle | None = None
        self._connect_timer: asyncio.TimerHandle | None = None
        self._expiry_timer: asyncio.TimerHandle | None = None
        self._loop = asyncio.get_running_loop()
        self._send_gate = SendGate(self.config.send_limits, self._loop.time())
        self._counted_user: Any = None  # the user whose per-process connection count includes this one
        # The /app handler running now (with its SEND's receipt id), and whether a cancellation cut us off from it.
        self._inflight: tuple[asyncio.Future[Any], str | None] | None = None
        self._interrupted = False
        # Pipelined SENDs (a Completion still running) and protocol output queued behind them, in frame order.
        self._replies: list[_Reply] = []

    # -- the transport's side ----------------------------------------------------------------------------
    @property
    def state(self) -> State:
        """The session core's state."""
        return self._core.state

    @property
    def version(self) -> str | None:
        """The negotiated STOMP version, once connected."""
        return self._core.version

    @property
    def broker(self) -> Broker:
        """The broker of this connection's event loop."""
        if self._broker is None:
            self._broker = get_broker()
        return self._broker

    async def open(self) -> None:
        """The transport is up: start the CONNECT timeout."""
        self._connect_timer = self._loop.call_later(self.config.connect_timeout, self._on_connect_timeout)

    async def data_received(self, data: bytes) -> None:
        """Bytes from the client, in order; returns once every complete frame in them was handled."""
        if self._closing:
            return
        if self._clock is not None:
            self._clock.received(self._loop.time())
        self._core.receive_data(data)
        if self._processing:
            return  # the call already processing picks these bytes up in order
        self._processing = True
        try:
            await self._process()
        finally:
            self._processing = False

    async def connection_lost(self) -> None:
        """The peer is gone: drop subscriptions, timers and queued frames."""
        self._transport_closed = True
        self._closing = True
        self._release_user()
        tracker.discard(self)
        self._cancel_timers()
        self._detach(self._core.connection_lost())
        self._drop_queue()
        self._replies.clear()  # the writes still finish; nobody is left to tell
        writer = self._writer
        if isinstance(writer, asyncio.Task) and writer is not asyncio.current_task():
            writer.cancel()

    # -- the broker's side -----------------------------------------------------------------------------------
    def deliver(self, subscriber: BrokerSubscriber, publication: Publication) -> None:
        """Queue a MESSAGE for one of this connection's subscriptions (called by the broker)."""
        if self._closing:
            return
        core = self._core
        tail = publication.tail(core.escaping)
        if subscriber.auto:
            self._enqueue(subscriber.prefix + tail)
            return
        try:
            ack = core.track_delivery(subscriber.subscription, publication.message_id)
        except ProtocolViolation as exc:
            self.fail(exc.message, exc.detail)
            return
        self._enqueue(subscriber.prefix + ack + tail)

    # -- for handlers ----------------------------------------------------------------------------------------
    def fail(self, message: str, detail: str = "", *, code: str | None = None, receipt_id: str | None = None) -> None:
        """Send an ERROR frame (``message`` header, ``detail`` body, optional ``code``) and close."""
        headers = (("code", code),) if code else ()
        self._replies.clear()  # nothing may follow the ERROR frame; a resend with its client_id is stored once
        self._detach(self._core.fail(message, detail, headers=headers, receipt_id=receipt_id))
        self._begin_close(CLOSE_AFTER_ERROR)

    async def shutdown(self, *, grace: float = 5.0) -> None:
        """The server is stopping: finish the frame in progress, then ERROR (code ``shutdown``) and close.

        A SEND whose handler was running, and every pipelined SEND still being written, is awaited (up to
        ``grace`` seconds) and gets its RECEIPT when it succeeded, so a client never retries what was
        stored, nor trusts what was not.
        """
        if self._transport_closed:
            return
        logger.debug("STOMP session %s: server shutting down", self.session_id)
        self._closing = True  # no further frame is taken up; the one in progress completes
        deadline = self._loop.time() + grace
        inflight = self._inflight
        if inflight is not None:
            task, receipt = inflight
            done, _ = await asyncio.wait({task}, timeout=grace)
            # Not cut off, _route_send resumes first (its shield waited longer) and sends the RECEIPT itself.
            if self._interrupted and task in done and not task.cancelled() and task.exception() is None:
                result = task.result()
                if isinstance(result, Completion):
                    self._pipeline(result, receipt, metrics.now())
                else:
                    self._core.receipt(receipt)
                    self._flush_core()
        await asyncio.sleep(0)  # an uninterrupted _route_send hands its Completion over first
        await self._replies_settled(deadline)
        self.fail("server shutting down", "the server is restarting: reconnect (and resume with since-id)",
                  code="shutdown")  # fmt: skip
        writer = self._writer
        if isinstance(writer, asyncio.Task) and writer is not asyncio.current_task():
            await asyncio.wait({writer}, timeout=grace)

    async def reauthenticate(self, raw_token: str) -> None:
        """Replace the access token of a live connection (same user only); moves the expiry deadline."""
        from accounts.tokens import TokenRejected

        try:
            authenticated = await self._authenticate(raw_token)
        except TokenRejected as exc:
            raise Denied("Unauthorized", exc.reason, code=exc.code) from None
        if getattr(authenticated.user, "pk", None) != getattr(self.user, "pk", None):
            raise Denied("Unauthorized", "the new token belongs to another user", code="unauthorized")
        self.user = authenticated.user
        self._schedule_expiry(authenticated.expires_at)

    # -- for operations (chat/ops.py) ------------------------------------------------------------------------
    @property
    def queue_depth(self) -> int:
        """Frames waiting to be written to the transport."""
        return len(self._queue)

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

    # -- frame handling --------------------------------------------------------------------------------------
    async def _process(self) -> None:
        core = self._core
        while not self._closing:
            if len(self._replies) >= self.config.send_pipeline:
                await self._replies_settled(keep=self.config.send_pipeline - 1)  # memory stays bounded
                continue
            event = core.next_event()
            if event is None:
                break
            if self._replies:
                self._flush_core()  # what the core answered by itself follows the replies before it
                if not isinstance(event, SendRequested):
                    await self._replies_settled()  # anything else sees every earlier SEND finished
            try:
                await self._handle(event)
            except Rejected as exc:
                await self._replies_settled()
                self._report_error(exc, getattr(event, "receipt", None))
            except Denied as exc:
                metrics.connect_refused(event, exc.code)
                await self._replies_settled()
                self.fail(exc.message, exc.detail, code=exc.code, receipt_id=getattr(event, "receipt", None))
            except ProtocolViolation as exc:
                await self._replies_settled()
                self.fail(exc.message, exc.detail, receipt_id=getattr(event, "receipt", None))
            except Exception:
                logger.exception("STOMP session %s: handling %s failed", self.session_id, type(event).__name__)
                await self._replies_settled()
                self.fail("internal error", "the server failed to handle this frame",
                          receipt_id=getattr(event, "receipt", None))  # fmt: skip
            self._flush_core()
        self._flush_core()
        if core.state is State.CLOSED and not self._closing:
            self._begin_close(self._close_code)

    async def _handle(self, event: object) -> None:
        metrics.frame_in(event)
        if isinstance(event, SendRequested):
            started = metrics.now()
            self._send_gate.admit([event.body], self._loop.time())
            completion = await self._route_send(event)
            if completion is None:
                self._core.receipt(event.receipt)
                metrics.receipt_latency(started)
            else:
                self._pipeline(completion, event.receipt, started)
        elif isinstance(event, SubscribeRequested):
            await self._subscribe(event)
        elif isinstance(event, UnsubscribeRequested):
            self._detach((event.subscription,))  # first: the core already dropped it, whatever the budget says
            self._send_gate.admit_subscription(self._loop.time(), unsubscribe=True)
            self._core.receipt(event.receipt)
        elif isinstance(event, TransactionCommitted):
            if event.sends:
                self._send_gate.admit([send.body for send in event.sends], self._loop.time())
            await self._commit_transaction(event.sends)
            self._core.receipt(event.receipt)
        elif isinstance(event, ConnectRequested):
            await self._connect(event)
        elif isinstance(event, DisconnectRequested):
            self._detach(event.subscriptions)
            self._begin_close(CLOSE_NORMAL)
        elif isinstance(event, ConnectionFailed):
            logger.info("STOMP session %s: %s (%s)", self.session_id, event.error.message, event.error.detail)
            self._detach(event.subscriptions)
            self._begin_close(CLOSE_AFTER_ERROR)

    async def _connect(self, event: ConnectRequested) -> None:
        from accounts.tokens import TokenRejected, parse_bearer

        try:
            authenticated = await self._authenticate_connect(event, TokenRejected, parse_bearer)
        except TokenRejected as exc:
            logger.info("STOMP CONNECT refused (%s: %s)", exc.code, exc.reason)
            raise Denied("Unauthorized", exc.reason, code=exc.code) from None
        if self._closing:
            return  # the transport went away while we were checking the token
        limit = self.config.send_limits.max_connections_per_user
        if not user_connections.acquire(authenticated.user.pk, limit):
            raise too_many_connections(limit)
        self._counted_user = authenticated.user.pk
        self._send_gate.bind_user(authenticated.user.pk, self.config.user_budget)
        start_budget_sync(self._loop, self.config.send_limits, self.config.user_budget)
        autodiscover()
        self.user = authenticated.user
        self._core.accept(
            session_id=self.session_id, user_name=self.user.get_username(), server=self.config.server_name
        )
        if self._connect_timer is not None:
            self._connect_timer.cancel()
            self._connect_timer = None
        terms = self._core.heartbeat
        if terms.send_ms or terms.receive_ms:
            self._clock = HeartbeatClock(terms, grace=self.config.heartbeat_grace, now=self._loop.time())
            self._schedule_heartbeat()
        self._schedule_expiry(authenticated.expires_at)
        tracker.add(self)
        logger.debug("STOMP session %s connected: user %s, version %s", self.session_id, self.user.pk, self.version)

    async def _authenticate_connect(self, event: ConnectRequested, rejected: type, parse_bearer) -> AuthenticatedLike:
        if event.authorization is not None:
            token = parse_bearer(event.authorization)
            if token is None:
                raise rejected("token-invalid", "the Authorization header is not 'Bearer <token>'")
            return await self._authenticate(token)
        if event.passcode:
            passcode = event.passcode.strip()
            return await self._authenticate(parse_bearer(passcode) or passcode)
        handshake = self.scope.get("handshake_auth")
        if handshake is not None:
            # The WebSocket handshake carried a valid Authorization: Bearer header (non-browser clients).
            return handshake
        handshake_error = self.scope.get("handshake_auth_error")
        if handshake_error is not None:
            raise handshake_error
        raise rejected(
            "unauthorized", "no access token: send 'Authorization: Bearer <jwt>' (or passcode:<jwt>) in CONNECT"
        )

    async def _route_send(self, send: SendRequested) -> Completion | None:
        """Route one SEND; returns the handler's ``Completion`` when it finishes the SEND later."""
        destination = self._checked(send.destination, SEND)
        if destination.startswith(APP_PREFIX):
            resolved = self._registry.resolve_app(destination)
            if resolved is None:
                raise Denied("unknown destination", f"no application handler for {destination}", code="not-found")
            handler, params = resolved
            authorization = next((v for k, v in send.frame_headers if k.lower() == "authorization"), None)
            context = SendContext(self, destination, send.headers, send.body, authorization)
            # Shielded: when the server stops (daphne cancels every application on SIGTERM) the write in
            # progress still finishes, with its after-commit broadcast, while the event loop runs; see shutdown().
            task = asyncio.ensure_future(handler(context, **params))
            self._inflight = (task, send.receipt)
            try:
                result = await asyncio.shield(task)
            except asyncio.CancelledError:
                self._interrupted = True
                raise
            finally:
                if not self._interrupted:
                    self._inflight = None
            return result if isinstance(result, Completion) else None
        self.broker.publish_frame(destination, destination, send.headers, send.body)
        return None

    async def _commit_transaction(self, sends: tuple[SendRequested, ...]) -> None:
        """COMMIT: every SEND with a prepare hook is validated first, then they are committed as one unit
        (all stored or none; a refusal of any refuses the COMMIT); the others are then routed in order."""
        prepared: dict[Any, list[Any]] = {}
        others: list[SendRequested] = []
        for send in sends:
            destination = self._checked(send.destination, SEND)
            found = self._registry.resolve_prepare(destination) if destination.startswith(APP_PREFIX) else None
            if found is None:
                if destination.startswith(APP_PREFIX) and self._registry.resolve_app(destination) is None:
                    raise Denied("unknown destination", f"no application handler for {destination}", code="not-found")
                others.append(send)
                continue
            preparer, params = found
            context = SendContext(self, destination, send.headers, send.body, None)
            item = await preparer(context, **params)
            prepared.setdefault(item.commit, []).append(item.item)
        for commit, items in prepared.items():
            await asyncio.shield(commit(items))  # a write in progress finishes even when the server stops
        for send in others:
            completion = await self._route_send(send)
            if completion is not None:
                await asyncio.shield(completion.task)

    # -- pipelined SENDs: RECEIPTs and refusals in frame order -----------------------------------------------
    def _pipeline(self, completion: Completion, receipt: str | None, started: float) -> None:
        """Answer this SEND when its work is done, after every SEND before it; go on reading frames meanwhile."""
        self._replies.append(_Reply(completion.task, receipt, started=started))
        completion.task.add_done_callback(self._reply_done)

    def _reply_done(self, _task: asyncio.Future[Any]) -> None:
        self._release_replies()

    def _release_replies(self) -> None:
        """Send the answers at the head of the reply order whose work is done (stop at the first still running)."""
        replies = self._replies
        while replies:
            reply = replies[0]
            task = reply.task
            if task is not None and not task.done():
                return
            del replies[0]
            if task is None:
                self._queue_output(reply.data)
                continue
            error = None if task.cancelled() else task.exception()
            if task.cancelled():
                logger.info("STOMP session %s: a SEND's work was cancelled; no RECEIPT", self.session_id)
            elif error is None:
                if reply.receipt is not None:
                    self._queue_output(encode(Frame("RECEIPT", (("receipt-id", reply.receipt),)), self._core.escaping))
                    metrics.receipt_latency(reply.started)
            elif isinstance(error, Rejected):
                self._report_error(error, reply.receipt)
            elif isinstance(error, Denied):
                self.fail(error.message, error.detail, code=error.code, receipt_id=reply.receipt)
            else:
                logger.error("STOMP session %s: finishing a SEND failed", self.session_id, exc_info=error)
                self.fail("internal error", "the server failed to handle this frame", receipt_id=reply.receipt)

    async def _replies_settled(self, deadline: float | None = None, *, keep: int = 0) -> None:
        """Wait until at most ``keep`` pipelined SENDs are unanswered (or ``deadline``, a loop time, passes)."""
        self._release_replies()
        while len(self._replies) > keep:
            timeout = None if deadline is None else deadline - self._loop.time()
            if timeout is not None and timeout <= 0:
                return
            head = self._replies[0].task
            assert head is not None  # protocol output is released as soon as nothing unanswered precedes it
            await asyncio.wait({head}, timeout=timeout)
            self._release_replies()

    async def _subscribe(self, event: SubscribeRequested) -> None:
        self._send_gate.admit_subscription(self._loop.time())
        destination = self._checked(event.destination, SUBSCRIBE)
        if self._registry.replayers_for(destination):
            await self._replay_slot()
            if self._closing:
                return
        context = SubscribeContext(self, destination, event.subscription_id, event.headers)
        for guard, params in self._registry.guards_for(destination):
            if await guard(context, **params) is False:
                raise Denied("Forbidden", f"you may not subscribe to {destination}")
            if self._closing:
                return
        subscription = self._core.add_subscription(event)
        key = user_routing_key(self.user.pk, destination) if destination.startswith(USER_PREFIX) else destination
        subscriber = BrokerSubscriber(self, subscription, key, message_prefix(subscription.id, self._core.escaping))
        subscription.handle = subscriber
        replayers = self._registry.replayers_for(destination)
        if replayers:
            subscriber.held = []  # from the moment it is live, until the replay is out
        await self.broker.subscribe(key, subscriber)
        if self._closing:  # closed while Redis confirmed: the close already ran, undo our part
            self.broker.unsubscribe(key, subscriber)
            return
        if replayers:
            await self._replay(context, subscriber, replayers)
            self._replay_ends = (*self._replay_ends, self._handed_bytes + self._queued_bytes)
            if self._closing:
                return
        self._core.receipt(event.receipt)
        for watcher, params in self._registry.subscribed_for(destination):
            await watcher(context, **params)

    async def _replay(self, context: SubscribeContext, subscriber: BrokerSubscriber, replayers: list) -> None:
        """Send what the replay hooks return, then the live messages held meanwhile (minus duplicates)."""
        try:
            for replayer, params in replayers:
                replay = await replayer(context, **params)
                if replay is None:
                    continue
                for body, headers in replay.messages:
                    self.send_to(subscriber, body, headers)
                subscriber.floor = max(subscriber.floor, replay.after_seq)
        finally:
            held, subscriber.held = subscriber.held or [], None
        for publication in held:
            subscriber.deliver(publication)

    def _report_error(self, exc: Rejected, receipt: str | None) -> None:
        """A refused SEND: tell this session on /user/queue/errors; no RECEIPT, the connection stays."""
        payload = {"detail": exc.detail, "code": exc.code, "receipt": receipt, **exc.extra}
        if not self.notify(ERRORS_DESTINATION, payload):
            logger.info("STOMP session %s: refused a SEND (%s) with no /user/queue/errors subscription",
                        self.session_id, exc.code)  # fmt: skip

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
        from stompengine.broker.broker import encode_body

        items = list(headers.items() if hasattr(headers, "items") else headers)
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
                    self._spawn(watcher(self, subscription.destination, **params))

    def _spawn(self, coroutine: Any) -> None:
        """Run a hook in the background (detaching is synchronous), keeping a reference until it ends."""
        task = self._loop.create_task(coroutine)
        _background.add(task)
        task.add_done_callback(_hook_done)

    # -- output ----------------------------------------------------------------------------------------------
    def _flush_core(self) -> None:
        data = self._core.data_to_send()
        if data:
            if self._replies:  # after the answers of earlier pipelined SENDs
                self._replies.append(_Reply(None, data=data))
            else:
                self._queue_output(data)

    def _queue_output(self, data: bytes) -> None:
        metrics.frames_out(data)
        self._queue.append(data)  # protocol replies bypass the slow-consumer limits (but are counted)
        self._queued_bytes += len(data)
        if not self._closing:  # closing: whoever closes (fail, _begin_close) starts the last write
            self._ensure_writer()

    def _enqueue(self, data: bytes) -> None:
        if len(self._queue) >= self.config.send_queue_limit:
            self._slow_consumer(f"more than {self.config.send_queue_limit} frames were waiting to be sent")
            return
        size = len(data)
        if self._over_bound(size):
            self._slow_consumer(f"more than {self.config.max_unsent_bytes} bytes were waiting to be sent")
            return
        self._queue.append(data)
        self._queued_bytes += size
        self._ensure_writer()

    def _over_bound(self, size: int) -> bool:
        """Would ``size`` more bytes pass ``max_unsent_bytes``?"""
        limit = self.config.max_unsent_bytes
        if not limit or self._queued_bytes + self._transport_pending + size <= limit:
            return False
        return self._unsent_bytes() + size > limit  # the transport's figure is from the last write: re-read it

    def _slow_consumer(self, detail: str) -> None:
        """The client does not read what it is sent: free the backlog, ERROR (code slow-consumer), close."""
        logger.warning("STOMP session %s: %s (%d frames, %d bytes in the transport), closing as a slow consumer",
                       self.session_id, detail, len(self._queue), self._transport_pending)  # fmt: skip
        self._drop_queue()  # they would arrive hopelessly late; free the memory now
        tracker.slow_consumer_disconnects += 1
        metrics.SLOW_CONSUMERS.inc()
        self.fail("slow consumer", detail, code="slow-consumer")
        self._flush_core()

    def _drop_queue(self) -> None:
        self._queue.clear()
        self._queued_bytes = 0

    def _unsent_bytes(self) -> int:
        """Bytes queued here plus those the transport holds: re-reads the transport's figure."""
        if self._pending_bytes is not None:
            self._transport_pending = self._pending_bytes()
        return self._queued_bytes + self._transport_pending

    async def _replay_slot(self) -> None:
        """Wait until fewer than ``max_replays`` earlier replays are still on their way to the socket.

        A replay counts until the transport has written its last byte (bytes handed to it minus what it
        still holds). The wait is polled, since no server tells the application when its buffer drains;
        it ends with ERROR slow consumer after ``replay_wait`` seconds: such a client is not reading.
        """
        limit = self.config.max_replays
        if not limit:
            return
        deadline = self._loop.time() + self.config.replay_wait
        while not self._closing:
            written = self._handed_bytes - (self._unsent_bytes() - self._queued_bytes)
            self._replay_ends = tuple(end for end in self._replay_ends if end > written)
            if len(self._replay_ends) < limit:
                return
            if self._loop.time() >= deadline:
                self._slow_consumer(f"{limit} replays were still unread after {self.config.replay_wait:g} seconds")
                return
            await asyncio.sleep(_REPLAY_POLL)

    def _ensure_writer(self) -> None:
        if self._writer is not None or self._transport_closed:
            return
        if self._closing:
            # A task, so that a shutdown can wait for the last frames and the close to be written.
            self._writer = self._loop.create_task(self._drain())
        elif not self._write_scheduled:
            self._write_scheduled = True
            _write_scheduler(self._loop).add(self)

    def _start_writer(self) -> None:
        """Drive the writer directly; only a write that has to wait (flow control) gets a task."""
        self._write_scheduled = False
        if self._writer is not None or self._transport_closed:
            return
        self._writer = _DRIVING
        coroutine = self._drain()
        try:
            awaited = coroutine.send(None)
        except StopIteration:
            return  # everything written: _drain's finally reset _writer
        self._writer = self._loop.create_task(_finish(coroutine, awaited))

    def _next_write(self) -> bytes:
        """The queued frames to write next, joined up to ``coalesce_bytes`` (always at least one)."""
        queue = self._queue
        limit = self.config.coalesce_bytes
        size = count = 0
        for data in queue:
            if count and size + len(data) > limit:
                break
            size += len(data)
            count += 1
        self._queued_bytes -= size
        self._handed_bytes += size
        if count == len(queue):
            self._queue = []
            return queue[0] if count == 1 else b"".join(queue)
        parts = queue[:count]
        del queue[:count]
        return parts[0] if count == 1 else b"".join(parts)

    async def _drain(self) -> None:
        try:
            while self._queue and not self._transport_closed:
                await self._transport.send(self._next_write())
                if self._clock is not None:
                    self._clock.sent(self._loop.time())
                limit = self.config.max_unsent_bytes
                if limit and self._pending_bytes is not None and self._unsent_bytes() > limit and not self._closing:
                    # daphne accepts every write at once: the backlog grows in its buffer, not in _queue.
                    self._slow_consumer(f"more than {limit} bytes were waiting to be sent")
            if self._closing and not self._transport_closed:
                self._transport_closed = True
                self._cancel_timers()
                await self._transport.close(self._close_code)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            logger.debug("STOMP session %s: transport write failed: %s", self.session_id, exc)
            self._transport_closed = True
            self._closing = True
            self._drop_queue()
        finally:
            self._writer = None

    def _release_user(self) -> None:
        if self._counted_user is not None:
            user_connections.release(self._counted_user)
            self._counted_user = None

    def _begin_close(self, code: int) -> None:
        self._closing = True
        self._release_user()
        self._close_code = code
        self._flush_core()
        self._cancel_timers()
        self._ensure_writer()

    # -- timers ----------------------------------------------------------------------------------------------
    def _cancel_timers(self) -> None:
        for timer in (self._heartbeat_timer, self._connect_timer, self._expiry_timer):
            if timer is not None:
                timer.cancel()
        self._heartbeat_timer = self._connect_timer = self._expiry_timer = None

    def _on_connect_timeout(self) -> None:
        self._connect_timer = None
        if self._core.state is State.AWAITING_CONNECT and not self._closing:
            self.fail("connect timeout", f"no CONNECT frame within {self.config.connect_timeout:g} seconds")

    def _schedule_heartbeat(self) -> None:
        assert self._clock is not None
        deadline = self._clock.next_deadline()
        if deadline is not None and not self._closing:
            self._heartbeat_timer = self._loop.call_at(deadline, self._on_heartbeat)

    def _on_heartbeat(self) -> None:
        self._heartbeat_timer = None
        if self._closing or self._clock is None:
            return
        now = self._loop.time()
        beat = self._clock.poll(now)
        if beat is Beat.TIMEOUT:
            logger.info("STOMP session %s: client heart-beats stopped, closing", self.session_id)
            metrics.HEARTBEAT_TIMEOUTS.inc()
            self.fail("heart-beat timeout", "no data or heart-beat from the client within the negotiated interval")
            return
        if beat is Beat.SEND:
            self._clock.sent(now)
            if not self._queue:
                self._queue.append(b"\n")
                self._queued_bytes += 1
                self._ensure_writer()
        self._schedule_heartbeat()

    def _schedule_expiry(self, expires_at: Any) -> None:
        from django.utils import timezone

        if self._expiry_timer is not None:
            self._expiry_timer.cancel()
        remaining = (expires_at - timezone.now()).total_seconds()
        self._expiry_timer = self._loop.call_later(max(remaining, 0.0), self._on_token_expired)

    def _on_token_expired(self) -> None:
        self._expiry_timer = None
        if not self._closing:
            logger.info("STOMP session %s: access token expired, closing", self.session_id)
            self.fail(
                "Unauthorized",
                "the access token expired: reconnect with a fresh token (or SEND one to /app/auth.refresh in time)",
                code="token-expired",
            )


_config: StompConfig | None = None
_background: set[asyncio.Task[Any]] = set()
_DRIVING = object()  # StompConnection._writer while _WriteScheduler drives it without a task
_REPLAY_POLL = 0.05  # seconds between looks at the transport's buffer while a SUBSCRIBE waits for a replay slot


class _WriteScheduler:
    """Starts the writers of all connections with output from one event-loop callback per iteration.

    A fan-out queues frames on hundreds of connections at once; a task per connection and write was a
    large part of the cost. Transport writes rarely wait (daphne's ``send`` never does, uvicorn's only
    under flow control), so each writer is driven directly from here, once per loop iteration (frames
    queued meanwhile are coalesced); a writer that does have to wait continues in a task (``_finish``).
    """

    __slots__ = ("_loop", "_pending")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._pending: list[StompConnection] = []

    def add(self, connection: StompConnection) -> None:
        """Start this connection's writer in this loop iteration's flush."""
        if not self._pending:
            self._loop.call_soon(self._run)
        self._pending.append(connection)

    def _run(self) -> None:
        pending, self._pending = self._pending, []
        for connection in pending:
            try:
                connection._start_writer()
            except Exception:
                logger.exception("STOMP session %s: writer failed", connection.session_id)


_schedulers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _WriteScheduler] = weakref.WeakKeyDictionary()


def _write_scheduler(loop: asyncio.AbstractEventLoop) -> _WriteScheduler:
    scheduler = _schedulers.get(loop)
    if scheduler is None:
        scheduler = _schedulers[loop] = _WriteScheduler(loop)
    return scheduler


async def _finish(coroutine: Any, awaited: Any) -> None:
    """Run a coroutine that was started outside any task to its end: wait for what it waits for, resume it."""
    while True:
        try:
            if awaited is None:
                await asyncio.sleep(0)  # a bare yield
            else:
                # What a task does with a yielded future: clear the flag the yield set, wait for it. The
                # coroutine reads the result itself when resumed.
                awaited._asyncio_future_blocking = False
                await awaited
        except BaseException as exc:  # cancelled (or the future failed): let the coroutine handle it
            try:
                awaited = coroutine.throw(exc)
            except StopIteration:
                return
            continue
        try:
            awaited = coroutine.send(None)
        except StopIteration:
            return


def _hook_done(task: asyncio.Task[Any]) -> None:
    _background.discard(task)
    if not task.cancelled() and task.exception() is not None:
        logger.error("an on_unsubscribe hook failed", exc_info=task.exception())


def default_config() -> StompConfig:
    """The StompConfig built from settings (once per process)."""
    global _config
    if _config is None:
        _config = StompConfig.from_settings()
    return _config


def reset_config() -> None:
    """Forget the cached settings (tests that change STOMP_* settings)."""
    global _config
    _config = None


@destinations.app("/app/auth.refresh")
async def refresh_token(ctx: SendContext) -> None:
    """Re-authenticate a live connection: ``SEND /app/auth.refresh`` with ``Authorization: Bearer <new jwt>``
    (or the token as the body). Same user only; the connection then lives until the new token expires."""
    from accounts.tokens import parse_bearer

    token = parse_bearer(ctx.authorization) if ctx.authorization else None
    if token is None:
        token = ctx.text.strip()
        token = parse_bearer(token) or token
    if not token:
        raise Denied(
            "Unauthorized", "SEND to /app/auth.refresh needs 'Authorization: Bearer <jwt>'", code="unauthorized"
        )
    await ctx.connection.reauthenticate(token)
