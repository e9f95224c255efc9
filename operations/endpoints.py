"""``/healthz/``, ``/readyz/`` and ``/metrics`` answered at the ASGI level, ahead of Django's middleware.

Probes and Prometheus call a worker by its loopback address (``Host: 127.0.0.1:8001``) over plain HTTP;
through Django a production worker would answer 400 (the host is not in ALLOWED_HOSTS) or 301 (to HTTPS,
SECURE_SSL_REDIRECT). ``operations.asgi.Instrumented`` routes these paths here; the Django views of the same
paths (operations.views) serve the test client and any server that skips the wrapper.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import close_old_connections

from operations import readiness, views

JSON = b"application/json"


async def _respond(send: Any, status: int, body: bytes, content_type: bytes, *, head: bool) -> None:
    headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode()),
               (b"cache-control", b"no-store")]  # fmt: skip
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": b"" if head else body})


def _json(data: dict[str, Any]) -> bytes:
    return json.dumps(data).encode()


async def _drain(receive: Any) -> None:
    while True:
        message = await receive()
        if message["type"] != "http.request" or not message.get("more_body"):
            return


async def healthz(scope: dict[str, Any]) -> tuple[int, bytes, bytes]:
    return 200, _json({"status": "ok"}), JSON


async def readyz(scope: dict[str, Any]) -> tuple[int, bytes, bytes]:
    # Outside Django's request cycle: release the database connection as request_started/finished would,
    # or a pooled one stays held by the sync thread (with DB_POOL_MAX_SIZE=1 no request would get one).
    await sync_to_async(close_old_connections)()
    try:
        result = await readiness.check(redis_url=settings.REDIS_URL, limit=settings.READINESS_TIMEOUT)
    finally:
        await sync_to_async(close_old_connections)()
    return (200 if result["ready"] else 503), _json(result), JSON


async def metrics(scope: dict[str, Any]) -> tuple[int, bytes, bytes]:
    if not settings.METRICS_ENABLED:
        return 404, _json({"error": "metrics are off (METRICS_ENABLED=0)"}), JSON
    client = scope.get("client") or ("", 0)
    if not views.allowed_address(client[0]):
        return 403, _json({"error": "metrics are not served to this address (METRICS_ALLOWED_NETWORKS)"}), JSON
    body = await asyncio.to_thread(views.render_metrics)  # reads every worker's file in multiprocess mode
    return 200, body, views.CONTENT_TYPE.encode()


ROUTES = {"/healthz/": healthz, "/readyz/": readyz, "/metrics": metrics, "/metrics/": metrics}


async def serve(handler: Any, scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Answer one request with ``handler`` (GET and HEAD only)."""
    await _drain(receive)
    method = scope.get("method", "GET")
    if method not in ("GET", "HEAD"):
        status, body, content_type = 405, _json({"error": f"{method} is not allowed here; use GET"}), JSON
    else:
        status, body, content_type = await handler(scope)
    await _respond(send, status, body, content_type, head=method == "HEAD")
