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

- ``STOMP_SUBSCRIBE_COST``: a SUBSCRIBE or UNSUBSCRIBE takes this many tokens of the same bucket. A
  SUBSCRIBE without them is refused like a SEND (``/user/queue/errors``, code ``rate-limited``, no
  RECEIPT, not subscribed); an UNSUBSCRIBE always takes effect (it only frees) but its cost still counts
  and, short of tokens, strikes. Both feed the strike count that disconnects persistent abuse.
- ``STOMP_USER_SEND_RATE`` / ``STOMP_USER_SEND_BURST``: one more token bucket per user, shared by all of
  that user's connections (``UserSendBudget``). A SEND needs a token from both buckets; refusals look the
  same. Across processes the buckets are reconciled through Redis every ``STOMP_USER_BUDGET_SYNC``
  seconds (``BudgetSync``): each process adds its users' spending to a Redis counter and charges its own
  buckets with what the other processes spent, so no SEND waits for Redis. Without ``REDIS_URL`` the
  budget is per process.

Everything here is plain bookkeeping with an explicit clock (``now`` from the event loop), so it is
tested without a server.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
from collections import Counter
from dataclasses import dataclass
from typing import Any

from stompengine.conf import DEFAULTS, stomp_settings
from stompengine.realtime.registry import Denied, Rejected

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SendLimits:
    """The limits of one process, read from settings once; 0 turns a limit off (defaults: ``stompengine.conf``)."""

    max_body_size: int = DEFAULTS.max_body_size
    max_connections_per_user: int = DEFAULTS.max_connections_per_user
    send_rate: float = DEFAULTS.send_rate
    send_burst: int = DEFAULTS.send_burst
    abuse_limit: int = DEFAULTS.send_abuse_limit
    subscribe_cost: float = DEFAULTS.subscribe_cost
    user_send_rate: float = DEFAULTS.user_send_rate
    user_send_burst: int = DEFAULTS.user_send_burst
    user_budget_sync: float = DEFAULTS.user_budget_sync
    connect_rate: float = DEFAULTS.connect_rate
    connect_burst: int = DEFAULTS.connect_burst

    @classmethod
    def from_settings(cls) -> SendLimits:
        """Build from the STOMP_* settings."""
        return stomp_settings().send_limits()


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

    def charge(self, now: float, cost: float) -> None:
        """Spend ``cost`` tokens whatever is left (what other processes spent): the bucket may go negative."""
        self._refill(now)
        self.tokens -= cost

    def _refill(self, now: float) -> None:
        elapsed = now - self.updated
        if elapsed > 0:
            self.tokens = min(self.burst, self.tokens + elapsed * self.rate)
        self.updated = now


class ConnectAdmission:
    """The process's CONNECT admission: a token bucket, and a ``retry-after`` that spreads the refused.

    A reconnect storm is every client at once. Each refused CONNECT is told to come back after the time
    the bucket needs to serve the refused ones before it (a virtual queue that drains at the rate), so
    the refused clients return spread over that time instead of all together after one fixed delay.
    """

    __slots__ = ("_backlog_until", "_bucket", "_terms")

    def __init__(self) -> None:
        self._bucket: TokenBucket | None = None
        self._terms: tuple[float, int] = (0.0, 0)
        self._backlog_until = 0.0  # when the refused clients told to come back so far will have been served

    def admit(self, limits: SendLimits, now: float) -> None:
        """Take a CONNECT token, or raise ``Denied`` (``code:busy`` with a ``retry-after`` in seconds)."""
        if limits.connect_rate <= 0:
            return
        terms = (limits.connect_rate, limits.connect_burst)
        if self._bucket is None or terms != self._terms:  # first use, or a test changed the settings
            self._bucket, self._terms = TokenBucket(terms[0], terms[1], now), terms
        if self._bucket.take(now):
            return
        self._backlog_until = max(self._backlog_until, now) + 1.0 / limits.connect_rate
        retry_after = max(1, math.ceil(self._backlog_until - now))
        raise Denied(
            "server busy",
            f"too many connections are being opened: retry after {retry_after} seconds",
            code="busy",
            headers=(("retry-after", str(retry_after)),),
        )


