"""Server-sent events framing, sans-IO: values in, bytes out (and a parser for clients and tests).

Follows the WHATWG event-stream format: a field line is ``name: value``; a blank line dispatches the
event; a line starting with ``:`` is a comment (our heart-beat). ``data`` may span lines: each line of
the value becomes its own ``data:`` line (CR LF, CR and LF all end a line), and the client joins them
with LF. ``id`` and ``event`` are single-line by nature, so a line break (or NUL in an id, which
browsers ignore) is refused instead of silently producing a different event.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Every line break the event-stream grammar recognises.
_LINE_BREAK = re.compile(r"\r\n|\r|\n")
UTF8_BOM = b"\xef\xbb\xbf"


class SSEEncodeError(ValueError):
    """A field value that cannot be represented in an event stream."""


@dataclass(frozen=True)
class Event:
    """One event as the client's ``MessageEvent`` sees it (``event`` None means ``message``)."""

    data: str
    event: str | None = None
    id: str | None = None
    retry: int | None = None


def _single_line(name: str, value: str) -> str:
    if "\r" in value or "\n" in value:
        raise SSEEncodeError(f"an SSE {name} cannot contain a line break: {value!r}")
    if name == "id" and "\0" in value:
        raise SSEEncodeError("an SSE id cannot contain NUL (browsers would ignore it)")
    return value


def encode_event(event: Event) -> bytes:
    """The bytes of one event, ending with the blank line that dispatches it."""
    lines: list[str] = []
    if event.id is not None:
        lines.append(f"id: {_single_line('id', event.id)}")
    if event.event is not None:
        if not event.event:
            raise SSEEncodeError("an SSE event name cannot be empty (omit it for 'message')")
        lines.append(f"event: {_single_line('event', event.event)}")
    if event.retry is not None:
        lines.append(encode_retry(event.retry).decode("ascii").rstrip("\n"))
    # "data: " always carries its space, so a value that itself starts with a space keeps it (the
    # parser strips exactly one space after the colon).
    lines.extend(f"data: {line}" for line in _LINE_BREAK.split(event.data))
    return ("\n".join(lines) + "\n\n").encode("utf-8")


def encode_retry(milliseconds: int) -> bytes:
    """A ``retry:`` hint on its own: the reconnection delay the browser should use."""
    if isinstance(milliseconds, bool) or not isinstance(milliseconds, int) or milliseconds < 0:
        raise SSEEncodeError(f"retry must be a non-negative whole number of milliseconds, not {milliseconds!r}")
    return b"retry: %d\n\n" % milliseconds


def encode_comment(text: str = "") -> bytes:
    """A comment (ignored by clients; keeps proxies from closing an idle stream). Multi-line allowed."""
    return ("".join(f":{' ' if line else ''}{line}\n" for line in _LINE_BREAK.split(text)) + "\n").encode("utf-8")


class SSEParser:
    """Incremental event-stream parser with the browser's rules: ``feed(bytes)`` returns finished events.

    Used by the tests, the benchmark and diagnostics. ``Event.id`` is the id field of that event;
    ``last_event_id`` is what a browser would send as ``Last-Event-ID``; ``retry`` the last hint; comments
    (heart-beats) are collected in ``comments``.
    """

    def __init__(self) -> None:
        self._buffer = b""
        self._bom_checked = False
        self._pending_cr = False
        self._data: list[str] = []
        self._event: str | None = None
        self._id: str | None = None
        self.last_event_id = ""
        self.retry: int | None = None
        self.comments: list[str] = []

    def feed(self, chunk: bytes) -> list[Event]:
        data = self._buffer + chunk
        if not self._bom_checked:
            if len(data) < len(UTF8_BOM) and UTF8_BOM.startswith(data):
                self._buffer = data
                return []
            self._bom_checked = True
            data = data.removeprefix(UTF8_BOM)
        events: list[Event] = []
        start = 0
        for i, byte in enumerate(data):
            if self._pending_cr:
                self._pending_cr = False
                if byte == 0x0A:  # the LF of a CR LF: the line already ended at the CR
                    start = i + 1
                    continue
            if byte in (0x0A, 0x0D):
                event = self._line(data[start:i].decode("utf-8", errors="replace"))
                if event is not None:
                    events.append(event)
                self._pending_cr = byte == 0x0D
                start = i + 1
        self._buffer = data[start:]
        return events

    def _line(self, line: str) -> Event | None:
        if line == "":
            return self._dispatch()
        if line.startswith(":"):
            self.comments.append(line[1:].removeprefix(" "))
            return None
        name, colon, value = line.partition(":")
        if colon:
            value = value.removeprefix(" ")
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id":
            if "\0" not in value:
                self._id = value
                self.last_event_id = value
        elif name == "retry" and value.isascii() and value.isdigit():
            self.retry = int(value)
        return None

    def _dispatch(self) -> Event | None:
        data, event, event_id = self._data, self._event, self._id
        self._data, self._event, self._id = [], None, None
        if not data:  # browsers dispatch nothing for an event without data
            return None
        return Event(data="\n".join(data), event=event or None, id=event_id)
