"""Tracing (OpenTelemetry SDK, in-memory exporter): a SEND's span tree down to the writer batch; and JSON logs."""

from __future__ import annotations

import io
import json
import logging

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from chat.writer import ChatWriter
from chat.writer.store import UnitResult
from chatproject.logredact import RedactSecrets
from operations import logs, tracing
from stompengine.broker import Broker
from stompengine.connection import StompConnection
from stompengine.realtime.registry import DestinationRegistry
from tests.stomp.fakes import wire
from tests.stomp.test_stomp_connection import open_connection


@pytest.fixture
def spans():
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.install(provider)
    yield exporter
    tracing.uninstall()


@pytest.fixture
def broker():
    return Broker()


def chat_registry(broker: Broker, published: list) -> DestinationRegistry:
    """``/app/say``: through a real ChatWriter (fake store) whose publish goes to the broker's /topic/said."""

    def store(units):
        return [UnitResult(events=(f"event of {unit[0]}",)) for unit in units]

    def publish(events):
        published.extend(events)
        for event in events:
            broker.publish("/topic/said", event)

    writer = ChatWriter(window=0.001, batch_max=10, queue_limit=100, store=store, publish=publish)
    registry = DestinationRegistry()

    async def say(ctx):
        await writer.submit([ctx.body.decode()])

    registry.register_app("/app/say", say)
    return registry


def tree(exporter: InMemorySpanExporter) -> dict[str, str | None]:
    """Span name -> its parent's name."""
    finished = exporter.get_finished_spans()
    names = {span.context.span_id: span.name for span in finished}
    return {span.name: names.get(span.parent.span_id) if span.parent else None for span in finished}


async def test_a_send_produces_its_span_tree_down_to_the_writer_batch_and_the_publish(spans, broker):
    published: list = []
    connection, transport = await open_connection(broker, chat_registry(broker, published))
    await connection.data_received(wire("SUBSCRIBE", id="1", destination="/topic/said"))
    await connection.data_received(wire("SEND", b"hello", destination="/app/say", receipt="r1"))
    await transport.wait_for(lambda: "RECEIPT" in transport.commands(), "the receipt")
    assert published == ["event of hello"]

    parents = tree(spans)
    assert parents["stomp.CONNECT"] is None and parents["stomp.SEND"] is None
    assert parents["chat.writer.submit"] == "stomp.SEND"
    assert parents["chat.writer.batch"] == "chat.writer.submit"
    assert parents["chat.writer.commit"] == "chat.writer.batch"
    assert parents["chat.writer.publish"] == "chat.writer.batch"
    [send] = [s for s in spans.get_finished_spans() if s.name == "stomp.SEND"]
    assert send.attributes["messaging.destination.name"] == "/app/say"
    assert send.attributes["chat.connection.id"] == connection.session_id
    assert send.attributes["enduser.id"] == "1"
    # Everything the SEND waited for ended before it (its RECEIPT is queued when its span ends).
    [batch] = [s for s in spans.get_finished_spans() if s.name == "chat.writer.batch"]
    assert batch.end_time <= send.end_time
    assert [link.context.span_id for link in batch.links] == [
        s.context.span_id for s in spans.get_finished_spans() if s.name == "chat.writer.submit"
    ]


async def test_a_send_to_a_topic_gets_a_broker_publish_span(spans, broker):
    connection, transport = await open_connection(broker, DestinationRegistry())
    await connection.data_received(wire("SEND", b"hi", destination="/topic/x", receipt="r"))
    await transport.wait_for(lambda: "RECEIPT" in transport.commands(), "the receipt")
    assert tree(spans)["chat.broker.publish"] == "stomp.SEND"


async def test_a_refused_connect_is_an_error_span(spans, broker):
    connection, transport = await open_connection(broker, DestinationRegistry(), token=None)
    await connection.data_received(wire("CONNECT", accept_version="1.2", passcode="expired"))
    await transport.wait_for(lambda: transport.closed is not None, "close")
    [connect] = spans.get_finished_spans()
    assert connect.name == "stomp.CONNECT" and not connect.status.is_ok


def test_tracing_is_off_by_default_and_leaves_the_code_unwrapped(settings):
    assert settings.TRACING_ENABLED is False and settings.TRACING_EXPORTER == "none"
    assert not tracing.enabled()
    assert StompConnection._handle.__qualname__ == "StompConnection._handle"


async def test_json_logs_carry_connection_user_and_destination_and_stay_redacted(broker):
    logs.install_realtime_context()
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(logs.RealtimeContext())
    handler.addFilter(RedactSecrets())
    handler.setFormatter(logs.JsonFormatter())
    registry = DestinationRegistry()
    token = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl"

    async def noisy(ctx):
        logging.getLogger("chat.test").warning("handling a SEND with Bearer %s", token)

    registry.register_app("/app/noisy", noisy)
    logger = logging.getLogger("chat.test")
    logger.addHandler(handler)
    try:
        connection, transport = await open_connection(broker, registry)
        await connection.data_received(wire("SEND", b"x", destination="/app/noisy", receipt="r"))
        await transport.wait_for(lambda: "RECEIPT" in transport.commands(), "the receipt")
        logger.warning("outside any frame")
    finally:
        logger.removeHandler(handler)
    inside, outside = (json.loads(line) for line in stream.getvalue().splitlines())
    assert inside["connection_id"] == connection.session_id and inside["user_id"] == 1
    assert inside["destination"] == "/app/noisy" and inside["level"] == "WARNING"
    assert token not in inside["message"] and "[redacted]" in inside["message"]
    assert "connection_id" not in outside and outside["message"] == "outside any frame"
