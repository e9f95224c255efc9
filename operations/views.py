"""``/metrics`` (Prometheus text format, allow-listed) and ``/readyz/`` (readiness, JSON) as Django views.

A real server answers these paths (and ``/healthz/``) earlier, at the ASGI level: operations.endpoints.
"""

from __future__ import annotations

import ipaddress

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest, multiprocess
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4  # what every Prometheus 2.x reads

from operations import readiness

CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4


def allowed_address(remote: str) -> bool:
    """Whether ``remote`` (the client's IP address) is in METRICS_ALLOWED_NETWORKS."""
    try:
        address = ipaddress.ip_address(remote or "")
    except ValueError:
        return False
    return any(address in network for network in settings.METRICS_ALLOWED_NETWORKS)


def render_metrics() -> bytes:
    """Every worker's metrics summed (multiprocess mode), or this process's, in the text format."""
    if settings.PROMETHEUS_MULTIPROC_DIR:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=settings.PROMETHEUS_MULTIPROC_DIR)
        return generate_latest(registry)
    return generate_latest(REGISTRY)


def metrics_view(request: HttpRequest) -> HttpResponse:
    """Every worker's metrics summed (multiprocess mode), or this process's; 403 outside the allow-list."""
    if not settings.METRICS_ENABLED:
        return JsonResponse({"error": "metrics are off (METRICS_ENABLED=0)"}, status=404)
    if not allowed_address(request.META.get("REMOTE_ADDR") or ""):
        return JsonResponse({"error": "metrics are not served to this address (METRICS_ALLOWED_NETWORKS)"},
                            status=403)  # fmt: skip
    return HttpResponse(render_metrics(), content_type=CONTENT_TYPE)


async def readyz(request: HttpRequest) -> JsonResponse:
    """200 ``{"ready": true, ...}`` when this worker should get new clients, else 503 with the failing check."""
    result = await readiness.check(redis_url=settings.REDIS_URL, limit=settings.READINESS_TIMEOUT)
    response = JsonResponse(result, status=200 if result["ready"] else 503)
    response["Cache-Control"] = "no-store"
    return response
