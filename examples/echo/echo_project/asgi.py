"""ASGI entry point: STOMP over a raw WebSocket at /ws and over SockJS at /stomp (``new SockJS(".../stomp")``)."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "echo_project.settings")
django_asgi_app = get_asgi_application()

# After Django is set up: the engine's modules read its settings.
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.urls import re_path  # noqa: E402

from sockjs.endpoint import SockJSEndpoint  # noqa: E402
from stompengine.consumers import StompWebSocketConsumer  # noqa: E402
from stompengine.realtime.sockjs import StompSockJSHandler  # noqa: E402

# Any origin may connect: a real project passes allowed_origin= its own origin check.
sockjs_stomp = SockJSEndpoint("stomp", StompSockJSHandler, raw_websocket=False)

application = ProtocolTypeRouter(
    {
        "http": URLRouter([*sockjs_stomp.http_urlpatterns, re_path(r"", django_asgi_app)]),
        "websocket": URLRouter(
            [re_path(r"^ws/?$", StompWebSocketConsumer.as_asgi()), *sockjs_stomp.websocket_urlpatterns]
        ),
    }
)
