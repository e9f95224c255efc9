"""Every Prometheus metric of the server, defined once; call sites use the pre-bound children below.

Several daphne workers each write their values to ``PROMETHEUS_MULTIPROC_DIR`` (prometheus-client's
multiprocess mode) and any one of them answers ``/metrics`` with the sum over all (``operations.views``).
Labels are bounded: transports, STOMP commands and refusal codes from fixed lists, never a user or a room.
With ``METRICS_ENABLED=0`` every name here is a no-op object, so the hooks cost one attribute call.
"""

from __future__ import annotations

import time
from typing import Any

from django.conf import settings
from prometheus_client import Counter, Gauge, Histogram

now = time.perf_counter

COMMANDS_IN = ("CONNECT", "SEND", "SUBSCRIBE", "UNSUBSCRIBE", "COMMIT", "DISCONNECT", "ERROR")
COMMANDS_OUT = ("CONNECTED", "MESSAGE", "RECEIPT", "ERROR")
CONNECT_OUTCOMES = (
    "accepted", "unauthorized", "token-invalid", "token-expired", "token-revoked", "rate-limited",
    "too-many-connections", "other",
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
ENABLED: bool = settings.METRICS_ENABLED


def _make(kind: type, name: str, doc: str, labels: tuple[str, ...] = (), **kwargs: Any) -> Any:
    return kind(name, doc, labels, **kwargs) if ENABLED else NULL


# --- STOMP connections and frames ------------------------------------------------------------------------
CONNECTIONS_OPEN = _make(Gauge, "chat_connections_open", "Authenticated STOMP connections open, by transport.",
                         ("transport",), multiprocess_mode="livesum")  # fmt: skip
CONNECTS = _make(Counter, "chat_stomp_connects_total", "STOMP CONNECT frames by outcome.", ("outcome",))
FRAMES_IN = _make(Counter, "chat_stomp_frames_received_total", "STOMP frames received, by command.", ("command",))
FRAMES_OUT = _make(Counter, "chat_stomp_frames_sent_total", "STOMP frames sent, by command.", ("command",))
DELIVERIES = _make(Counter, "chat_stomp_deliveries_total", "MESSAGE frames queued for subscribers (all processes).")
SEND_QUEUE_DEPTH = _make(Histogram, "chat_stomp_send_queue_depth", "Frames waiting in a connection's send queue "
                         "(sampled every METRICS_SAMPLE_INTERVAL per connection).", buckets=DEPTH_BUCKETS)  # fmt: skip
SLOW_CONSUMERS = _make(Counter, "chat_stomp_slow_consumer_disconnects_total", "Connections closed as slow consumers.")
HEARTBEAT_TIMEOUTS = _make(
    Counter, "chat_stomp_heartbeat_timeouts_total", "Connections closed: client heart-beats stopped."
)
RECEIPT_LATENCY = _make(Histogram, "chat_stomp_send_receipt_seconds",
                        "From a SEND frame handled to its RECEIPT queued.", buckets=LATENCY_BUCKETS)  # fmt: skip
SOCKJS_SESSIONS = _make(Gauge, "chat_sockjs_sessions_open", "SockJS sessions of the STOMP endpoint open, by the "
                        "transport that opened them.", ("transport",), multiprocess_mode="livesum")  # fmt: skip

# --- Write path and broker ---------------------------------------------------------------------------------
WRITER_BATCH_SIZE = _make(Histogram, "chat_writer_batch_units", "Units (SENDs or transactions) per chat write batch.",
                          buckets=SIZE_BUCKETS)  # fmt: skip
WRITER_COMMIT = _make(Histogram, "chat_writer_commit_seconds", "Time to store one chat write batch (one transaction).",
                      buckets=LATENCY_BUCKETS)  # fmt: skip
WRITER_FAILURES = _make(Counter, "chat_writer_batch_failures_total", "Chat write batches the database failed.")
REDIS_PUBLISH = _make(Histogram, "chat_redis_publish_seconds", "One pipelined Redis PUBLISH round trip.",
                      buckets=LATENCY_BUCKETS)  # fmt: skip
REDIS_PUBLISHED = _make(Counter, "chat_redis_published_messages_total", "Messages handed to Redis PUBLISH.")
REDIS_PUBLISH_FAILURES = _make(Counter, "chat_redis_publish_failures_total", "Messages whose Redis PUBLISH failed.")
REDIS_UP = _make(Gauge, "chat_redis_up", "1 while the broker's Redis pub/sub connection (every subscription) is "
                 "live, 0 while it reconnects.", multiprocess_mode="livemin")  # fmt: skip
DRAINING = _make(Gauge, "chat_worker_draining", "1 once the worker got SIGTERM and is closing its connections.",
                 multiprocess_mode="livemax")  # fmt: skip
REDIS_RECONNECTS = _make(Counter, "chat_redis_reconnects_total", "Times the broker's Redis pub/sub reconnected.")
REDIS_DISCONNECTS = _make(
    Counter, "chat_redis_disconnects_total", "Times the broker lost its Redis pub/sub connection."
)

# --- Notifications -----------------------------------------------------------------------------------------
SSE_STREAMS = _make(Gauge, "notifications_sse_streams_open", "Server-sent event streams open.",
                    multiprocess_mode="livesum")  # fmt: skip
SSE_EVENTS = _make(Counter, "notifications_sse_events_sent_total", "Events written to SSE streams (live and replayed).")
SSE_REPLAYS = _make(Counter, "notifications_sse_replays_total", "Last-Event-ID replays served.")
SSE_REPLAY_EVENTS = _make(Histogram, "notifications_sse_replay_events", "Events per SSE replay.", buckets=SIZE_BUCKETS)
NOTIFICATIONS = _make(Counter, "notifications_created_total", "Notifications stored.")
TICKETS = _make(Counter, "notifications_tickets_total", "SSE stream tickets, by outcome.", ("outcome",))

# --- Process ------------------------------------------------------------------------------------------------
RSS = _make(Gauge, "chat_process_resident_memory_bytes", "Resident memory of each server process.",
            multiprocess_mode="liveall")  # fmt: skip
LOOP_LAG = _make(Histogram, "chat_event_loop_lag_seconds", "How late the sampler's timer fired: event-loop lag.",
                 buckets=LATENCY_BUCKETS)  # fmt: skip

# --- Bound children (no label lookup on the hot path) ---------------------------------------------------------
FRAME_IN_BY_EVENT = {event: FRAMES_IN.labels(command) for event, command in _EVENT_COMMANDS.items()}
FRAME_OUT = {command: FRAMES_OUT.labels(command) for command in COMMANDS_OUT}
FRAME_OUT_MESSAGE = FRAME_OUT["MESSAGE"]
CONNECT_BY_OUTCOME = {outcome: CONNECTS.labels(outcome) for outcome in CONNECT_OUTCOMES}
TICKET_BY_OUTCOME = {outcome: TICKETS.labels(outcome) for outcome in ("issued", "refused", "redeemed", "rejected")}
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


def timed_store(store: Any) -> Any:
    """Wrap a chat writer's ``store(units)`` to record batch size and commit time."""
    if not ENABLED:
        return store

    def timed(units: Any) -> Any:
        started = now()
        try:
            return store(units)
        except BaseException:
            WRITER_FAILURES.inc()
            raise
        finally:
            WRITER_BATCH_SIZE.observe(len(units))
            WRITER_COMMIT.observe(now() - started)

    return timed


def redis_published(started: float, count: int) -> None:
    """One pipelined PUBLISH of ``count`` messages took from ``started`` (``now()``) until now."""
    REDIS_PUBLISH.observe(now() - started)
    REDIS_PUBLISHED.inc(count)


def sse_replayed(after: int | None, events: int) -> None:
    """A stream went live; with a Last-Event-ID (``after``) it was a replay of ``events`` events."""
    if after is not None:
        SSE_REPLAYS.inc()
        SSE_REPLAY_EVENTS.observe(events)
