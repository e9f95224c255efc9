"""The engine's Prometheus metrics (prometheus-client), defined once; call sites use the pre-bound children below.

The names are stable (dashboards and alerts use them). Several server processes may each write their
values to ``PROMETHEUS_MULTIPROC_DIR`` (prometheus-client's multiprocess mode); serving ``/metrics`` is the
project's business (here: ``operations``, which adds its own metrics). Labels are bounded: transports,
STOMP commands and refusal codes from fixed lists, never a user or a destination. With
``METRICS_ENABLED = False`` every name here is a no-op object, so the hooks cost one attribute call.
"""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import Counter, Gauge, Histogram

from stompengine.conf import stomp_settings

__all__ = [
    "COMMANDS_IN",
    "COMMANDS_OUT",
    "CONNECTIONS_OPEN",
    "CONNECTS",
    "CONNECT_BY_OUTCOME",
    "CONNECT_OUTCOMES",
    "DELIVERIES",
    "DEPTH_BUCKETS",
    "ENABLED",
    "FRAMES_IN",
    "FRAMES_OUT",
    "FRAME_IN_BY_EVENT",
    "FRAME_OUT",
    "FRAME_OUT_MESSAGE",
    "HEARTBEAT_TIMEOUTS",
    "LATENCY_BUCKETS",
    "NULL",
    "RECEIPT_LATENCY",
    "REDIS_DISCONNECTS",
    "REDIS_PUBLISH",
    "REDIS_PUBLISHED",
    "REDIS_PUBLISH_FAILURES",
    "REDIS_RECONNECTS",
    "REDIS_UP",
    "SEND_QUEUE_DEPTH",
    "SEQUENCE_GAPS",
    "SEQUENCE_REPAIRED",
    "SEQUENCE_SKIPPED",
    "SIZE_BUCKETS",
    "SLOW_CONSUMERS",
    "SOCKJS_SESSIONS",
    "connect_outcome",
    "connect_refused",
    "delivered",
    "frame_in",
    "frames_out",
    "make",
    "now",
    "receipt_latency",
    "redis_published",
]

now = time.perf_counter

COMMANDS_IN = ("CONNECT", "SEND", "SUBSCRIBE", "UNSUBSCRIBE", "COMMIT", "DISCONNECT", "ERROR")
COMMANDS_OUT = ("CONNECTED", "MESSAGE", "RECEIPT", "ERROR")
CONNECT_OUTCOMES = (
    "accepted", "unauthorized", "token-invalid", "token-expired", "token-revoked", "rate-limited",
    "too-many-connections", "busy", "other",
)  # fmt: skip
# The session core's events, by class name, as the client's command that produced them.
_EVENT_COMMANDS = {
    "ConnectRequested": "CONNECT",
    "SendRequested": "SEND",
    "SubscribeRequested": "SUBSCRIBE",
    "UnsubscribeRequested": "UNSUBSCRIBE",
    "TransactionCommitted": "COMMIT",
    "DisconnectRequested": "DISCONNECT",
    "ConnectionFailed": "ERROR",
}
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
DEPTH_BUCKETS = (0, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000)
SIZE_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)


class _Null:
    """Stands for a metric or a child when metrics are off."""

    def inc(self, amount: float = 1) -> None: ...
    def dec(self, amount: float = 1) -> None: ...
    def set(self, value: float) -> None: ...
    def observe(self, value: float) -> None: ...
    def labels(self, *values: Any, **named: Any) -> _Null:
        return self


NULL = _Null()
ENABLED: bool = stomp_settings().metrics_enabled


def make(kind: type, name: str, doc: str, labels: tuple[str, ...] = (), **kwargs: Any) -> Any:
    """A metric registered with prometheus-client, or ``NULL`` when metrics are off (also for the project's)."""
    return kind(name, doc, labels, **kwargs) if ENABLED else NULL


# --- STOMP connections and frames ------------------------------------------------------------------------
CONNECTIONS_OPEN = make(Gauge, "chat_connections_open", "Authenticated STOMP connections open, by transport.",
                        ("transport",), multiprocess_mode="livesum")  # fmt: skip
CONNECTS = make(Counter, "chat_stomp_connects_total", "STOMP CONNECT frames by outcome.", ("outcome",))
FRAMES_IN = make(Counter, "chat_stomp_frames_received_total", "STOMP frames received, by command.", ("command",))
FRAMES_OUT = make(Counter, "chat_stomp_frames_sent_total", "STOMP frames sent, by command.", ("command",))
DELIVERIES = make(Counter, "chat_stomp_deliveries_total", "MESSAGE frames queued for subscribers (all processes).")
SEND_QUEUE_DEPTH = make(Histogram, "chat_stomp_send_queue_depth", "Frames waiting in a connection's send queue "
                        "(sampled every METRICS_SAMPLE_INTERVAL per connection).", buckets=DEPTH_BUCKETS)  # fmt: skip
