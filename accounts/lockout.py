"""Back-off on failed passwords, per account and client address together, kept in the shared cache.

Keyed on both, so an attacker elsewhere cannot lock a victim out, and on the account, so rotating accounts
does not help against one: after ``AUTH_LOCKOUT_FREE_FAILURES`` failures the next try must wait
``AUTH_LOCKOUT_BASE_SECONDS``, doubling with every further failure, up to ``AUTH_LOCKOUT_MAX_SECONDS``. A
success clears it. The per-address rate (``AUTH_THROTTLE_RATE``) still bounds guesses across accounts.
The user name is hashed into the key: no account name is kept in the cache or its logs.
"""

from __future__ import annotations

import hashlib
import math
import time

from django.conf import settings
from django.core.cache import cache

MAX_DOUBLINGS = 30  # 2**30 times any sane base is past every cap; keeps the arithmetic small


def _keys(username: str, address: str) -> tuple[str, str]:
    digest = hashlib.sha256(f"{username.strip().casefold()}\0{address}".encode()).hexdigest()[:40]
    return f"auth-lockout:failures:{digest}", f"auth-lockout:until:{digest}"


def _memory_seconds() -> int:
    return 4 * settings.AUTH_LOCKOUT_MAX_SECONDS


def lockout_seconds(failures: int) -> int:
    """How long the next try must wait after ``failures`` failures in a row (0: no wait)."""
    free = settings.AUTH_LOCKOUT_FREE_FAILURES
    if failures < free:
        return 0
    doublings = min(failures - free, MAX_DOUBLINGS)
    return min(settings.AUTH_LOCKOUT_BASE_SECONDS * 2**doublings, settings.AUTH_LOCKOUT_MAX_SECONDS)


def login_wait(*, username: str, address: str) -> int:
    """Seconds this account must wait before a password from this address is checked again (0: now)."""
    _, until_key = _keys(username, address)
    until = cache.get(until_key)
    if until is None:
        return 0
    return max(0, math.ceil(until - time.time()))


def login_failed(*, username: str, address: str) -> int:
    """Count a failed password; returns the wait it imposes on the next try (0: none yet)."""
    failures_key, until_key = _keys(username, address)
    cache.add(failures_key, 0, timeout=_memory_seconds())
    try:
        failures = cache.incr(failures_key)  # atomic in Redis, so parallel guesses are all counted
    except ValueError:  # expired between add and incr
        cache.set(failures_key, 1, timeout=_memory_seconds())
        failures = 1
    cache.touch(failures_key, timeout=_memory_seconds())
    wait = lockout_seconds(failures)
    if wait:
        cache.set(until_key, time.time() + wait, timeout=wait)
    return wait


def login_succeeded(*, username: str, address: str) -> None:
    cache.delete_many(list(_keys(username, address)))
