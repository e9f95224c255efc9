"""A connection's three timers: the CONNECT timeout, heart-beats both ways, and the credential's expiry.

The heart-beat arithmetic is the sans-IO ``HeartbeatClock`` (``stompengine.stomp.heartbeat``); this module
only sets timers for its deadlines on a ``Clock``, so a test with a ``ManualClock`` sees every timeout
without sleeping. What happens when a timer fires is the owner's (``KeepaliveOwner``): an ERROR and a
close, or an EOL on the wire.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Protocol

from stompengine.connection.clock import Clock, Timer
from stompengine.stomp.heartbeat import Beat, HeartbeatClock, HeartbeatTerms

logger = logging.getLogger(__name__)


class KeepaliveOwner(Protocol):
    """What the timers act on."""

    def connect_timed_out(self) -> None:
        """No CONNECT arrived in time."""

    def heartbeat_timed_out(self) -> None:
        """The client went silent past the negotiated interval and its grace."""

    def handling_frame(self) -> bool:
        """Whether an earlier frame's handler is still running (the transport's later bytes are not read yet)."""

    def send_heartbeat(self) -> None:
        """Time for an EOL to the client (nothing else was sent lately)."""

    def credential_expired(self) -> None:
        """The principal's ``expires_at`` passed without a re-authentication."""


class Keepalive:
    """The timers of one connection; ``received``/``sent`` feed the heart-beat clock."""

    __slots__ = ("_clock", "_connect", "_expiry", "_heartbeat", "_heartbeats", "_owner", "stopped")

    def __init__(self, owner: KeepaliveOwner, clock: Clock) -> None:
        self._owner = owner
        self._clock = clock
        self._heartbeats: HeartbeatClock | None = None
        self._connect: Timer | None = None
        self._heartbeat: Timer | None = None
        self._expiry: Timer | None = None
        self.stopped = False

    def start_connect_timeout(self, seconds: float) -> None:
        """The transport is up: a CONNECT must arrive within ``seconds``."""
        self._connect = self._clock.call_later(seconds, self._on_connect_timeout)

    def connected(self, terms: HeartbeatTerms, grace: float, expires_at: datetime | None) -> None:
        """CONNECTED went out: stop the CONNECT timeout, start heart-beats (if negotiated) and the expiry."""
        if self._connect is not None:
            self._connect.cancel()
            self._connect = None
        if terms.send_ms or terms.receive_ms:
            self._heartbeats = HeartbeatClock(terms, grace=grace, now=self._clock.time())
            self._schedule_heartbeat()
        self.expire_at(expires_at)

    def expire_at(self, expires_at: datetime | None) -> None:
        """(Re)set the expiry timer to the credential's ``expires_at`` (None: it does not expire)."""
        if self._expiry is not None:
            self._expiry.cancel()
            self._expiry = None
        if expires_at is None or self.stopped:
            return
        remaining = (expires_at - datetime.now(UTC)).total_seconds()
        self._expiry = self._clock.call_later(max(remaining, 0.0), self._on_expired)

    def received(self) -> None:
        """Bytes arrived from the client."""
        if self._heartbeats is not None:
            self._heartbeats.received(self._clock.time())

    def sent(self) -> None:
        """Bytes were written to the client."""
        if self._heartbeats is not None:
            self._heartbeats.sent(self._clock.time())

    def stop(self) -> None:
        """Cancel every timer (the connection is closing)."""
        self.stopped = True
        for timer in (self._heartbeat, self._connect, self._expiry):
            if timer is not None:
                timer.cancel()
        self._heartbeat = self._connect = self._expiry = None

    def _on_connect_timeout(self) -> None:
        self._connect = None
        if not self.stopped:
            self._owner.connect_timed_out()

    def _schedule_heartbeat(self) -> None:
        assert self._heartbeats is not None
        deadline = self._heartbeats.next_deadline()
        if deadline is not None and not self.stopped:
            self._heartbeat = self._clock.call_later(deadline - self._clock.time(), self._on_heartbeat)

    def _on_heartbeat(self) -> None:
        self._heartbeat = None
        if self.stopped or self._heartbeats is None:
            return
        now = self._clock.time()
        beat = self._heartbeats.poll(now)
        if beat is Beat.TIMEOUT:
            if not self._owner.handling_frame():
                self._owner.heartbeat_timed_out()
                return
            # Not silence: the connection itself has not read what arrived since (a SUBSCRIBE waiting on a
            # busy database during a reconnect storm). The client is judged again once it is read.
            self._heartbeats.received(now)
        if beat is Beat.SEND:
            self._heartbeats.sent(now)
            self._owner.send_heartbeat()
        self._schedule_heartbeat()

    def _on_expired(self) -> None:
        self._expiry = None
        if not self.stopped:
            self._owner.credential_expired()
