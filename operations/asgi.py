"""ASGI wrapper: starts this process's metrics sampler on the first connection of each event loop, and
opens a span per HTTP request when tracing is on (operations.tracing)."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any

from asgiref.sync import markcoroutinefunction

from operations import endpoints, sampler, tracing


class Instrumented:
    """Wraps the project's ASGI application; adds nothing per request beyond a set lookup.

    The call is not ``async``: it returns the inner application's coroutine, so no frame of this layer stays
    suspended for a connection's life (a few hundred bytes per idle WebSocket). It is marked as a coroutine
    function, so servers (uvicorn's ASGI-version check, asgiref's ``guarantee_single_callable``) see the
    ASGI 3 single callable it is.
    """

    def __init__(self, app: Any, *, sample_interval: float) -> None:
        self.app = app
        self.sample_interval = sample_interval

    @markcoroutinefunction
    def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Awaitable[Any]:
        sampler.ensure_started(self.sample_interval)
        if scope["type"] == "http":
            endpoint = endpoints.ROUTES.get(scope.get("path", ""))
            if endpoint is not None:  # probes and scrapes: no middleware, no host check, no span
                return endpoints.serve(endpoint, scope, receive, send)
            if tracing.enabled():
                return self._traced(scope, receive, send)
        return self.app(scope, receive, send)  # type: ignore[no-any-return]

    async def _traced(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        with tracing.http_span(scope):
            return await self.app(scope, receive, send)


def configure_from_settings() -> None:
    """At start-up: tracing when the OTEL_* variables ask for it, the real-time log context for JSON logs."""
    from django.conf import settings

    if settings.TRACING_ENABLED:
        tracing.configure(exporter_name=settings.TRACING_EXPORTER)
    if settings.LOG_FORMAT == "json":
        from operations.logs import install_realtime_context

        install_realtime_context()
