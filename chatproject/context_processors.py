"""Template context shared by every page: the origins the frontend scripts need, as data."""

from django.conf import settings
from django.http import HttpRequest


def frontend(request: HttpRequest) -> dict:
    from accounts.views import pop_handover_code

    return {
        "API_ORIGIN": settings.API_ORIGIN,
        "SITE_ORIGIN": settings.SITE_ORIGIN,
        "PAGE_IS_SECURE": request.is_secure(),
        "JWT_HANDOVER_CODE": pop_handover_code(request) if request.user.is_authenticated else None,
    }
