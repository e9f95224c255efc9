"""The engine's Django app: checks its settings and imports every app's STOMP handlers at start-up."""

from __future__ import annotations

from django.apps import AppConfig


class StompEngineConfig(AppConfig):
    name = "stompengine"
    verbose_name = "STOMP engine"

    def ready(self) -> None:
        # Both fail loudly here, so a bad setting or a broken handler module stops manage.py and the ASGI
        # server before the first client arrives (not on some user's first CONNECT).
        from stompengine.conf import stomp_settings
        from stompengine.realtime.registry import autodiscover

        stomp_settings()
        autodiscover()
