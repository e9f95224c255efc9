"""Channels routes of the chat app: the raw STOMP WebSocket endpoints."""

from django.urls import re_path

from chatproject.direct_routing import direct_asgi
from stompengine.consumers import StompWebSocketConsumer

# /ws/websocket is where SockJS clients look for a raw WebSocket; /ws itself serves plain STOMP clients.
websocket_urlpatterns: list = [
    re_path(r"^ws/?$", direct_asgi(StompWebSocketConsumer)),
    re_path(r"^ws/websocket/?$", direct_asgi(StompWebSocketConsumer)),
]
