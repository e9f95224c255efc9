"""Channels routes of the notifications app: the SSE stream."""

http_urlpatterns: list = []
