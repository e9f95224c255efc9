"""ASGI wrapper: starts this process's metrics sampler on the first connection of each event loop."""

from __future__ import annotations

from typing import Any

from operations import sampler


class Instrumented:
    """Wraps the project's ASGI application; adds nothing per request beyond a set lookup."""

    def __init__(self, app: Any, *, sample_interval: float) -> None:
        self.app = app
        self.sample_interval = sample_interval

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        sampler.ensure_started(self.sample_interval)
        return await self.app(scope, receive, send)