class SendGate:
    """One connection's SEND admission: body size, then the token bucket, then the strike count."""

    __slots__ = ("_bucket", "_limits", "_strikes", "_strikes_at", "_user", "refused")

    def __init__(self, limits: SendLimits, now: float) -> None:
        self._limits = limits
        self._bucket = TokenBucket(limits.send_rate, limits.send_burst, now) if limits.send_rate > 0 else None
        self._strikes = 0.0
        self._strikes_at = now
        self._user: tuple[Any, UserSendBudget] | None = None
        self.refused = 0

    def bind_user(self, user_id: Any, budget: UserSendBudget) -> None:
        """From now on a SEND also needs tokens from ``user_id``'s shared budget (set once connected)."""
        self._user = (user_id, budget)

    def admit(self, bodies: list[bytes], now: float) -> None:
        """Let these SENDs (one frame, or a committed transaction's) through, or raise Rejected/Denied."""
        limit = self._limits.max_body_size
        if limit:
            for body in bodies:
                if len(body) > limit:
                    self.refused += 1
                    raise Rejected(f"the message body is {len(body)} bytes; at most {limit} are allowed",
                                   code="too-large")  # fmt: skip
        count = len(bodies)
        bucket = self._bucket
        if bucket is not None and not bucket.take(now, count):
            self.refused += 1
            self._strike(now, count)
            raise Rejected(
                f"more than {self._limits.send_rate:g} messages per second (bursts of {self._limits.send_burst}): "
                "slow down; this message was not sent",
                code="rate-limited",
            )
        user = self._user
        if user is not None and not user[1].take(user[0], self._limits, now, count):
            if bucket is not None:
                bucket.tokens += count  # not sent: give the connection its tokens back
            self.refused += 1
            self._strike(now, count)
            raise Rejected(
                f"this user sends more than {self._limits.user_send_rate:g} messages per second over all their "
                f"connections (bursts of {self._limits.user_send_burst}): slow down; this message was not sent",
                code="rate-limited",
            )

    def admit_subscription(self, now: float, *, unsubscribe: bool = False) -> None:
        """Charge a SUBSCRIBE (refused with Rejected when short of tokens) or an UNSUBSCRIBE (never refused)."""
        bucket = self._bucket
        cost = min(self._limits.subscribe_cost, bucket.burst) if bucket is not None else 0.0  # always affordable
        if bucket is None or not cost or bucket.take(now, cost):
            return
        if unsubscribe:
            bucket.tokens = 0.0  # spend what is left (take() already refilled)
            self._strike(now, cost)  # it takes effect (it only frees), but a flood of them is still abuse
            return
        self.refused += 1
        self._strike(now, cost)
        raise Rejected(
            f"too many SUBSCRIBE/UNSUBSCRIBE frames (each costs {cost:g} of the {self._limits.send_rate:g} "
            "messages per second budget): slow down; this subscription was not made",
            code="rate-limited",
        )

    def _strike(self, now: float, count: float) -> None:
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


class UserSendBudget:
    """One token bucket per user of this process, shared by the user's connections on every event loop.

    ``spent`` is what this process admitted since the last reconciliation (``take_spent``); ``charge``
    applies what the other processes spent. A user's bucket is dropped once it is full again and the
    user has no connection left, so idle users cost nothing.
    """

    def __init__(self) -> None:
        self._buckets: dict[Any, TokenBucket] = {}
        self._spent: Counter[Any] = Counter()
        self._lock = threading.Lock()

    def take(self, user_id: Any, limits: SendLimits, now: float, count: int) -> bool:
        """Spend ``count`` SENDs of ``user_id``'s budget; False (nothing spent) when it has not enough."""
        if limits.user_send_rate <= 0:
            return True
        with self._lock:
            bucket = self._buckets.get(user_id)
            if bucket is None:
                bucket = self._buckets[user_id] = TokenBucket(limits.user_send_rate, limits.user_send_burst, now)
            if not bucket.take(now, count):
                return False
            self._spent[user_id] += count
            return True

    def take_spent(self) -> dict[Any, int]:
        """What this process admitted per user since the last call (for the reconciliation)."""
        with self._lock:
            spent, self._spent = dict(self._spent), Counter()
            return spent

    def charge(self, user_id: Any, cost: float, now: float) -> None:
        """Other processes spent ``cost`` of ``user_id``'s budget."""
        with self._lock:
            bucket = self._buckets.get(user_id)
            if bucket is not None:
                bucket.charge(now, cost)

    def tokens(self, user_id: Any) -> float | None:
        """Tokens left in ``user_id``'s bucket (None: no bucket), for tests and ops."""
        with self._lock:
            bucket = self._buckets.get(user_id)
            return None if bucket is None else bucket.tokens

    def prune(self, now: float, live: Any) -> None:
        """Forget full buckets of users without a live connection (``live(user_id) -> bool``)."""
        with self._lock:
            for user_id, bucket in list(self._buckets.items()):
                bucket._refill(now)
                if bucket.tokens >= bucket.burst and not live(user_id) and not self._spent.get(user_id):
                    del self._buckets[user_id]


