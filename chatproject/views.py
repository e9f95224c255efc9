"""Project-level views: the liveness check (readiness, with the database, is ``/readyz/``: operations.views)."""

from django.http import HttpRequest, HttpResponseRedirect, JsonResponse
from django.templatetags.static import static


async def healthz(request: HttpRequest) -> JsonResponse:
    """Liveness: the process answers. No database, no Redis: a restart would not fix those."""
    return JsonResponse({"status": "ok"})


def favicon(request: HttpRequest) -> HttpResponseRedirect:
    """``/favicon.ico``, which browsers ask for on pages that name no icon (the admin's): the site's icon."""
    return HttpResponseRedirect(static("favicon.svg"))
