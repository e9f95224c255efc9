"""Sans-IO STOMP 1.0-1.2: the codec (bytes <-> frames), heart-beats and the server session state machine.

Nothing in this package imports Django, asyncio or sockets (``tests/stomp/test_purity.py`` checks it),
so the same code serves the raw WebSocket consumer, the SockJS transports and the tests.
"""

from stompengine.stomp.codec import FrameParser, encode
from stompengine.stomp.errors import FrameError, ProtocolViolation, StompError
from stompengine.stomp.frames import Escaping, Frame, frame
from stompengine.stomp.session import AckMode, ServerSession, SessionLimits, State

__all__ = [
    "AckMode",
    "Escaping",
    "Frame",
    "FrameError",
    "FrameParser",
    "ProtocolViolation",
    "ServerSession",
    "SessionLimits",
    "State",
    "StompError",
    "encode",
    "frame",
]
