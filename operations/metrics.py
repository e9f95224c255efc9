"""Every Prometheus metric of the server: the engine's (``stompengine.metrics``, re-exported) and the project's.

Several daphne workers each write their values to ``PROMETHEUS_MULTIPROC_DIR`` (prometheus-client's
multiprocess mode) and any one of them answers ``/metrics`` with the sum over all (``operations.views``).
Labels are bounded: transports, STOMP commands and refusal codes from fixed lists, never a user or a room.
With ``METRICS_ENABLED=0`` every name here is a no-op object, so the hooks cost one attribute call.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import Counter, Gauge, Histogram

# The engine's metrics, under the names the project's code and tests have always used.
from stompengine.metrics import *  # noqa: F403
from stompengine.metrics import ENABLED, LATENCY_BUCKETS, SIZE_BUCKETS, now
from stompengine.metrics import make as _make

# --- Write path and process state ------------------------------------------------------------------------
WRITER_BATCH_SIZE = _make(Histogram, "chat_writer_batch_units", "Units (SENDs or transactions) per chat write batch.",
                          buckets=SIZE_BUCKETS)  # fmt: skip
WRITER_COMMIT = _make(Histogram, "chat_writer_commit_seconds", "Time to store one chat write batch (one transaction).",
                      buckets=LATENCY_BUCKETS)  # fmt: skip
WRITER_PHASE = _make(Histogram, "chat_writer_phase_seconds", "Time of each phase of a chat write batch: lock (the "
                     "room locks and the batch's state read), build (the writer's Python), commit (the rows and the "
                     "COMMIT).", ("phase",), buckets=LATENCY_BUCKETS)  # fmt: skip
WRITER_PHASES = {phase: WRITER_PHASE.labels(phase) for phase in ("lock", "build", "commit")}
WRITER_FAILURES = _make(Counter, "chat_writer_batch_failures_total", "Chat write batches the database failed.")
DRAINING = _make(Gauge, "chat_worker_draining", "1 once the worker got SIGTERM and is closing its connections.",
                 multiprocess_mode="livemax")  # fmt: skip

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
GC_PAUSES = _make(Histogram, "chat_gc_pause_seconds", "Garbage collections (every thread of the process waits), "
                  "by generation.", ("generation",), buckets=LATENCY_BUCKETS)  # fmt: skip

TICKET_BY_OUTCOME = {outcome: TICKETS.labels(outcome) for outcome in ("issued", "refused", "redeemed", "rejected")}


_gc_started = 0.0


def _gc_timed(phase: str, info: dict[str, int]) -> None:
    global _gc_started
    if phase == "start":
        _gc_started = now()
    else:  # collections never overlap (the GIL), so the last start is this one's
        GC_PAUSES.labels(str(info["generation"])).observe(now() - _gc_started)


def gc_pauses_observed() -> None:
    """Time every garbage collection of this process (``chat_gc_pause_seconds``); idempotent. A full collection
    over a large heap stops the event loop for tens of ms or more (chatproject/gctune.py): this shows it."""
    import gc

    if ENABLED and _gc_timed not in gc.callbacks:
        gc.callbacks.append(_gc_timed)


def timed_store(store: Any) -> Any:
    """Wrap a chat writer's ``store(units)`` to record batch size and commit time."""
    if not ENABLED:
        return store

    def timed(units: Any) -> Any:
        started = now()
        failed = True
        try:
            result = store(units)
            failed = False
            return result
        finally:
            writer_batch(len(units), now() - started, failed=failed)

    return timed


def writer_batch(units: int, seconds: float, *, failed: bool) -> None:
    """One chat write batch of ``units`` stored (or failed by the database) in ``seconds``."""
    if failed:
        WRITER_FAILURES.inc()
    WRITER_BATCH_SIZE.observe(units)
    WRITER_COMMIT.observe(seconds)


_phases: dict[str, Any] = {"deferred": False, "last": None}


def writer_phases(lock: float, build: float, commit: float) -> None:
    """One stored chat write batch's phases (``chat_writer_phase_seconds``), in seconds. In the writer's own
    process (``defer_writer_phases``) they are only kept, for the server to record (``last_writer_phases``)."""
    _phases["last"] = (lock, build, commit)
    if _phases["deferred"]:
        return
    WRITER_PHASES["lock"].observe(lock)
    WRITER_PHASES["build"].observe(build)
    WRITER_PHASES["commit"].observe(commit)


def defer_writer_phases() -> None:
    """This process stores batches for a server process, which records their metrics (chat/writer/process.py)."""
    _phases["deferred"] = True


def last_writer_phases() -> tuple[float, float, float] | None:
    """The phases of the batch stored last in this process (None before the first, or after a failed one)."""
    last, _phases["last"] = _phases["last"], None
    return last


def sse_replayed(after: int | None, events: int) -> None:
    """A stream went live; with a Last-Event-ID (``after``) it was a replay of ``events`` events."""
    if after is not None:
        SSE_REPLAYS.inc()
        SSE_REPLAY_EVENTS.observe(events)