SLOW_CONSUMERS = make(Counter, "chat_stomp_slow_consumer_disconnects_total", "Connections closed as slow consumers.")
SEQUENCE_GAPS = make(Counter, "chat_stomp_sequence_gap_messages_total", "Sequenced messages that never came "
                     "through the bus (their publisher died after its commit), by outcome: recovered from the "
                     "store, or skipped (the store does not have them).", ("outcome",))  # fmt: skip
SEQUENCE_REPAIRED = SEQUENCE_GAPS.labels("recovered")
SEQUENCE_SKIPPED = SEQUENCE_GAPS.labels("skipped")
HEARTBEAT_TIMEOUTS = make(
    Counter, "chat_stomp_heartbeat_timeouts_total", "Connections closed: client heart-beats stopped."
)
RECEIPT_LATENCY = make(Histogram, "chat_stomp_send_receipt_seconds",
                       "From a SEND frame handled to its RECEIPT queued.", buckets=LATENCY_BUCKETS)  # fmt: skip
SOCKJS_SESSIONS = make(Gauge, "chat_sockjs_sessions_open", "SockJS sessions of the STOMP endpoint open, by the "
                       "transport that opened them.", ("transport",), multiprocess_mode="livesum")  # fmt: skip

# --- Broker (Redis bridge) ---------------------------------------------------------------------------------
REDIS_PUBLISH = make(Histogram, "chat_redis_publish_seconds", "One pipelined Redis PUBLISH round trip.",
                     buckets=LATENCY_BUCKETS)  # fmt: skip
REDIS_PUBLISHED = make(Counter, "chat_redis_published_messages_total", "Messages handed to Redis PUBLISH.")
REDIS_PUBLISH_FAILURES = make(Counter, "chat_redis_publish_failures_total", "Messages whose Redis PUBLISH failed.")
REDIS_UP = make(Gauge, "chat_redis_up", "1 while the broker's Redis pub/sub connection (every subscription) is "
                "live, 0 while it reconnects.", multiprocess_mode="livemin")  # fmt: skip
REDIS_RECONNECTS = make(Counter, "chat_redis_reconnects_total", "Times the broker's Redis pub/sub reconnected.")
REDIS_DISCONNECTS = make(Counter, "chat_redis_disconnects_total", "Times the broker lost its Redis pub/sub connection.")

# --- Bound children (no label lookup on the hot path) ---------------------------------------------------------
FRAME_IN_BY_EVENT = {event: FRAMES_IN.labels(command) for event, command in _EVENT_COMMANDS.items()}
FRAME_OUT = {command: FRAMES_OUT.labels(command) for command in COMMANDS_OUT}
FRAME_OUT_MESSAGE = FRAME_OUT["MESSAGE"]
CONNECT_BY_OUTCOME = {outcome: CONNECTS.labels(outcome) for outcome in CONNECT_OUTCOMES}
_FRAME_OUT_BY_PREFIX = {command.encode() + b"\n": child for command, child in FRAME_OUT.items()}


def frame_in(event: object) -> None:
    """Count the client frame behind a session-core event."""
    child = FRAME_IN_BY_EVENT.get(type(event).__name__)
    if child is not None:
        child.inc()


def frames_out(data: bytes) -> None:
    """Count the protocol replies (CONNECTED, RECEIPT, ERROR) in a chunk the session core produced."""
    if not ENABLED:
        return
    for frame in data.split(b"\x00"):
        frame = frame.lstrip(b"\r\n")
        if frame:
            child = _FRAME_OUT_BY_PREFIX.get(frame[: frame.find(b"\n") + 1])
            if child is not None:
                child.inc()


def delivered(count: int) -> None:
    """``count`` subscribers were handed one publication (counted once per publication, not per subscriber)."""
    if count:
        DELIVERIES.inc(count)
        FRAME_OUT_MESSAGE.inc(count)


def connect_outcome(code: str | None) -> None:
    """A CONNECT was accepted (``accepted``) or refused with this ERROR code."""
    CONNECT_BY_OUTCOME.get(code or "other", CONNECT_BY_OUTCOME["other"]).inc()


def connect_refused(event: object, code: str | None) -> None:
    """A frame was refused with ``code``: counted when that frame was the CONNECT."""
    if type(event).__name__ == "ConnectRequested":
        connect_outcome(code)


def receipt_latency(started: float) -> None:
    """A SEND handled from ``started`` (``now()``) to its RECEIPT."""
    RECEIPT_LATENCY.observe(now() - started)


def redis_published(started: float, count: int) -> None:
    """One pipelined PUBLISH of ``count`` messages took from ``started`` (``now()``) until now."""
    REDIS_PUBLISH.observe(now() - started)
    REDIS_PUBLISHED.inc(count)
