"""Channels routes of the chat app: the raw STOMP WebSocket endpoints."""

from django.urls import re_path

from chat.consumers import StompWebSocketConsumer

# /ws/websocket is where SockJS clients look for a raw WebSocket; /ws itself serves plain STOMP clients.
websocket_urlpatterns: list = [
    re_path(r"^ws/?$", StompWebSocketConsumer.as_asgi()),
    re_path(r"^ws/websocket/?$", StompWebSocketConsumer.as_asgi()),
]
