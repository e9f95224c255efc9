"""JSON errors for the API and /ws/: a client of these paths never gets an HTML page or a login redirect."""

from __future__ import annotations

import logging

from django.contrib.auth.decorators import login_not_required
from django.db import OperationalError
from django.http import HttpRequest, JsonResponse
from django.views.defaults import page_not_found, server_error
from psycopg_pool import PoolTimeout
from rest_framework.views import exception_handler

logger = logging.getLogger(__name__)
JSON_PREFIXES = ("/api/", "/ws/", "/ws")


def wants_json(request: HttpRequest) -> bool:
    return request.path.startswith(JSON_PREFIXES)


def api_exception_handler(exc, context):
    """DRF's handler, with every error body carrying ``detail`` (and ``errors`` for field problems)."""
    if database_busy(exc):
        logger.warning("database pool exhausted: %s", exc)
        response = json_error(503, f"the database is busy: {exc}; retry shortly", code="database-busy")
        response["Retry-After"] = "1"
        return response
    response = exception_handler(exc, context)
    if response is None:
        return None
    data = response.data
    if isinstance(data, dict) and "detail" not in data:
        response.data = {"detail": "the request is invalid; see errors", "errors": data}
    elif isinstance(data, list):
        response.data = {"detail": " ".join(str(item) for item in data), "errors": data}
    return response


def database_busy(exc: BaseException) -> bool:
    """Every pooled PostgreSQL connection stayed busy for DB_POOL_TIMEOUT (Django wraps psycopg's PoolTimeout)."""
    return isinstance(exc, OperationalError) and isinstance(exc.__cause__, PoolTimeout)


@login_not_required  # a JSON 404, never a login redirect, even under LoginRequiredMiddleware
def not_found(request: HttpRequest, exception: Exception | None = None):
    if wants_json(request):
        return JsonResponse({"detail": f"no such endpoint: {request.path}"}, status=404)
    return page_not_found(request, exception)


def internal_error(request: HttpRequest):
    if wants_json(request):
        return JsonResponse({"detail": "internal server error"}, status=500)
    return server_error(request)


def json_error(status: int, detail: str, **extra) -> JsonResponse:
    """A JSON error response with the project's error shape."""
    return JsonResponse({"detail": detail, **extra}, status=status)
