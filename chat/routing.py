"""Channels routes of the chat app: the raw STOMP WebSocket endpoints."""

websocket_urlpatterns: list = []
