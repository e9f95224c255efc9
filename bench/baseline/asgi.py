"""ASGI entry point of the baseline server: ``/ws/websocket`` is the group_send STOMP consumer."""

import os

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.baseline.settings")
django.setup()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.urls import re_path  # noqa: E402

from bench.baseline.consumer import GroupSendStompConsumer  # noqa: E402

application = ProtocolTypeRouter(
    {"websocket": URLRouter([re_path(r"^ws(/websocket)?/?$", GroupSendStompConsumer.as_asgi())])}
)
