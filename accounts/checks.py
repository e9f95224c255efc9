"""check --deploy: a server behind a proxy that does not say how many proxies to trust throttles wrongly."""

from __future__ import annotations

from django.conf import settings
from django.core.checks import Tags, Warning, register


@register(Tags.security, deploy=True)
def check_trusted_proxy_count(app_configs=None, **kwargs):
    if getattr(settings, "SECURE_PROXY_SSL_HEADER", None) and settings.TRUSTED_PROXY_COUNT == 0:
        return [
            Warning(
                "BEHIND_TLS_PROXY is set but TRUSTED_PROXY_COUNT is 0: the password throttles see the proxy's "
                "address (one bucket for every client), or under daphne --proxy-headers whatever "
                "X-Forwarded-For the client sends.",
                hint="Set TRUSTED_PROXY_COUNT to the number of proxies in front of the server (1 for nginx).",
                id="accounts.W001",
            )
        ]
    return []
