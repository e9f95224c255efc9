"""Channels routes of the chat app: the raw STOMP WebSocket endpoints."""

from django.urls import re_path

from chat.consumers import StompWebSocketConsumer
from chatproject.direct_routing import direct_asgi

# /ws/websocket is where SockJS clients look for a raw WebSocket; /ws itself serves plain STOMP clients.
websocket_urlpatterns: list = [
    re_path(r"^ws/?$", direct_asgi(StompWebSocketConsumer)),
    re_path(r"^ws/websocket/?$", direct_asgi(StompWebSocketConsumer)),
]
