"""Project-level views: the liveness check (readiness, with the database, is ``/readyz/``: operations.views)."""

from django.http import HttpRequest, JsonResponse


async def healthz(request: HttpRequest) -> JsonResponse:
    """Liveness: the process answers. No database, no Redis: a restart would not fix those."""
    return JsonResponse({"status": "ok"})
