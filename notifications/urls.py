"""Notification REST routes under /api/ (the SSE stream itself is a Channels route)."""

urlpatterns: list = []
