"""One STOMP connection over any transport: its lifecycle (open, data, lost, shutdown) and frame dispatch.

A transport (the raw WebSocket consumer, a SockJS session) creates a ``StompConnection`` with an object
that can ``send(bytes)`` and ``close(code)``, then calls ``open()`` once, ``data_received(bytes)`` for
everything the client sends (in order), and ``connection_lost()`` once when the peer is gone. Everything
else (the CONNECT timeout, heart-beats both ways, token expiry, the bounded send queue, closing after an
ERROR) happens in here, so all transports behave the same.

Frames are handled strictly in order: ``data_received`` awaits each application handler before the
next frame is parsed, except the slow end of a validated SEND that its handler hands back as a
``Completion`` (see sends.py). The other parts: outbound.py (queue and writes), keepalive.py (timers),
auth.py (CONNECT), subscriptions.py (SUBSCRIBE, replays, delivery).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Mapping
from typing import Any

from stompengine import metrics
from stompengine import runtime as runtimes
from stompengine.auth import Authenticator
from stompengine.broker import Broker
from stompengine.connection import auth
from stompengine.connection.clock import Clock, LoopClock
from stompengine.connection.config import StompConfig
from stompengine.connection.handle import ConnectionHandle
from stompengine.connection.keepalive import Keepalive
from stompengine.connection.outbound import Outbound, Transport, WriteScheduler
from stompengine.connection.sends import Reply, SendsMixin
from stompengine.connection.state import CLOSE_AFTER_ERROR, CLOSE_NORMAL
from stompengine.realtime.limits import (
    ConnectAdmission,
    SendGate,
    start_budget_sync,
    too_many_connections,
    user_connections,
)
from stompengine.realtime.registry import Completion, Denied, DestinationRegistry, Rejected, destinations
from stompengine.realtime.tracking import tracker
from stompengine.stomp.errors import ProtocolViolation
from stompengine.stomp.session import (
    ConnectionFailed,
    ConnectRequested,
    DisconnectRequested,
    SendRequested,
    ServerSession,
    State,
    SubscribeRequested,
    TransactionCommitted,
    UnsubscribeRequested,
)

logger = logging.getLogger(__name__)


class StompConnection(SendsMixin):
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
        clock: Clock | None = None,
        authenticator: Authenticator | None = None,
        runtime: runtimes.Runtime | None = None,
    ) -> None:
        self.runtime = runtime or runtimes.current()  # this loop's broker, configuration and parts
        self.config = config or self.runtime.config
        self._authenticator = authenticator or self.config.authenticator
        self.scope = scope or {}
        self.user = None
        self.principal = None
        self.session_id = secrets.token_urlsafe(12)
        self.handle = ConnectionHandle(self)
        self._transport = transport
        self._core = ServerSession(limits=self.config.limits, subprotocol=subprotocol)
        self._broker = broker
        self._registry = registry or destinations
        self._loop = asyncio.get_running_loop()
        self._clock = clock or self.runtime.attach("stomp.clock", _loop_clock)  # one per loop: its timer wheel
        self._keepalive = Keepalive(self, self._clock)
        config = self.config
        scheduler = self.runtime.attach("stomp.writes", _write_scheduler)
        self._out = Outbound(transport, scheduler, send_queue_limit=config.send_queue_limit,
                             max_unsent_bytes=config.max_unsent_bytes, coalesce_bytes=config.coalesce_bytes,
                             session_id=self.session_id)  # fmt: skip
        self._out.on_slow = self._slow_consumer
        self._out.on_written = self._keepalive.sent
        self._replay_ends = ()  # a tuple: the empty one is shared by every idle connection
        self._processing = False
        self._close_code = CLOSE_NORMAL
        self._send_gate = SendGate(config.send_limits, self._clock.time())
        self._counted_user: Any = None  # the user whose per-process connection count includes this one
        self._inflight = None
        self._interrupted = False
        self._replies = []

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
            self._broker = self.runtime.broker
        return self._broker

    @property
    def queue_depth(self) -> int:
        """Frames waiting to be written to the transport (operations)."""
        return len(self._out.queue)

    async def open(self) -> None:
        """The transport is up: start the CONNECT timeout."""
        self._keepalive.start_connect_timeout(self.config.connect_timeout)

    async def data_received(self, data: bytes) -> None:
        """Bytes from the client, in order; returns once every complete frame in them was handled."""
        if self._out.closing:
            return
        self._keepalive.received()
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
        self._release_user()
        tracker.discard(self)
        self._keepalive.stop()
        self._out.lost()
        self._detach(self._core.connection_lost())
        self._replies.clear()  # the writes still finish; nobody is left to tell

    # -- for handlers and operations -----------------------------------------------------------------------
    def fail(
        self,
        message: str,
        detail: str = "",
        *,
        code: str | None = None,
        receipt_id: str | None = None,
        headers: tuple[tuple[str, str], ...] = (),
    ) -> None:
        """Send an ERROR frame (``message`` header, ``detail`` body, optional ``code`` and other headers) and close."""
        headers = ((("code", code),) if code else ()) + headers
        self._replies.clear()  # nothing may follow the ERROR frame; a resend with its client_id is stored once
        self._detach(self._core.fail(message, detail, headers=headers, receipt_id=receipt_id))
        self._begin_close(CLOSE_AFTER_ERROR)

    async def shutdown(self, *, grace: float = 5.0) -> None:
        """The server is stopping: finish the frame in progress, then ERROR (code ``shutdown``) and close.

        A SEND whose handler was running, and every pipelined SEND still being written, is awaited (up to
        ``grace`` seconds) and gets its RECEIPT when it succeeded, so a client never retries what was
        stored, nor trusts what was not.
        """
        if self._out.transport_closed:
            return
        logger.debug("STOMP session %s: server shutting down", self.session_id)
        self._out.closing = True  # no further frame is taken up; the one in progress completes
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
        await asyncio.wait({self._out.closed()}, timeout=grace)

    async def reauthenticate(self, headers: Mapping[str, str]) -> None:
        """Check fresh credentials (same user only, else ``Denied``); the expiry moves to theirs."""
        if self.principal is None:
            raise Denied("Unauthorized", "not connected", code="unauthorized")
        principal = await auth.reauthenticate(self._authenticator, headers, self.scope, self.principal)
        self.principal = principal
        self.user = principal.user
        self._keepalive.expire_at(principal.expires_at)

    # -- the timers' side (KeepaliveOwner) -----------------------------------------------------------------
    def connect_timed_out(self) -> None:
        """No CONNECT frame in time: ERROR and close."""
        if self._core.state is State.AWAITING_CONNECT and not self._out.closing:
            self.fail("connect timeout", f"no CONNECT frame within {self.config.connect_timeout:g} seconds")

    def heartbeat_timed_out(self) -> None:
        """The client went silent: ERROR and close."""
        if self._out.closing:
            return
        logger.info("STOMP session %s: client heart-beats stopped, closing", self.session_id)
        metrics.HEARTBEAT_TIMEOUTS.inc()
        self.fail("heart-beat timeout", "no data or heart-beat from the client within the negotiated interval")

    def handling_frame(self) -> bool:
        """Whether a frame handler is running: bytes the client sent meanwhile may still wait unread."""
        return self._processing

    def send_heartbeat(self) -> None:
        """An EOL to the client, unless something is queued anyway."""
        if not self._out.closing:
            self._out.put_heartbeat()

    def credential_expired(self) -> None:
        """The principal's credential expired: ERROR ``code:token-expired`` and close."""
        if not self._out.closing:
            logger.info("STOMP session %s: access token expired, closing", self.session_id)
            self.fail(
                "Unauthorized",
                "the access token expired: reconnect with a fresh token (or SEND one to /app/auth.refresh in time)",
                code="token-expired",
            )

    # -- frame handling --------------------------------------------------------------------------------------
    async def _process(self) -> None:
        core = self._core
        out = self._out
        while not out.closing:
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
                self.fail(exc.message, exc.detail, code=exc.code, receipt_id=getattr(event, "receipt", None),
                          headers=exc.headers)  # fmt: skip
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
        if core.state is State.CLOSED and not out.closing:
            self._begin_close(self._close_code)

    async def _handle(self, event: object) -> None:
        metrics.frame_in(event)
        if isinstance(event, SendRequested):
            started = metrics.now()
            self._send_gate.admit([event.body], self._clock.time())
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
            self._send_gate.admit_subscription(self._clock.time(), unsubscribe=True)
            self._core.receipt(event.receipt)
        elif isinstance(event, TransactionCommitted):
            if event.sends:
                self._send_gate.admit([send.body for send in event.sends], self._clock.time())
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
        # Before the credential check, the expensive part: past the process's CONNECT rate the client is
        # told when to come back (ERROR code:busy, retry-after) instead of queueing behind a reconnect storm.
        self.runtime.attach("stomp.connect-admission", _connect_admission).admit(
            self.config.send_limits, self._clock.time()
        )
        principal = await auth.authenticate_connect(self._authenticator, event, self.scope)
        if self._out.closing:
            return  # the transport went away while we were checking the credentials
        limit = self.config.send_limits.max_connections_per_user
        if not user_connections.acquire(principal.user_id, limit):
            raise too_many_connections(limit)
        self._counted_user = principal.user_id
        self._send_gate.bind_user(principal.user_id, self.config.user_budget)
        start_budget_sync(self._loop, self.config.send_limits, self.config.user_budget)
        self.principal = principal
        self.user = principal.user
        self._core.accept(
            session_id=self.session_id, user_name=self.user.get_username(), server=self.config.server_name
        )
        self._keepalive.connected(self._core.heartbeat, self.config.heartbeat_grace, principal.expires_at)
        tracker.add(self)
        logger.debug("STOMP session %s connected: user %s, version %s", self.session_id, principal.user_id,
                     self.version)  # fmt: skip

    # -- output ----------------------------------------------------------------------------------------------
    def _flush_core(self) -> None:
        data = self._core.data_to_send()
        if data:
            if self._replies:  # after the answers of earlier pipelined SENDs
                self._replies.append(Reply(None, data=data))
            else:
                self._queue_output(data)

    def _queue_output(self, data: bytes) -> None:
        metrics.frames_out(data)
        self._out.put_reply(data)  # protocol replies bypass the slow-consumer limits (but are counted)

    def _slow_consumer(self, detail: str) -> None:
        """The client does not read what it is sent (its backlog is gone already): ERROR slow consumer, close."""
        tracker.slow_consumer_disconnects += 1
        metrics.SLOW_CONSUMERS.inc()
        self.fail("slow consumer", detail, code="slow-consumer")
        self._flush_core()

    def _release_user(self) -> None:
        if self._counted_user is not None:
            user_connections.release(self._counted_user)
            self._counted_user = None

    def _begin_close(self, code: int) -> None:
        self._out.closing = True
        self._release_user()
        self._close_code = code
        self._flush_core()
        self._keepalive.stop()
        self._out.close(code)


def _connect_admission(_runtime: runtimes.Runtime) -> ConnectAdmission:
    """The CONNECT admission of a runtime (one per event loop, so its rate is the process's)."""
    return ConnectAdmission()


def _loop_clock(_runtime: runtimes.Runtime) -> LoopClock:
    """The clock of a runtime's connections (one per event loop: their heart-beat and expiry timers share its
    wheel)."""
    return LoopClock(asyncio.get_running_loop())


def _write_scheduler(_runtime: runtimes.Runtime) -> WriteScheduler:
    """The write scheduler of a runtime (one per event loop: its connections' writes share its task)."""
    return WriteScheduler(asyncio.get_running_loop())
