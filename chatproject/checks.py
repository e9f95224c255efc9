"""System checks for the split-origin mistakes this project exists to prevent (``manage.py check --deploy``)."""

from __future__ import annotations

from django.conf import settings
from django.core.checks import Error, Tags, Warning, register


@register(Tags.security, deploy=True)
def check_split_origin(app_configs=None, **kwargs):
    problems = []
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
