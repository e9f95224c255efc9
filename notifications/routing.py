"""Channels routes of the notifications app: the SSE stream (and its per-process stats), ahead of Django."""

from django.urls import path

from notifications.stream import NotificationStreamConsumer, StreamStatsConsumer

http_urlpatterns: list = [
    path("api/notifications/stream/", NotificationStreamConsumer.as_asgi(), name="notification-stream"),
    path("api/notifications/stream/stats/", StreamStatsConsumer.as_asgi(), name="notification-stream-stats"),
]
