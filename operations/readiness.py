"""Readiness of this process: database, Redis and the broker's subscriptions, and not shutting down.

``/readyz/`` (``operations.views``) answers with ``check()``'s result; ``mark_draining()`` is called by the
SIGTERM hook (``stompengine.realtime.shutdown``) so a load balancer stops sending new clients here at once.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from asgiref.sync import sync_to_async

from operations import metrics

logger = logging.getLogger(__name__)
_draining = False


def mark_draining() -> None:
    """This process is shutting down: readiness is false from now on."""
    global _draining
    _draining = True
    metrics.DRAINING.set(1)


def forget_process() -> None:
    """Drop this process's live gauges from the shared metrics directory (it is about to exit)."""
    import os

    from django.conf import settings

    if settings.PROMETHEUS_MULTIPROC_DIR:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(os.getpid(), settings.PROMETHEUS_MULTIPROC_DIR)


def draining() -> bool:
    return _draining


def _database_ok() -> tuple[bool, str]:
    from django.db import connection

    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception as exc:
        return False, f"{type(exc).__name__}: {exc}"
    return True, "ok"


async def _redis_ok(url: str, limit: float) -> tuple[bool, str]:
    """PING Redis over the bus's command connection, then ask the broker whether its subscriptions are live.

    ``url`` is the bus's (``REDIS_URL``): readiness opens no Redis client of its own.
    """
    from stompengine import runtime

    bus = runtime.current()
    client = bus.commands
    if client is None:
        return False, f"the bus of this process has no Redis (REDIS_URL is {url!r} in the check only)"
    try:
        async with asyncio.timeout(limit):
            await client.ping()
    except Exception as exc:
        return False, f"{type(exc).__name__}: {exc}"
    bridge = bus.broker.bridge
    if bridge is not None and bridge.subscribed_keys and not bridge.connected:
        return False, "the broker's Redis subscriptions are not live (reconnecting)"
    return True, "ok"


async def check(*, redis_url: str, limit: float) -> dict[str, Any]:
    """``{"ready": bool, "checks": {name: {"ok": bool, "detail": str}}}``; cheap enough for every probe."""
    checks: dict[str, dict[str, Any]] = {}
    ok, detail = await sync_to_async(_database_ok)()
    checks["database"] = {"ok": ok, "detail": detail}
    if redis_url:
        ok, detail = await _redis_ok(redis_url, limit)
        checks["redis"] = {"ok": ok, "detail": detail}
    checks["shutdown"] = {"ok": not _draining, "detail": "shutting down" if _draining else "running"}
    return {"ready": all(item["ok"] for item in checks.values()), "checks": checks}
