"""STOMP heart-beat negotiation and a sans-IO clock that says when to beat and when a peer went silent.

Time is always passed in (seconds, any monotonic origin); nothing here reads a clock.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum

from stompengine.stomp.errors import ProtocolViolation

_HEARTBEAT = re.compile(r"\s*([0-9]{1,9})\s*,\s*([0-9]{1,9})\s*")


def parse_heartbeat(value: str | None) -> tuple[int, int]:
    """Parse a ``heart-beat`` header (``cx,cy`` in ms); missing means ``0,0``."""
    if value is None:
        return (0, 0)
    match = _HEARTBEAT.fullmatch(value)
    if not match:
        raise ProtocolViolation(f"heart-beat header {value[:40]!r} is not two comma-separated integers")
    return int(match[1]), int(match[2])


@dataclass(frozen=True, slots=True)
class HeartbeatTerms:
    """Negotiated intervals in ms: how often the server sends, how often it expects to receive (0: never)."""

    send_ms: int
    receive_ms: int


def negotiate_heartbeat(client: tuple[int, int], server: tuple[int, int]) -> HeartbeatTerms:
    """Apply the STOMP rule: each direction uses the larger of what one side can and the other wants."""
    client_send, client_receive = client
    server_send, server_receive = server
    send = 0 if server_send == 0 or client_receive == 0 else max(server_send, client_receive)
    receive = 0 if client_send == 0 or server_receive == 0 else max(client_send, server_receive)
    return HeartbeatTerms(send, receive)


class Beat(Enum):
    """What the clock asks the connection to do now."""

    NOTHING = "nothing"
    SEND = "send a heart-beat EOL"
    TIMEOUT = "the peer has been silent too long"


class HeartbeatClock:
    """Tracks traffic in both directions against negotiated terms; poll it at ``next_deadline()``."""

    __slots__ = ("_last_received", "_last_sent", "_receive_window", "_send")

    def __init__(self, terms: HeartbeatTerms, *, grace: float, now: float) -> None:
        self._send = terms.send_ms / 1000.0
        self._receive_window = terms.receive_ms / 1000.0 * grace
        self._last_sent = now
        self._last_received = now

    def received(self, now: float) -> None:
        """Any byte from the peer counts as a heart-beat."""
        self._last_received = now

    def sent(self, now: float) -> None:
        """Any byte to the peer counts as a heart-beat."""
        self._last_sent = now

    def poll(self, now: float) -> Beat:
        """TIMEOUT if the peer is overdue, SEND if we are due to beat, else NOTHING."""
        # The same sums as next_deadline(): polled at that deadline, this answers (``now - last >= interval``
        # can be a rounding error short of it, and the timer would be set again for the same instant).
        if self._receive_window and now >= self._last_received + self._receive_window:
            return Beat.TIMEOUT
        if self._send and now >= self._last_sent + self._send:
            return Beat.SEND
        return Beat.NOTHING

    def next_deadline(self) -> float | None:
        """When ``poll`` may next return something other than NOTHING, or None when neither side beats."""
        deadlines = []
        if self._send:
            deadlines.append(self._last_sent + self._send)
        if self._receive_window:
            deadlines.append(self._last_received + self._receive_window)
        return min(deadlines) if deadlines else None
