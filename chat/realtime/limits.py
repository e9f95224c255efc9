"""Abuse limits of the STOMP endpoint that the codec cannot see: body size, connections per user, SEND rate.

The codec and session core already bound what one frame and one session may hold (frame size, header
count and length, subscriptions, transactions, pending ACKs). This module adds the limits that need
the application's view, each a setting (see ``SendLimits.from_settings``):

- ``STOMP_MAX_BODY_SIZE``: a SEND whose body is larger is refused on ``/user/queue/errors``
  (code ``too-large``, no RECEIPT); the connection stays, as for any other mistake of the user.
- ``STOMP_MAX_CONNECTIONS_PER_USER``: live connections of one user in one worker process; one more
  CONNECT gets ``ERROR`` (code ``too-many-connections``) and is closed. Per process, because a count
  shared through Redis would outlive a worker that was killed; with N workers a user may hold N times it.
- ``STOMP_SEND_RATE`` / ``STOMP_SEND_BURST``: a token bucket per connection; each SEND (each SEND of a
  committed transaction) takes one token. A SEND without a token is refused on ``/user/queue/errors``
  (code ``rate-limited``, no RECEIPT). Refusals are strikes that drain at the same pace tokens refill;
  at ``STOMP_SEND_ABUSE_LIMIT`` strikes (a client that keeps sending at several times the rate) the
  connection gets ``ERROR`` (code ``rate-limited``) and is closed.

Everything here is plain bookkeeping with an explicit clock (``now`` from the event loop), so it is
tested without a server.
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass
from typing import Any

from chat.realtime.registry import Denied, Rejected


@dataclass(frozen=True)
class SendLimits:
    """The limits of one process, read from settings once; 0 turns a limit off."""

    max_body_size: int = 32 * 1024
    max_connections_per_user: int = 1000
    send_rate: float = 500.0
    send_burst: int = 1000
    abuse_limit: int = 1000

    @classmethod
    def from_settings(cls) -> SendLimits:
        """Build from the STOMP_* settings."""
        from django.conf import settings

        return cls(
            max_body_size=settings.STOMP_MAX_BODY_SIZE,
            max_connections_per_user=settings.STOMP_MAX_CONNECTIONS_PER_USER,
            send_rate=settings.STOMP_SEND_RATE,
            send_burst=settings.STOMP_SEND_BURST,
            abuse_limit=settings.STOMP_SEND_ABUSE_LIMIT,
        )


class TokenBucket:
    """``rate`` tokens per second up to ``burst``; ``take(now)`` spends one if there is one."""

    __slots__ = ("burst", "rate", "tokens", "updated")

    def __init__(self, rate: float, burst: int, now: float) -> None:
        self.rate = rate
        self.burst = float(max(burst, 1))
        self.tokens = self.burst
        self.updated = now

    def take(self, now: float, cost: float = 1.0) -> bool:
        """Spend ``cost`` tokens; False (and nothing spent) when there are not enough."""
        self._refill(now)
        if self.tokens >= cost:
            self.tokens -= cost
            return True
        return False

    def _refill(self, now: float) -> None:
        elapsed = now - self.updated
        if elapsed > 0:
            self.tokens = min(self.burst, self.tokens + elapsed * self.rate)
        self.updated = now


class SendGate:
    """One connection's SEND admission: body size, then the token bucket, then the strike count."""

    __slots__ = ("_bucket", "_limits", "_strikes", "_strikes_at", "refused")

    def __init__(self, limits: SendLimits, now: float) -> None:
        self._limits = limits
        self._bucket = TokenBucket(limits.send_rate, limits.send_burst, now) if limits.send_rate > 0 else None
        self._strikes = 0.0
        self._strikes_at = now
        self.refused = 0

    def admit(self, bodies: list[bytes], now: float) -> None:
        """Let these SENDs (one frame, or a committed transaction's) through, or raise Rejected/Denied."""
        limit = self._limits.max_body_size
        if limit:
            for body in bodies:
                if len(body) > limit:
                    self.refused += 1
                    raise Rejected(f"the message body is {len(body)} bytes; at most {limit} are allowed",
                                   code="too-large")  # fmt: skip
        bucket = self._bucket
        if bucket is None or bucket.take(now, len(bodies)):
            return
        self.refused += 1
        self._strike(now, len(bodies))
        raise Rejected(
            f"more than {self._limits.send_rate:g} messages per second (bursts of {self._limits.send_burst}): "
            "slow down; this message was not sent",
            code="rate-limited",
        )

    def _strike(self, now: float, count: int) -> None:
        # Strikes drain as fast as tokens refill: a client a little over the rate only loses its excess;
        # one that keeps sending far beyond it piles up strikes and is disconnected.
        elapsed = max(now - self._strikes_at, 0.0)
        self._strikes = max(self._strikes - elapsed * self._limits.send_rate, 0.0) + count
        self._strikes_at = now
        abuse = self._limits.abuse_limit
        if abuse and self._strikes >= abuse:
            raise Denied(
                "rate limit exceeded",
                f"kept sending faster than {self._limits.send_rate:g} messages per second after being refused",
                code="rate-limited",
            )


class UserConnections:
    """Live connections per user in this process (every event loop of it, hence the lock)."""

    def __init__(self) -> None:
        self._counts: Counter[Any] = Counter()
        self._lock = threading.Lock()

    def acquire(self, user_id: Any, limit: int) -> bool:
        """Count one more connection of ``user_id``; False (nothing counted) when it would exceed ``limit``."""
        with self._lock:
            if limit and self._counts[user_id] >= limit:
                return False
            self._counts[user_id] += 1
            return True

    def release(self, user_id: Any) -> None:
        """One connection of ``user_id`` ended."""
        with self._lock:
            self._counts[user_id] -= 1
            if self._counts[user_id] <= 0:
                del self._counts[user_id]

    def count(self, user_id: Any) -> int:
        """Live connections of ``user_id``."""
        with self._lock:
            return self._counts.get(user_id, 0)


user_connections = UserConnections()
_limits: SendLimits | None = None


def default_limits() -> SendLimits:
    """The SendLimits built from settings (once per process)."""
    global _limits
    if _limits is None:
        _limits = SendLimits.from_settings()
    return _limits


def reset_limits() -> None:
    """Forget the cached settings (tests that change them)."""
    global _limits
    _limits = None


def too_many_connections(limit: int) -> Denied:
    """The ERROR for a CONNECT beyond the per-user limit."""
    return Denied(
        "too many connections",
        f"this user already has {limit} open connections to this server: close some first",
        code="too-many-connections",
    )
