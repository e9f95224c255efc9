"""System checks for the split-origin mistakes this project exists to prevent (``manage.py check --deploy``)."""

from __future__ import annotations

import logging

from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, Warning, register


@register(Tags.security, deploy=True)
def check_split_origin(app_configs=None, **kwargs):
    problems: list[CheckMessage] = []
    if settings.SITE_ORIGIN.startswith("https://") and settings.API_ORIGIN.startswith("http://"):
        problems.append(
            Error(
                f"API_ORIGIN {settings.API_ORIGIN} is http:// while the pages are served from "
                f"{settings.SITE_ORIGIN}: browsers block these calls as mixed content.",
                hint="Serve the API over HTTPS and set API_ORIGIN=https://…",
                id="chatproject.E001",
            )
        )
    if not settings.ORIGIN_MATCHER.allows(settings.SITE_ORIGIN):
        problems.append(
            Warning(
                f"FRONTEND_ORIGINS does not cover SITE_ORIGIN {settings.SITE_ORIGIN}: the pages this server "
                "renders cannot call the API, open /ws or the notification stream.",
                hint=f"Add {settings.SITE_ORIGIN} to FRONTEND_ORIGINS.",
                id="chatproject.W001",
            )
        )
    if settings.ORIGIN_MATCHER.allows_any:
        problems.append(
            Warning(
                "FRONTEND_ORIGINS allows any origin with credentials: any web site can call the API in "
                "the name of a logged-in user.",
                hint="List your frontend origins (patterns such as https://*.example.com are allowed).",
                id="chatproject.W002",
            )
        )
    if not settings.REDIS_URL:
        problems.append(
            Warning(
                "REDIS_URL is not set: the in-memory channel layer serves one process only, so a second "
                "worker would not see the first one's messages and notifications.",
                hint="Set REDIS_URL=redis://… when you run more than one daphne process.",
                id="chatproject.W003",
            )
        )
    if settings.SITE_ORIGIN.startswith("https://") and not getattr(settings, "SECURE_PROXY_SSL_HEADER", None):
        problems.append(
            Warning(
                "SITE_ORIGIN is https:// but BEHIND_TLS_PROXY is off: behind a TLS-terminating proxy Django "
                "will think requests are plain http (no secure cookies, no upgrade-insecure-requests).",
                hint="Set BEHIND_TLS_PROXY=1 when a proxy terminates TLS and sets X-Forwarded-Proto.",
                id="chatproject.W004",
            )
        )
    return problems


# Paths a browser on the frontend origin calls without a session: they must never be answered by a login
# redirect (field failures 5, 6 and 8) and must carry CORS headers.
CROSS_ORIGIN_PROBE_PATHS = ("/ws/info", "/api/auth/token/", "/api/me/", "/api/notifications/stream/")


def _routed_by_channels(path: str) -> bool:
    """True when a Channels HTTP route (SockJS, SSE) takes ``path`` before Django's middleware sees it."""
    from chatproject.routing import http_urlpatterns

    return any(route.pattern.match(path.lstrip("/")) for route in http_urlpatterns)


def _login_redirect(path: str) -> str | None:
    """Where Django's middleware stack sends an anonymous GET of ``path``, when that is the login page."""
    from urllib.parse import urlsplit

    from django.shortcuts import resolve_url
    from django.test import Client

    api = urlsplit(settings.API_ORIGIN)
    client = Client(HTTP_HOST=api.netloc, raise_request_exception=False)
    request_logger = logging.getLogger("django.request")
    level = request_logger.level
    request_logger.setLevel(logging.CRITICAL)  # the expected 401/405 answers are not news in check output
    try:
        response = client.get(path, secure=api.scheme == "https")
    finally:
        request_logger.setLevel(level)
    location = response.headers.get("Location", "")
    login_path = urlsplit(resolve_url(settings.LOGIN_URL)).path
    if response.status_code in (301, 302, 303, 307, 308) and urlsplit(location).path == login_path:
        return location
    return None


@register(Tags.security, deploy=True)
def check_cross_origin_paths_not_intercepted(app_configs=None, **kwargs):
    """``/ws/`` and ``/api/`` must be exempt from login-required middleware and covered by CORS."""
    import re

    problems: list[CheckMessage] = []
    for path in CROSS_ORIGIN_PROBE_PATHS:
        if not re.match(settings.CORS_URLS_REGEX, path):
            problems.append(
                Warning(
                    f"CORS_URLS_REGEX {settings.CORS_URLS_REGEX!r} does not cover {path}: its answers carry no "
                    "Access-Control-Allow-Origin, so the frontend's browser blocks them.",
                    hint="Let CORS_URLS_REGEX match every path under /api/ and /ws/.",
                    id="chatproject.W005",
                )
            )
        if _routed_by_channels(path):
            continue
        location = _login_redirect(path)
        if location is not None:
            prefix = "/" + path.strip("/").split("/")[0] + "/"
            problems.append(
                Error(
                    f"An anonymous GET {path} is redirected to the login page ({location}) by the middleware: "
                    "a cross-origin SockJS, REST or EventSource request then fails with a CORS error.",
                    hint=f"Exempt {prefix} from the login-required middleware (e.g. login_not_required); the API "
                    "answers 401 JSON and STOMP CONNECT authenticates.",
                    id="chatproject.E002",
                )
            )
    return problems


@register(Tags.staticfiles, deploy=True)
def check_static_manifest(app_configs=None, **kwargs):
    """With hashed static names (DEBUG off) every page needs collectstatic's manifest, or it answers 500."""
    if not settings.STATIC_MANIFEST:
        return []
    from pathlib import Path

    manifest = Path(settings.STATIC_ROOT) / "staticfiles.json"
    if manifest.is_file():
        return []
    return [
        Error(
            f"STATIC_MANIFEST is on (DEBUG off) but {manifest} does not exist: every page that links a static "
            "file (/login/ first) answers 500 (missing staticfiles manifest entry).",
            hint="Run `python manage.py collectstatic --noinput` (STATIC_ROOT from the environment) before "
            "starting the server, or set DEBUG=1 for development.",
            id="chatproject.E003",
        )
    ]
