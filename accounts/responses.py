"""Responses that carry a credential (JWT pair, hand-over code) must never be kept by a cache or a browser."""

from __future__ import annotations

from django.http import HttpResponseBase

# Set on the request by accounts.views.pop_handover_code when the page about to render carries a hand-over
# code; accounts.middleware.HandoverNoStoreMiddleware then marks that page no-store.
HANDOVER_RENDERED = "_jwt_handover_rendered"


def no_store(response: HttpResponseBase) -> HttpResponseBase:
    """Mark ``response`` uncacheable: ``no-store`` for HTTP/1.1 caches, ``Pragma: no-cache`` for old ones."""
    response["Cache-Control"] = "no-store"
    response["Pragma"] = "no-cache"
    return response


class NoStoreMixin:
    """For DRF views whose answers carry a token: every response, errors included, is marked ``no-store``."""

    def finalize_response(self, request, response, *args, **kwargs):
        return no_store(super().finalize_response(request, response, *args, **kwargs))  # type: ignore[misc]
