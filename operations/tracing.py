"""OpenTelemetry tracing, off unless the standard ``OTEL_*`` variables switch it on (settings.TRACING_ENABLED).

When on, ``install()`` wraps a handful of methods, the way OpenTelemetry's own instrumentations do, so the
code paths carry no tracing calls at all and tracing off costs nothing:

* ``http.request``: every HTTP request (``operations.asgi.Instrumented``);
* ``stomp.CONNECT`` / ``stomp.SEND`` / ``stomp.SUBSCRIBE`` / …: one frame, from its parsing to its reply (a
  SEND's span ends when its RECEIPT is queued), with ``chat.writer.submit`` under a stored SEND and
  ``chat.writer.batch`` (``chat.writer.commit``, ``chat.writer.publish``) under the first SEND of each batch,
  linked to every SEND in it; ``chat.broker.publish`` for a SEND routed straight to the broker;
* ``sse.replay``: a notification stream's replay of what the client missed.

The exporter is the SDK's OTLP/HTTP one configured by ``OTEL_EXPORTER_OTLP_*`` (or the console, for
``OTEL_TRACES_EXPORTER=console``); ``OTEL_SERVICE_NAME`` names the service. Tests pass their own provider.
"""

from __future__ import annotations

import functools
import logging
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Link

logger = logging.getLogger(__name__)
_tracer: trace.Tracer | None = None
_originals: dict[tuple[type, str], Any] = {}
_submits: dict[int, trace.SpanContext] = {}  # id of a unit's first message -> the span of the SEND waiting for it
_batches: dict[int, tuple[Any, Any]] = {}  # id of a batch (list) -> its span and the context it makes current

# Session-core events (by class name) -> span names.
_EVENT_SPANS = {
    "ConnectRequested": "stomp.CONNECT",
    "SendRequested": "stomp.SEND",
    "SubscribeRequested": "stomp.SUBSCRIBE",
    "UnsubscribeRequested": "stomp.UNSUBSCRIBE",
    "TransactionCommitted": "stomp.COMMIT",
}


def enabled() -> bool:
    return _tracer is not None


def configure(*, exporter_name: str) -> None:
    """Install the SDK's provider with the exporter the environment names, then the wrappers."""
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

    provider = TracerProvider(resource=Resource.create({"service.name": "chat-server"}))
    if exporter_name == "console":
        exporter: Any = ConsoleSpanExporter()
    else:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter()
    provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    install(provider)
    logger.info("tracing on: spans go to the %s exporter", exporter_name)


def install(provider: Any) -> None:
    """Wrap the traced methods, with spans from ``provider`` (idempotent; ``uninstall()`` undoes it)."""
    global _tracer
    from chat.writer.writer import ChatWriter
    from notifications.stream import NotificationStreamConsumer
    from stompengine.broker.broker import Broker
    from stompengine.connection import StompConnection

    _tracer = provider.get_tracer("chat-server")
    _wrap(StompConnection, "_handle", _traced_handle)
    _wrap(ChatWriter, "submit", _traced_submit)
    _wrap(ChatWriter, "_start", _traced_start)
    _wrap(ChatWriter, "_stored", _traced_stored)
    _wrap(ChatWriter, "_answer", _traced_answer)
    _wrap(Broker, "publish_frame", _traced_publish_frame)
    _wrap(NotificationStreamConsumer, "replay_and_go_live", _traced_replay)


def uninstall() -> None:
    global _tracer
    for (cls, name), original in _originals.items():
        setattr(cls, name, original)
    _originals.clear()
    _submits.clear()
    _batches.clear()
    _tracer = None


def _wrap(cls: type, name: str, factory: Any) -> None:
    if (cls, name) in _originals:
        return
    original = getattr(cls, name)
    _originals[(cls, name)] = original
    setattr(cls, name, functools.wraps(original)(factory(original)))


def _traced_handle(original: Any) -> Any:
    async def handle(self: Any, event: object) -> None:
        name = _EVENT_SPANS.get(type(event).__name__)
        if name is None or _tracer is None:
            return await original(self, event)
        attributes: dict[str, Any] = {"messaging.system": "stomp", "chat.connection.id": self.session_id}
        destination = getattr(event, "destination", None)
        if destination:
            attributes["messaging.destination.name"] = destination
        if self.user is not None:
            attributes["enduser.id"] = str(self.user.pk)
        with _tracer.start_as_current_span(name, kind=trace.SpanKind.SERVER, attributes=attributes):
            return await original(self, event)

    return handle


