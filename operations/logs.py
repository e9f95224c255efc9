"""Structured logs (``LOG_FORMAT=json``): one JSON object per line, with the real-time context.

``RealtimeContext`` (a logging filter) adds the connection id, user id and destination of the STOMP frame
being handled to every record logged meanwhile; ``install_realtime_context()`` sets them by wrapping two
methods of ``StompConnection`` at start-up, so the connection code carries nothing for it. The redaction
filter (chatproject.logredact) runs before the formatter, so the JSON holds the masked message.
"""

from __future__ import annotations

import contextvars
import datetime as dt
import functools
import json
import logging
from typing import Any

_context: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar("chat_realtime_log", default=None)
_installed = False


class RealtimeContext(logging.Filter):
    """Copies the STOMP connection context onto the record (``connection_id``, ``user_id``, ``destination``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        context = _context.get()
        if context:
            for key, value in context.items():
                setattr(record, key, value)
        return True


class JsonFormatter(logging.Formatter):
    """``{"time", "level", "logger", "process", "message", [connection_id, user_id, destination], [exception]}``."""

    FIELDS = ("connection_id", "user_id", "destination")

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "process": record.process,
            "message": record.getMessage(),
        }
        for field in self.FIELDS:
            value = getattr(record, field, None)
            if value is not None:
                entry[field] = value
        if record.exc_info:
            entry["exception"] = record.exc_text or self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def install_realtime_context() -> None:
    """Make every log line of a STOMP frame's handling carry its connection, user and destination."""
    global _installed
    if _installed:
        return
    from stompengine.connection import StompConnection

    received, handle = StompConnection.data_received, StompConnection._handle

    @functools.wraps(received)
    async def data_received(self: Any, data: bytes) -> None:
        token = _context.set(_connection_context(self))
        try:
            await received(self, data)
        finally:
            _context.reset(token)

    @functools.wraps(handle)
    async def _handle(self: Any, event: object) -> None:
        context = _connection_context(self)
        destination = getattr(event, "destination", None)
        if destination:
            context["destination"] = destination
        token = _context.set(context)
        try:
            await handle(self, event)
        finally:
            _context.reset(token)

    from chat.writer.writer import ChatWriter

    run = ChatWriter._run

    @functools.wraps(run)
    async def _run(self: Any) -> None:
        _context.set(None)  # the writer's task serves every connection, not the one whose SEND started it
        await run(self)

    ChatWriter._run = _run  # type: ignore[method-assign]
    StompConnection.data_received = data_received  # type: ignore[method-assign]
    StompConnection._handle = _handle  # type: ignore[method-assign]
    _installed = True


def _connection_context(connection: Any) -> dict[str, Any]:
    user = getattr(connection, "user", None)
    return {"connection_id": connection.session_id, "user_id": getattr(user, "pk", None)}
