"""Sans-IO STOMP server session, its vocabulary: versions, states, limits, the events it emits, subscriptions.

``ServerSession`` (``stompengine.stomp.session``) turns bytes into these events and the application's
answers into bytes; nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum

from stompengine.conf import DEFAULTS
from stompengine.stomp.codec import (
    DEFAULT_MAX_FRAME_SIZE,
    DEFAULT_MAX_HEADER_LENGTH,
    DEFAULT_MAX_HEADERS,
)
from stompengine.stomp.errors import StompError
from stompengine.stomp.frames import Headers
from stompengine.stomp.heartbeat import HeartbeatTerms

SUPPORTED_VERSIONS = ("1.2", "1.1", "1.0")  # best first
SUBPROTOCOL_VERSIONS = {"v12.stomp": "1.2", "v11.stomp": "1.1", "v10.stomp": "1.0"}
# Headers a SEND may not pass on to subscribers: the broker sets them, or they are credentials.
RESERVED_SEND_HEADERS = frozenset(
    {
        "destination",
        "transaction",
        "receipt",
        "content-length",
        "message-id",
        "subscription",
        "ack",
        "authorization",
        "passcode",
        "login",
    }
)


def choose_subprotocol(offered: Iterable[str]) -> str | None:
    """The best STOMP WebSocket subprotocol among those a client offered, or None."""
    offered_set = {item.strip() for item in offered}
    for name in SUBPROTOCOL_VERSIONS:
        if name in offered_set:
            return name
    return None


class State(Enum):
    """Where a session is in its life."""

    AWAITING_CONNECT = "awaiting CONNECT"
    AUTHENTICATING = "authenticating CONNECT"
    CONNECTED = "connected"
    CLOSED = "closed"


class AckMode(Enum):
    """SUBSCRIBE ``ack`` header values."""

    AUTO = "auto"
    CLIENT = "client"
    CLIENT_INDIVIDUAL = "client-individual"


@dataclass(frozen=True, slots=True)
class SessionLimits:
    """Per-connection limits; the defaults are the engine's (``stompengine.conf``)."""

    max_frame_size: int = DEFAULT_MAX_FRAME_SIZE
    max_headers: int = DEFAULT_MAX_HEADERS
    max_header_length: int = DEFAULT_MAX_HEADER_LENGTH
    max_subscriptions: int = DEFAULTS.max_subscriptions
    max_transactions: int = DEFAULTS.max_transactions
    max_transaction_frames: int = DEFAULTS.max_transaction_frames
    max_transaction_bytes: int = DEFAULTS.max_transaction_bytes
    max_pending_acks: int = DEFAULTS.max_pending_acks
    heartbeat_send_ms: int = DEFAULTS.heartbeat_send_ms
    heartbeat_receive_ms: int = DEFAULTS.heartbeat_receive_ms


# -- events ----------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ConnectRequested:
    """CONNECT/STOMP arrived; authenticate, then call ``accept`` or ``fail``."""

    version: str
    heartbeat: HeartbeatTerms
    host: str | None
    login: str | None
    authorization: str | None
    passcode: str | None


@dataclass(frozen=True, slots=True)
class SendRequested:
    """A SEND to route; ``headers`` are those to pass on to subscribers (reserved ones removed)."""

    destination: str
    headers: Headers
    body: bytes
    receipt: str | None
    frame_headers: Headers


@dataclass(frozen=True, slots=True)
class SubscribeRequested:
    """A SUBSCRIBE to authorise; call ``add_subscription`` (then ``receipt``) or ``fail``."""

    subscription_id: str
    destination: str
    ack: AckMode
    receipt: str | None
    headers: Headers


@dataclass(frozen=True, slots=True)
class UnsubscribeRequested:
    """A subscription the session has already dropped; detach it from the broker, then ``receipt``."""

    subscription: Subscription
    receipt: str | None


@dataclass(frozen=True, slots=True)
class TransactionCommitted:
    """COMMIT: route ``sends`` in order, then ``receipt``."""

    transaction: str
    sends: tuple[SendRequested, ...]
    receipt: str | None


@dataclass(frozen=True, slots=True)
class DisconnectRequested:
    """DISCONNECT: the RECEIPT (if asked) is queued and the session is CLOSED; flush, then close."""

    receipt: str | None
    subscriptions: tuple[Subscription, ...]


@dataclass(frozen=True, slots=True)
class ConnectionFailed:
    """The session sent an ERROR and is CLOSED; flush, then close the transport."""

    error: StompError
    subscriptions: tuple[Subscription, ...]


Event = (
    ConnectRequested
    | SendRequested
    | SubscribeRequested
    | UnsubscribeRequested
    | TransactionCommitted
    | DisconnectRequested
    | ConnectionFailed
)


class Subscription:
    """A confirmed subscription; ``handle`` is the application's slot (the broker's subscriber object)."""

    __slots__ = ("ack", "destination", "handle", "id", "pending")

    def __init__(self, subscription_id: str, destination: str, ack: AckMode) -> None:
        self.id = subscription_id
        self.destination = destination
        self.ack = ack
        self.pending: dict[str, None] = {}  # ack keys awaiting ACK/NACK, in delivery order
        self.handle: object = None

    def __repr__(self) -> str:
        return f"Subscription(id={self.id!r}, destination={self.destination!r}, ack={self.ack.value})"
