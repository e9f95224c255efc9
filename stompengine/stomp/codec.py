"""Sans-IO STOMP codec: an incremental parser (bytes in any chunking -> frames) and the encoder.

The parser never touches a socket: ``receive_data(bytes)`` buffers, ``next_frame()`` returns one frame or
None when it needs more bytes. Feeding one byte at a time yields the same frames, and the same error,
as feeding everything at once: every limit is checked as if the bytes arrived one by one, and the
first limit a byte stream would cross is the one reported.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from enum import Enum

from stompengine.conf import DEFAULTS
from stompengine.stomp.errors import (
    FrameError,
    FrameNotTerminated,
    FrameTooLarge,
    HeaderTooLong,
    InvalidContentLength,
    InvalidEncoding,
    InvalidEscape,
    InvalidHeader,
    MalformedFrame,
    TooManyHeaders,
    UnknownCommand,
)
from stompengine.stomp.frames import ALL_COMMANDS, UNESCAPED_COMMANDS, Escaping, Frame, Headers

# The engine's defaults (stompengine.conf, a module with no I/O), so the codec and the settings agree.
DEFAULT_MAX_FRAME_SIZE = DEFAULTS.max_frame_size
DEFAULT_MAX_HEADERS = DEFAULTS.max_headers
DEFAULT_MAX_HEADER_LENGTH = DEFAULTS.max_header_length
HEARTBEAT = b"\n"

_CONTENT_LENGTH = re.compile(rb"[0-9]{1,12}")
_UNESCAPES = {
    Escaping.V12: {"r": "\r", "n": "\n", "c": ":", "\\": "\\"},
    Escaping.V11: {"n": "\n", "c": ":", "\\": "\\"},
}
_ESCAPE_V12 = str.maketrans({"\\": "\\\\", "\r": "\\r", "\n": "\\n", ":": "\\c"})
# 1.1 cannot express a carriage return; 1.0 cannot express anything: replace rather than corrupt framing.
_ESCAPE_V11 = str.maketrans({"\\": "\\\\", "\r": " ", "\n": "\\n", ":": "\\c"})
_SANITIZE_V10_VALUE = str.maketrans({"\r": " ", "\n": " "})
_SANITIZE_V10_KEY = str.maketrans({"\r": " ", "\n": " ", ":": "_"})
_SANITIZE_RAW = _SANITIZE_V10_VALUE  # CONNECT/CONNECTED: no escaping in any version


def unescape(text: str, escaping: Escaping) -> str:
    """Undo header escaping; an escape the version does not define raises InvalidEscape."""
    if escaping is Escaping.NONE or "\\" not in text:
        return text
    table = _UNESCAPES[escaping]
    out: list[str] = []
    i = 0
    n = len(text)
    while i < n:
        ch = text[i]
        if ch != "\\":
            out.append(ch)
            i += 1
            continue
        if i + 1 >= n:
            raise InvalidEscape("a header ends with a lone backslash")
        replacement = table.get(text[i + 1])
        if replacement is None:
            raise InvalidEscape(f"undefined escape sequence \\{text[i + 1]} in a header")
        out.append(replacement)
        i += 2
    return "".join(out)


def escape(text: str, escaping: Escaping) -> str:
    """Escape a header name or value for the given version (1.0 cannot escape, so it sanitizes)."""
    if escaping is Escaping.V12:
        return text.translate(_ESCAPE_V12)
    if escaping is Escaping.V11:
        return text.translate(_ESCAPE_V11)
    return text.translate(_SANITIZE_V10_VALUE)


def encode_headers(command: str, headers: Iterable[tuple[str, str]], escaping: Escaping = Escaping.V12) -> bytes:
    """Encode header lines (each ending in LF), without the blank line that ends the block."""
    headers = headers if isinstance(headers, tuple | list) else tuple(headers)
    text = "".join([f"{key}:{value}\n" for key, value in headers])
    count = len(headers)
    if text.count(":") == count and text.count("\n") == count and "\\" not in text and "\r" not in text:
        return text.encode("utf-8")  # nothing any version escapes or sanitizes: the common case, in one pass
    parts: list[str] = []
    if command in UNESCAPED_COMMANDS or escaping is Escaping.NONE:
        for key, value in headers:
            parts.append(f"{key.translate(_SANITIZE_V10_KEY)}:{value.translate(_SANITIZE_RAW)}\n")
    else:
        table = _ESCAPE_V12 if escaping is Escaping.V12 else _ESCAPE_V11
        for key, value in headers:
            parts.append(f"{key.translate(table)}:{value.translate(table)}\n")
    return "".join(parts).encode("utf-8")


def encode(frame: Frame, escaping: Escaping = Escaping.V12) -> bytes:
    """Encode a frame exactly as given (no headers added); bodies with NUL need a content-length."""
    return b"".join(
        (
            frame.command.encode("ascii"),
            b"\n",
            encode_headers(frame.command, frame.headers, escaping),
            b"\n",
            frame.body,
            b"\0",
        )
    )


def encode_message_tail(headers: Headers, body: bytes, escaping: Escaping = Escaping.V12) -> bytes:
    """The shared part of a MESSAGE frame: its headers, ``content-length``, the blank line, body and NUL.

    The broker encodes this once per published message; each subscriber's frame is
    ``message_prefix(...) + ack line + tail`` (see ``splice_message``).
    """
    return b"".join(
        (
            encode_headers("MESSAGE", headers, escaping),
            b"content-length:",
            str(len(body)).encode(),
            b"\n\n",
            body,
            b"\0",
        )
    )


def message_prefix(subscription_id: str, escaping: Escaping = Escaping.V12) -> bytes:
    """The per-subscription start of a MESSAGE frame: command line and ``subscription`` header."""
    return b"MESSAGE\n" + encode_headers("MESSAGE", (("subscription", subscription_id),), escaping)


def ack_line(ack_id: str) -> bytes:
    """The ``ack`` header line of a MESSAGE frame (STOMP 1.2, client ack modes)."""
    return b"ack:" + ack_id.encode("utf-8") + b"\n"


def splice_message(prefix: bytes, tail: bytes, ack: bytes = b"") -> bytes:
    """A subscriber's MESSAGE frame from its prefix, optional ack line and the shared tail."""
    return prefix + ack + tail if ack else prefix + tail