def _traced_submit(original: Any) -> Any:
    async def submit(self: Any, unit: Any) -> Any:
        assert _tracer is not None
        with _tracer.start_as_current_span("chat.writer.submit", attributes={"chat.unit.messages": len(unit)}) as span:
            key = id(unit[0]) if unit else 0  # the writer keeps the messages, not the sequence holding them
            _submits[key] = span.get_span_context()
            try:
                return await original(self, unit)
            finally:
                _submits.pop(key, None)

    return submit


def _traced_start(original: Any) -> Any:
    """A batch's span opens when its store starts; its commit runs in a child span, in the writer's thread."""

    def start(self: Any, batch: list[Any]) -> Any:
        if _tracer is None:
            return original(self, batch)
        waiting = [_submits[id(p.unit[0])] for p in batch if p.unit and id(p.unit[0]) in _submits]
        # Explicitly: the writer's task inherited the context of the SEND that happened to start it.
        root = otel_context.Context()
        parent = trace.set_span_in_context(trace.NonRecordingSpan(waiting[0]), root) if waiting else root
        span = _tracer.start_span("chat.writer.batch", context=parent, links=[Link(c) for c in waiting],
                                  attributes={"chat.batch.units": len(batch)})  # fmt: skip
        batch_context = trace.set_span_in_context(span, root)
        _batches[id(batch)] = (span, batch_context)
        store = self._store
        # ``original`` hands the store to the thread at once: swapping the callable around the call is safe
        # even though the previous batch may still be publishing.
        self._store = _in_span("chat.writer.commit", store, batch_context)
        try:
            return original(self, batch)
        finally:
            self._store = store

    return start


def _traced_stored(original: Any) -> Any:
    """A batch the database failed (or whose wait was cancelled) ends its span here."""

    async def stored(self: Any, batch: list[Any], storing: Any) -> Any:
        try:
            results = await original(self, batch, storing)
        except BaseException:
            _end_batch(batch, failed=True)
            raise
        if results is None:
            _end_batch(batch, failed=True)
        return results

    return stored


def _traced_answer(original: Any) -> Any:
    """A committed batch's answers and publish, in a child span of its batch's; then the batch's span ends."""

    def answer(self: Any, batch: list[Any], results: Any) -> Any:
        entry = _batches.get(id(batch))
        if entry is None:
            return original(self, batch, results)
        publish = self._publish
        self._publish = _in_span("chat.writer.publish", publish, entry[1])
        try:
            return original(self, batch, results)
        finally:
            self._publish = publish
            _end_batch(batch, failed=False)

    return answer


def _end_batch(batch: list[Any], *, failed: bool) -> None:
    entry = _batches.pop(id(batch), None)
    if entry is not None:
        if failed:
            entry[0].set_status(trace.Status(trace.StatusCode.ERROR, "the batch was not stored"))
        entry[0].end()


def _in_span(name: str, function: Any, parent: Any) -> Any:
    """``function`` run in a span under ``parent`` (the store runs in the writer's thread: no context there)."""

    def run(*args: Any) -> Any:
        assert _tracer is not None
        with _tracer.start_as_current_span(name, context=parent):
            return function(*args)

    return run


def _traced_publish_frame(original: Any) -> Any:
    def publish_frame(self: Any, key: str, destination: str, *args: Any, **kwargs: Any) -> Any:
        if _tracer is None or not trace.get_current_span().get_span_context().is_valid:
            return original(self, key, destination, *args, **kwargs)  # only inside a traced frame
        with _tracer.start_as_current_span("chat.broker.publish", attributes={"messaging.destination.name": key}):
            return original(self, key, destination, *args, **kwargs)

    return publish_frame


def _traced_replay(original: Any) -> Any:
    async def replay(self: Any, *, user_id: int, after: int | None) -> None:
        assert _tracer is not None
        attributes: dict[str, str | int] = {
            "enduser.id": str(user_id),
            "sse.last_event_id": -1 if after is None else after,
        }
        with _tracer.start_as_current_span("sse.replay", attributes=attributes):
            return await original(self, user_id=user_id, after=after)

    return replay


def http_span(scope: dict[str, Any]) -> Any:
    """A span for one HTTP request (method and path only: the query string may carry a ticket)."""
    assert _tracer is not None
    method = scope.get("method", "GET")
    return _tracer.start_as_current_span(
        f"HTTP {method}", kind=trace.SpanKind.SERVER,
        attributes={"http.request.method": method, "url.path": scope.get("path", "")},
    )  # fmt: skip