class BudgetSync:
    """Reconciles this process's per-user budgets with the other processes' through Redis, periodically.

    Every ``interval`` seconds, for each user who sent here since the last round, one pipelined
    ``INCRBY`` adds this process's spending to ``<prefix>user-send:<user>`` (which expires after a few
    idle rounds) and returns the total of all processes. What the total grew by beyond our own share is
    what the others spent, and is charged to our bucket for that user. Users who send only elsewhere are
    not looked up: their bucket here is full and starts being charged once they send here too.
    Redis being down costs only the cross-process part; SENDs never wait for it.
    """

    def __init__(self, budget: UserSendBudget, redis: Any, *, prefix: str, interval: float) -> None:
        self._budget = budget
        self._redis = redis
        self._prefix = prefix
        self._interval = interval
        self._seen: dict[Any, int] = {}  # the total we last read per user

    async def run(self, clock: Any) -> None:
        """Reconcile every ``interval`` seconds until cancelled; also forgets idle users' buckets."""
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self.reconcile(clock())
            except Exception as exc:  # Redis down or restarting: try again next round
                logger.warning("per-user send budget: reconciliation through Redis failed (%s)", exc)
            self._budget.prune(clock(), lambda user_id: user_connections.count(user_id) > 0)

    async def reconcile(self, now: float) -> None:
        """One round: push our spending, charge what the others spent."""
        spent = self._budget.take_spent()
        if self._redis is None:
            return
        for user_id in list(self._seen):
            spent.setdefault(user_id, 0)  # keep following users who sent here recently
        if not spent:
            return
        ttl = max(int(self._interval * 10), 10)
        async with self._redis.pipeline(transaction=False) as pipe:
            for user_id, count in spent.items():
                key = f"{self._prefix}user-send:{user_id}"
                pipe.incrby(key, count)
                pipe.expire(key, ttl)
            results = await pipe.execute()
        for (user_id, count), total in zip(spent.items(), results[::2], strict=True):
            total = int(total)
            previous = self._seen.get(user_id)
            others = 0 if previous is None or total < previous else total - previous - count
            if others > 0:
                self._budget.charge(user_id, others, now)
            if count or others:
                self._seen[user_id] = total
            else:
                self._seen.pop(user_id, None)  # a quiet round everywhere: stop following


user_connections = UserConnections()
user_send_budget = UserSendBudget()


def default_limits() -> SendLimits:
    """The SendLimits of the running loop's runtime (built from settings on first use)."""
    from stompengine import runtime

    limits: SendLimits = runtime.current().limits
    return limits


def reset_limits() -> None:
    """Read the settings again on next use (tests that change them)."""
    from stompengine import runtime

    found = runtime.existing()
    if found is not None:
        found.forget_settings()


def start_budget_sync(loop: asyncio.AbstractEventLoop, limits: SendLimits, budget: UserSendBudget) -> None:
    """Start the reconciliation task of ``budget`` in the running loop's runtime once (through the bus's
    Redis command connection when it has Redis)."""
    if limits.user_send_rate <= 0:
        return
    from stompengine import runtime

    def start(bus: runtime.Runtime) -> asyncio.Task[None]:
        sync = BudgetSync(budget, bus.commands, prefix=stomp_settings().redis_prefix, interval=limits.user_budget_sync)
        return loop.create_task(sync.run(loop.time), name="stomp-budget-sync")

    runtime.current().attach(f"stomp.budget-sync.{id(budget)}", start)


def too_many_connections(limit: int) -> Denied:
    """The ERROR for a CONNECT beyond the per-user limit."""
    return Denied(
        "too many connections",
        f"this user already has {limit} open connections to this server: close some first",
        code="too-many-connections",
    )
