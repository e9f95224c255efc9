"""Errors of the STOMP codec and session core: one class per violation, each with a short STOMP message."""

from __future__ import annotations


class StompError(Exception):
    """Base of every error raised by ``stompengine.stomp``; ``message`` goes into the ERROR frame's header."""

    message = "protocol error"
    #: Extra ERROR frame headers (e.g. ``version`` when no version could be agreed).
    headers: tuple[tuple[str, str], ...] = ()

    def __init__(self, detail: str = "") -> None:
        super().__init__(detail or self.message)
        self.detail = detail or self.message


class FrameError(StompError):
    """The byte stream is not valid STOMP; the parser cannot go on after it."""

    message = "malformed frame"


class FrameTooLarge(FrameError):
    """A frame (headers and body) is larger than the parser's ``max_frame_size``."""

    message = "frame too large"


class TooManyHeaders(FrameError):
    """A frame has more header lines than ``max_headers``."""

    message = "too many headers"


class HeaderTooLong(FrameError):
    """A header line (or the command line) is longer than ``max_header_length``."""

    message = "header too long"


class InvalidHeader(FrameError):
    """A header line has no colon or an empty name."""

    message = "invalid header"


class InvalidEncoding(FrameError):
    """A command or header is not valid UTF-8."""

    message = "invalid encoding"


class InvalidEscape(FrameError):
    """A header uses a backslash escape the negotiated STOMP version does not define."""

    message = "invalid header escape"


class UnknownCommand(FrameError):
    """The command line names no STOMP command this side accepts."""

    message = "unknown command"


class InvalidContentLength(FrameError):
    """``content-length`` is not a non-negative decimal integer."""

    message = "invalid content-length"


class FrameNotTerminated(FrameError):
    """The byte after a ``content-length`` body is not the NUL that ends the frame."""

    message = "frame not terminated by NUL"


class MalformedFrame(FrameError):
    """Bytes between frames that are neither a heart-beat EOL nor a command."""

    message = "malformed frame"


class ProtocolViolation(StompError):
    """A well-formed frame that is not allowed here (wrong state, missing header, unknown id...)."""

    message = "protocol error"

    def __init__(self, detail: str, *, message: str | None = None, headers: tuple[tuple[str, str], ...] = ()) -> None:
        super().__init__(detail)
        if message is not None:
            self.message = message
        self.headers = headers