class _Stage(Enum):
    IDLE = "between frames"
    COMMAND = "reading the command line"
    HEADERS = "reading headers"
    BODY = "reading the body"


class FrameParser:
    """Incremental STOMP parser: ``receive_data`` then ``next_frame`` until it returns None.

    After a FrameError the parser is poisoned: every later call raises the same error, since STOMP
    has no way to resynchronise a stream.
    """

    # One parser per connection: slots keep an idle connection's parser small.
    __slots__ = ("_buf", "_command", "_content_length", "_error", "_frame_bytes", "_headers", "_pos", "_scan",
                 "_stage", "commands", "escaping", "max_frame_size", "max_header_length", "max_headers")  # fmt: skip

    def __init__(
        self,
        *,
        max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
        max_headers: int = DEFAULT_MAX_HEADERS,
        max_header_length: int = DEFAULT_MAX_HEADER_LENGTH,
        commands: frozenset[str] = ALL_COMMANDS,
        escaping: Escaping = Escaping.V12,
    ) -> None:
        self.max_frame_size = max_frame_size
        self.max_headers = max_headers
        self.max_header_length = max_header_length
        self.commands = commands
        #: Header unescaping for frames parsed from now on; the session sets it after CONNECT.
        self.escaping = escaping
        self._buf = bytearray()
        self._pos = 0
        self._stage = _Stage.IDLE
        self._scan = 0  # where the search for LF or NUL resumes, so byte-at-a-time input stays linear
        self._frame_bytes = 0
        self._command = ""
        self._headers: list[tuple[str, str]] = []
        self._content_length: int | None = None
        self._error: FrameError | None = None

    @property
    def buffered(self) -> int:
        """Bytes received and not yet returned as frames."""
        return len(self._buf) - self._pos

    def receive_data(self, data: bytes) -> None:
        """Buffer bytes from the transport; parse them with ``next_frame``."""
        if self._error is not None:
            raise self._error
        self._buf += data

    def feed(self, data: bytes) -> list[Frame]:
        """Buffer ``data`` and return every frame now complete."""
        self.receive_data(data)
        frames = []
        while (parsed := self.next_frame()) is not None:
            frames.append(parsed)
        return frames

    def next_frame(self) -> Frame | None:
        """The next complete frame, or None until more bytes arrive; raises a FrameError subclass."""
        if self._error is not None:
            raise self._error
        try:
            result = self._parse()
        except FrameError as exc:
            self._error = exc
            raise
        if result is None and self._pos:
            del self._buf[: self._pos]
            self._scan -= self._pos
            self._pos = 0
        return result

    # -- parsing ---------------------------------------------------------------------------------------
    def _parse(self) -> Frame | None:
        buf = self._buf
        while True:
            if self._stage is _Stage.IDLE:
                if not self._skip_heartbeats():
                    return None
                self._stage = _Stage.COMMAND
                self._frame_bytes = 0
                self._scan = self._pos
            if self._stage is _Stage.COMMAND and self._frame_bytes == 0 and self._take_header_block():
                self._content_length = self._read_content_length()
                self._stage = _Stage.BODY
                self._scan = self._pos
            if self._stage is _Stage.COMMAND:
                line = self._take_line()
                if line is None:
                    return None
                try:
                    command = line.decode("ascii")
                except UnicodeDecodeError:
                    raise UnknownCommand("the command line is not ASCII") from None
                if command not in self.commands:
                    raise UnknownCommand(f"unknown command {command[:40]!r}")
                self._command = command
                self._headers = []
                self._stage = _Stage.HEADERS
            if self._stage is _Stage.HEADERS:
                while True:
                    line = self._take_line()
                    if line is None:
                        return None
                    if not line:
                        break
                    if len(self._headers) >= self.max_headers:
                        raise TooManyHeaders(f"more than {self.max_headers} headers")
                    self._headers.append(self._parse_header(line))
                self._content_length = self._read_content_length()
                self._stage = _Stage.BODY
                self._scan = self._pos
            # _Stage.BODY
            end = len(buf)
            length = self._content_length
            if length is not None:
                if end - self._pos < length + 1:
                    return None
                if buf[self._pos + length] != 0:
                    raise FrameNotTerminated(f"no NUL after the {length} body bytes that content-length announced")
                body = bytes(buf[self._pos : self._pos + length])
                self._pos += length + 1
            else:
                nul = buf.find(0, self._scan)
                if nul < 0:
                    available = end - self._pos
                    if self._frame_bytes + available + 1 > self.max_frame_size:
                        raise FrameTooLarge(f"frame larger than {self.max_frame_size} bytes")
                    self._scan = end
                    return None
                if self._frame_bytes + (nul - self._pos) + 1 > self.max_frame_size:
                    raise FrameTooLarge(f"frame larger than {self.max_frame_size} bytes")
                body = bytes(buf[self._pos : nul])
                self._pos = nul + 1
            self._stage = _Stage.IDLE
            headers = tuple(self._headers)
            self._headers = []  # an idle connection should not keep its last frame's headers alive
            return Frame(self._command, headers, body)

    def _take_header_block(self) -> bool:
        """The fast path: command line and headers already buffered, LF-only, within every limit: parse at once.

        Only blocks that cannot cross a limit (line length, frame size, header count) take it, and their
        lines are parsed in order with the same checks, so the frames and errors are the slow path's.
        """
        buf = self._buf
        start = self._pos
        end = buf.find(b"\n\n", start, start + self.max_header_length + 2)
        if end < 0 or end - start > self.max_header_length or end + 2 - start > self.max_frame_size:
            return False
        block = bytes(buf[start:end])
        if b"\r" in block:
            return False
        lines = block.split(b"\n")
        if len(lines) - 1 > self.max_headers:
            return False
        try:
            command = lines[0].decode("ascii")
        except UnicodeDecodeError:
            raise UnknownCommand("the command line is not ASCII") from None
        if command not in self.commands:
            raise UnknownCommand(f"unknown command {command[:40]!r}")
        self._command = command
        parse = self._parse_header
        self._headers = [parse(line) for line in lines[1:]]
        self._frame_bytes = end + 2 - start
        self._pos = end + 2
        return True

    def _skip_heartbeats(self) -> bool:
        """Consume EOLs between frames; True when a frame starts at ``_pos``."""
        buf = self._buf
        end = len(buf)
        pos = self._pos
        while pos < end:
            byte = buf[pos]
            if byte == 10:
                pos += 1
            elif byte == 13:
                if pos + 1 >= end:
                    break
                if buf[pos + 1] != 10:
                    raise MalformedFrame("a carriage return between frames is not followed by a line feed")
                pos += 2
            else:
                self._pos = pos
                return True
        self._pos = pos
        return False

    def _take_line(self) -> bytes | None:
        """The next LF-terminated line without its EOL, or None; enforces the size limits."""
        buf = self._buf
        start = self._pos
        newline = buf.find(b"\n", self._scan)
        if self._stage is _Stage.COMMAND:
            # A NUL ends a frame, so one before the command's EOL means the frame has no command line
            # (``\x01\x02 not a frame\x00``): refuse it now rather than wait for an LF that never comes.
            nul = buf.find(0, self._scan, len(buf) if newline < 0 else newline)
            if nul >= 0:
                raise MalformedFrame("a NUL before the end of the command line")
        if newline < 0:
            available = len(buf) - start
            self._check_line(available, complete=False)
            self._scan = len(buf)
            return None
        length = newline - start
        self._check_line(length, complete=True)
        self._frame_bytes += length + 1
        self._pos = newline + 1
        self._scan = self._pos
        line = bytes(buf[start:newline])
        return line[:-1] if line.endswith(b"\r") else line

    def _check_line(self, length: int, *, complete: bool) -> None:
        # As if the line arrived byte by byte: which limit would the first offending byte cross?
        # Byte k of the line (1-based) makes the frame too large when frame_bytes + k > max_frame_size,
        # and the line too long when k > max_header_length; the LF is byte length + 1.
        too_large_at = self.max_frame_size - self._frame_bytes + 1
        too_long_at = self.max_header_length + 1
        seen = length + 1 if complete else length
        large = too_large_at <= seen
        long = too_long_at <= length
        if large and (not long or too_large_at <= too_long_at):
            raise FrameTooLarge(f"frame larger than {self.max_frame_size} bytes")
        if long:
            raise HeaderTooLong(f"a header line is longer than {self.max_header_length} bytes")

    def _parse_header(self, line: bytes) -> tuple[str, str]:
        if b"\0" in line:
            # A NUL ends a frame on the wire: relayed in a header, it would let clients that split frames on
            # NUL parse a forged frame out of someone else's message.
            raise InvalidHeader("a header contains a NUL byte")
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidEncoding("a header is not valid UTF-8") from None
        key, sep, value = text.partition(":")
        if not sep or not key:
            raise InvalidHeader(f"header line without a name and colon: {text[:40]!r}")
        if self._command in UNESCAPED_COMMANDS:
            return key, value
        return unescape(key, self.escaping), unescape(value, self.escaping)

    def _read_content_length(self) -> int | None:
        raw = None
        for key, value in self._headers:
            if key == "content-length":
                raw = value
                break
        if raw is None:
            return None
        encoded = raw.strip().encode("ascii", "replace")
        if not _CONTENT_LENGTH.fullmatch(encoded):
            raise InvalidContentLength(f"content-length {raw[:20]!r} is not a byte count")
        length = int(encoded)
        if self._frame_bytes + length + 1 > self.max_frame_size:
            raise FrameTooLarge(f"content-length {length} makes the frame larger than {self.max_frame_size} bytes")
        return length
