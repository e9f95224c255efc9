"""Sans-IO STOMP server session: one connection's state machine, from bytes in to events and bytes out.

Shaped like h11: ``receive_data(bytes, now)``, then ``next_event()`` until it returns None; frames the
session can answer by itself (ACK, NACK, BEGIN, ABORT, SENDs inside a transaction, receipts for those)
are answered into ``data_to_send()``; frames that need the application (CONNECT's authentication,
SEND, SUBSCRIBE, UNSUBSCRIBE, COMMIT, DISCONNECT) come out as events, and the application answers
with ``accept``/``fail``/``add_subscription``/``receipt``. While CONNECT is being authenticated no
further frame is parsed, so frames pipelined behind CONNECT are handled only after it succeeded.

Every error closes the session: the ERROR frame is queued and the state becomes CLOSED.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from stompengine.stomp.codec import (
    FrameParser,
    ack_line,
    encode,
)
from stompengine.stomp.errors import ProtocolViolation, StompError
from stompengine.stomp.events import (
    RESERVED_SEND_HEADERS,
    SUBPROTOCOL_VERSIONS,
    SUPPORTED_VERSIONS,
    AckMode,
    ConnectionFailed,
    ConnectRequested,
    DisconnectRequested,
    Event,
    SendRequested,
    SessionLimits,
    State,
    SubscribeRequested,
    Subscription,
    TransactionCommitted,
    UnsubscribeRequested,
    choose_subprotocol,
)
from stompengine.stomp.frames import CLIENT_COMMANDS, Escaping, Frame, Headers
from stompengine.stomp.heartbeat import HeartbeatTerms, negotiate_heartbeat, parse_heartbeat


@dataclass(slots=True)
class _Transaction:
    sends: list[SendRequested]
    acks: list[tuple[str, str, bool]]  # (subscription id, ack key, cumulative)


def _violation(detail: str, message: str = "protocol error") -> ProtocolViolation:
    return ProtocolViolation(detail, message=message)


class ServerSession:
    """The server side of one STOMP connection, without I/O."""

    def __init__(self, *, limits: SessionLimits = SessionLimits(), subprotocol: str | None = None) -> None:
        self.limits = limits
        self.state = State.AWAITING_CONNECT
        self.version: str | None = None
        self.escaping = Escaping.NONE
        self.heartbeat = HeartbeatTerms(0, 0)
        self.subscriptions: dict[str, Subscription] = {}
        self._subprotocol_version = SUBPROTOCOL_VERSIONS.get(subprotocol or "")
        self._parser = FrameParser(
            max_frame_size=limits.max_frame_size,
            max_headers=limits.max_headers,
            max_header_length=limits.max_header_length,
            commands=CLIENT_COMMANDS,
        )
        self._out: list[bytes] = []
        self._transactions: dict[str, _Transaction] = {}
        self._ack_index: dict[str, Subscription] = {}  # STOMP 1.2 ack id -> subscription
        self._ack_counter = 0
        self._pending_total = 0
        self._transaction_bytes = 0

    # -- input -------------------------------------------------------------------------------------------
    def receive_data(self, data: bytes) -> None:
        """Buffer bytes from the transport (ignored once CLOSED)."""
        if self.state is not State.CLOSED:
            self._parser.receive_data(data)

    def next_event(self) -> Event | None:
        """The next event needing the application, or None (more bytes needed, authenticating, or CLOSED)."""
        while self.state is State.AWAITING_CONNECT or self.state is State.CONNECTED:
            receipt = None
            try:
                frame = self._parser.next_frame()
                if frame is None:
                    return None
                receipt = frame.get("receipt")
                event = self._handle(frame)
            except StompError as exc:
                return self._fail_with(exc, receipt)
            if event is not None:
                return event
        return None

    # -- output ------------------------------------------------------------------------------------------
    def data_to_send(self) -> bytes:
        """Bytes the session has queued for the peer (and forgets them)."""
        if not self._out:
            return b""
        data = b"".join(self._out)
        self._out.clear()
        return data

    # -- application answers -----------------------------------------------------------------------------
    def accept(self, *, session_id: str, user_name: str, server: str) -> None:
        """Authentication succeeded: queue CONNECTED and start parsing the frames that follow."""
        self._require(State.AUTHENTICATING, "accept")
        assert self.version is not None
        headers: list[tuple[str, str]] = [("version", self.version)]
        if self.version != "1.0" or self.heartbeat.send_ms or self.heartbeat.receive_ms:
            headers.append(("heart-beat", f"{self.heartbeat.send_ms},{self.heartbeat.receive_ms}"))
        headers += [("server", server), ("session", session_id), ("user-name", user_name)]
        self._out.append(encode(Frame("CONNECTED", tuple(headers))))
        self.escaping = Escaping.for_version(self.version)
        self._parser.escaping = self.escaping
        self.state = State.CONNECTED

    def fail(
        self,
        message: str,
        detail: str = "",
        *,
        headers: Headers = (),
        receipt_id: str | None = None,
    ) -> tuple[Subscription, ...]:
        """Queue an ERROR frame and close; returns the subscriptions the application must detach."""
        if self.state is State.CLOSED:
            return ()
        items: list[tuple[str, str]] = [("message", message)]
        if receipt_id is not None:
            items.append(("receipt-id", receipt_id))
        items += headers
        body = (detail or message).encode("utf-8")
        items += [("content-type", "text/plain;charset=utf-8"), ("content-length", str(len(body)))]
        self._out.append(encode(Frame("ERROR", tuple(items), body), self.escaping))
        return self._close()

    def add_subscription(self, request: SubscribeRequested) -> Subscription:
        """The application authorised a SUBSCRIBE: record it (send the receipt with ``receipt``)."""
        self._require(State.CONNECTED, "add a subscription")
        if request.subscription_id in self.subscriptions:
            raise _violation(f"subscription id {request.subscription_id!r} is already in use")
        subscription = Subscription(request.subscription_id, request.destination, request.ack)
        self.subscriptions[subscription.id] = subscription
        return subscription

    def drop_subscription(self, subscription_id: str) -> Subscription | None:
        """End a subscription on the server's initiative (the client sent no UNSUBSCRIBE); forget its acks."""
        subscription = self.subscriptions.pop(subscription_id, None)
        if subscription is not None:
            self._forget_pending(subscription)
        return subscription

    def receipt(self, receipt_id: str | None) -> None:
        """Queue a RECEIPT for a frame the application has finished handling (no-op for None)."""
        if receipt_id is not None and self.state is not State.CLOSED:
            self._out.append(encode(Frame("RECEIPT", (("receipt-id", receipt_id),)), self.escaping))

    def track_delivery(self, subscription: Subscription, message_id: str) -> bytes:
        """Register a MESSAGE for a client-ack subscription; returns its ``ack`` header line (1.2) or b""."""
        if self._pending_total >= self.limits.max_pending_acks:
            raise _violation(
                f"more than {self.limits.max_pending_acks} messages are waiting for ACK or NACK",
                "too many unacknowledged messages",
            )
        self._pending_total += 1
        if self.version == "1.2":
            self._ack_counter += 1
            key = str(self._ack_counter)
            self._ack_index[key] = subscription
            subscription.pending[key] = None
            return ack_line(key)
        subscription.pending[message_id] = None
        return b""

    def connection_lost(self) -> tuple[Subscription, ...]:
        """The transport closed; returns the subscriptions the application must detach."""
        return self._close()

    # -- frame handlers ----------------------------------------------------------------------------------
    def _handle(self, frame: Frame) -> Event | None:
        command = frame.command
        if self.state is State.AWAITING_CONNECT:
            if command not in ("CONNECT", "STOMP"):
                raise _violation(f"{command} is not allowed in state {self.state.value}: send CONNECT first")
            return self._on_connect(frame)
        if command in ("CONNECT", "STOMP"):
            raise _violation(f"{command} is not allowed in state {self.state.value}: already connected")
        handler: Callable[[Frame], Event | None] = getattr(self, f"_on_{command.lower()}")
        return handler(frame)

    def _on_connect(self, frame: Frame) -> ConnectRequested:
        version = self._negotiate_version(frame.get("accept-version"))
        client_heartbeat = parse_heartbeat(frame.get("heart-beat"))
        server = (self.limits.heartbeat_send_ms, self.limits.heartbeat_receive_ms)
        self.version = version
        self.heartbeat = negotiate_heartbeat(client_heartbeat, server)
        self.state = State.AUTHENTICATING
        return ConnectRequested(
            version=version,
            heartbeat=self.heartbeat,
            host=frame.get("host"),
            login=frame.get("login"),
            authorization=frame.get_ci("authorization"),
            passcode=frame.get("passcode"),
        )

    def _negotiate_version(self, accept_version: str | None) -> str:
        cap = self._subprotocol_version
        # STOMP 1.0 clients send no accept-version; a v1x.stomp subprotocol says which version they speak.
        offered = {cap or "1.0"} if accept_version is None else {v.strip() for v in accept_version.split(",")}
        for version in SUPPORTED_VERSIONS:
            if version in offered and (cap is None or version <= cap):
                return version
        raise ProtocolViolation(
            f"Supported protocol versions are {' '.join(SUPPORTED_VERSIONS)}",
            message="unsupported protocol version",
            headers=(("version", ",".join(SUPPORTED_VERSIONS)),),
        )

    def _on_send(self, frame: Frame) -> SendRequested | None:
        destination = self._required(frame, "destination")
        forwarded = tuple((k, v) for k, v in frame.headers if k.lower() not in RESERVED_SEND_HEADERS)
        receipt = frame.get("receipt")
        transaction = frame.get("transaction")
        request = SendRequested(destination, forwarded, frame.body, receipt, frame.headers)
        if transaction is None:
            return request
        buffered = self._transaction(transaction)
        if len(buffered.sends) + len(buffered.acks) >= self.limits.max_transaction_frames:
            raise _violation(
                f"transaction {transaction!r} holds more than {self.limits.max_transaction_frames} frames",
                "transaction too large",
            )
        if self._transaction_bytes + len(frame.body) > self.limits.max_transaction_bytes:
            raise _violation(
                f"open transactions may buffer at most {self.limits.max_transaction_bytes} bytes of bodies",
                "transaction too large",
            )
        self._transaction_bytes += len(frame.body)
        buffered.sends.append(SendRequested(destination, forwarded, frame.body, None, frame.headers))
        self.receipt(receipt)
        return None

    def _on_subscribe(self, frame: Frame) -> SubscribeRequested:
        destination = self._required(frame, "destination")
        subscription_id = frame.get("id")
        if subscription_id is None:
            if self.version != "1.0":
                raise _violation("SUBSCRIBE has no id header")
            subscription_id = destination
        if subscription_id in self.subscriptions:
            raise _violation(f"subscription id {subscription_id!r} is already in use")
        if len(self.subscriptions) >= self.limits.max_subscriptions:
            raise _violation(
                f"a connection may hold at most {self.limits.max_subscriptions} subscriptions",
                "too many subscriptions",
            )
        raw_ack = frame.get("ack", "auto")
        try:
            ack = AckMode(raw_ack)
        except ValueError:
            raise _violation(f"ack mode {raw_ack!r} is not auto, client or client-individual") from None
        return SubscribeRequested(subscription_id, destination, ack, frame.get("receipt"), frame.headers)

    def _on_unsubscribe(self, frame: Frame) -> UnsubscribeRequested:
        subscription_id = frame.get("id")
        if subscription_id is None and self.version == "1.0":
            subscription_id = frame.get("destination")
        if subscription_id is None:
            raise _violation("UNSUBSCRIBE has no id header")
        subscription = self.subscriptions.pop(subscription_id, None)
        if subscription is None:
            raise _violation(f"there is no subscription with id {subscription_id!r}")
        self._forget_pending(subscription)
        return UnsubscribeRequested(subscription, frame.get("receipt"))

    def _on_ack(self, frame: Frame) -> None:
        self._acknowledge(frame, nack=False)

    def _on_nack(self, frame: Frame) -> None:
        self._acknowledge(frame, nack=True)

    def _acknowledge(self, frame: Frame, *, nack: bool) -> None:
        # Topics have no redelivery: NACK, like ACK, settles the message (it is dropped, as RabbitMQ
        # does for a topic subscription without a dead-letter exchange).
        if self.version == "1.0" and frame.command == "NACK":
            raise _violation("NACK does not exist in STOMP 1.0")
        subscription, key = self._find_pending(frame)
        cumulative = subscription.ack is AckMode.CLIENT and not nack
        transaction = frame.get("transaction")
        if transaction is not None:
            buffered = self._transaction(transaction)
            if len(buffered.sends) + len(buffered.acks) >= self.limits.max_transaction_frames:
                raise _violation(
                    f"transaction {transaction!r} holds more than {self.limits.max_transaction_frames} frames",
                    "transaction too large",
                )
            buffered.acks.append((subscription.id, key, cumulative))
        else:
            self._settle(subscription, key, cumulative)
        self.receipt(frame.get("receipt"))

    def _find_pending(self, frame: Frame) -> tuple[Subscription, str]:
        if self.version == "1.2":
            key = self._required(frame, "id")
            subscription = self._ack_index.get(key)
            if subscription is None or key not in subscription.pending:
                raise _violation(f"{frame.command} for unknown or already settled ack id {key!r}")
            return subscription, key
        key = self._required(frame, "message-id")
        subscription_id = frame.get("subscription")
        if subscription_id is None and self.version == "1.1":
            raise _violation(f"{frame.command} has no subscription header")
        candidates = (
            ([self.subscriptions[subscription_id]] if subscription_id in self.subscriptions else [])
            if subscription_id is not None
            else list(self.subscriptions.values())
        )
        for subscription in candidates:
            if key in subscription.pending:
                return subscription, key
        raise _violation(f"{frame.command} for unknown or already settled message-id {key!r}")

    def _settle(self, subscription: Subscription, key: str, cumulative: bool) -> None:
        pending = subscription.pending
        if key not in pending:
            return  # settled meanwhile (a cumulative ACK inside the same transaction)
        if cumulative:
            # ACK in "client" mode settles this message and every earlier one of the subscription.
            while pending:
                first = next(iter(pending))
                del pending[first]
                self._ack_index.pop(first, None)
                self._pending_total -= 1
                if first == key:
                    break
        else:
            del pending[key]
            self._ack_index.pop(key, None)
            self._pending_total -= 1

    def _on_begin(self, frame: Frame) -> None:
        transaction = self._required(frame, "transaction")
        if transaction in self._transactions:
            raise _violation(f"transaction {transaction!r} has already begun")
        if len(self._transactions) >= self.limits.max_transactions:
            raise _violation(
                f"a connection may have at most {self.limits.max_transactions} open transactions",
                "too many transactions",
            )
        self._transactions[transaction] = _Transaction([], [])
        self.receipt(frame.get("receipt"))

    def _on_commit(self, frame: Frame) -> TransactionCommitted:
        transaction = self._required(frame, "transaction")
        buffered = self._transaction(transaction)
        del self._transactions[transaction]
        self._transaction_bytes -= sum(len(send.body) for send in buffered.sends)
        for subscription_id, key, cumulative in buffered.acks:
            subscription = self.subscriptions.get(subscription_id)
            if subscription is not None:
                self._settle(subscription, key, cumulative)
        return TransactionCommitted(transaction, tuple(buffered.sends), frame.get("receipt"))

    def _on_abort(self, frame: Frame) -> None:
        transaction = self._required(frame, "transaction")
        buffered = self._transaction(transaction)
        del self._transactions[transaction]
        self._transaction_bytes -= sum(len(send.body) for send in buffered.sends)
        self.receipt(frame.get("receipt"))

    def _on_disconnect(self, frame: Frame) -> DisconnectRequested:
        self.receipt(frame.get("receipt"))
        return DisconnectRequested(frame.get("receipt"), self._close())

    # -- helpers -----------------------------------------------------------------------------------------
    def _transaction(self, name: str) -> _Transaction:
        buffered = self._transactions.get(name)
        if buffered is None:
            raise _violation(f"transaction {name!r} has not begun")
        return buffered

    @staticmethod
    def _required(frame: Frame, name: str) -> str:
        value = frame.get(name)
        if value is None or (name == "destination" and not value):
            raise _violation(f"{frame.command} has no {name} header")
        return value

    def _require(self, state: State, action: str) -> None:
        if self.state is not state:
            raise _violation(f"cannot {action} in state {self.state.value}")

    def _forget_pending(self, subscription: Subscription) -> None:
        for key in subscription.pending:
            self._ack_index.pop(key, None)
        self._pending_total -= len(subscription.pending)
        subscription.pending.clear()

    def _fail_with(self, error: StompError, receipt: str | None) -> ConnectionFailed:
        detached = self.fail(error.message, error.detail, headers=error.headers, receipt_id=receipt)
        return ConnectionFailed(error, detached)

    def _close(self) -> tuple[Subscription, ...]:
        self.state = State.CLOSED
        self._transactions.clear()
        detached = tuple(self.subscriptions.values())
        self.subscriptions.clear()
        self._ack_index.clear()
        self._pending_total = 0
        self._transaction_bytes = 0
        return detached


# The vocabulary lives in stompengine.stomp.events; importing it from here keeps working.
__all__ = [
    "RESERVED_SEND_HEADERS",
    "SUBPROTOCOL_VERSIONS",
    "SUPPORTED_VERSIONS",
    "AckMode",
    "ConnectRequested",
    "ConnectionFailed",
    "DisconnectRequested",
    "Event",
    "SendRequested",
    "ServerSession",
    "SessionLimits",
    "State",
    "SubscribeRequested",
    "Subscription",
    "TransactionCommitted",
    "UnsubscribeRequested",
    "choose_subprotocol",
]
