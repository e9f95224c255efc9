"""ASGI wrapper: starts this process's metrics sampler on the first connection of each event loop, and
opens a span per HTTP request when tracing is on (operations.tracing)."""

from __future__ import annotations

from typing import Any

from operations import endpoints, sampler, tracing


class Instrumented:
    """Wraps the project's ASGI application; adds nothing per request beyond a set lookup."""

    def __init__(self, app: Any, *, sample_interval: float) -> None:
        self.app = app
        self.sample_interval = sample_interval

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        sampler.ensure_started(self.sample_interval)
        if scope["type"] == "http":
            endpoint = endpoints.ROUTES.get(scope.get("path", ""))
            if endpoint is not None:  # probes and scrapes: no middleware, no host check, no span
                return await endpoints.serve(endpoint, scope, receive, send)
        if tracing.enabled() and scope["type"] == "http":
            with tracing.http_span(scope):
                return await self.app(scope, receive, send)
        return await self.app(scope, receive, send)


def configure_from_settings() -> None:
    """At start-up: tracing when the OTEL_* variables ask for it, the real-time log context for JSON logs."""
    from django.conf import settings

    if settings.TRACING_ENABLED:
        tracing.configure(exporter_name=settings.TRACING_EXPORTER)
    if settings.LOG_FORMAT == "json":
        from operations.logs import install_realtime_context

        install_realtime_context()
