"""A provider that cannot be reached while a social login starts ends on the login page with a message; a page
that carries a JWT hand-over code is never cached.

The callback view of allauth already turns network errors into an authentication error (handled in
``accounts/social.py``); the login view does not: for OpenID Connect it fetches the provider's discovery
document before redirecting, and a provider that is down would otherwise be a 500.
"""

from __future__ import annotations

import logging

import requests
from allauth.socialaccount.adapter import get_adapter
from allauth.socialaccount.providers.oauth2.client import OAuth2Error
from django.http import HttpRequest
from django.utils.deprecation import MiddlewareMixin

from accounts.responses import HANDOVER_RENDERED, no_store
from accounts.social import provider_name, social_error_response, unreachable_text

logger = logging.getLogger(__name__)


class SocialLoginErrorMiddleware(MiddlewareMixin):
    """Sync and async capable (MiddlewareMixin), so async views such as the SSE stream stay async."""

    def process_exception(self, request: HttpRequest, exception: Exception):
        if not isinstance(exception, requests.RequestException | OAuth2Error):
            return None
        match = request.resolver_match
        url_name = (match.url_name if match else None) or ""
        if match is None or not url_name.endswith(("_login", "_callback")):
            return None
        provider_id = match.kwargs.get("provider_id") or url_name.rsplit("_", 1)[0]
        try:
            name = provider_name(get_adapter(request).get_provider(request, provider_id))
        except Exception:  # an unknown provider id: still a message, not a second error
            name = "the identity provider"
        logger.warning("social login with %s could not reach the provider: %r", provider_id, exception)
        return social_error_response(request, unreachable_text(name))


class HandoverNoStoreMiddleware(MiddlewareMixin):
    """The page whose <meta> holds a hand-over code (exchanged for JWTs) gets ``Cache-Control: no-store``."""

    def process_response(self, request: HttpRequest, response):
        if getattr(request, HANDOVER_RENDERED, False):
            no_store(response)
        return response
