"""An ASGI application serving only the SockJS test services (plus a catch-all 404), for live tests."""

import os

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "standalone_settings")
django.setup()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.conf import settings  # noqa: E402
from django.core.asgi import get_asgi_application  # noqa: E402
from django.urls import re_path  # noqa: E402

from chatproject.origins import OriginMatcher  # noqa: E402
from sockjs.daphne import install_daphne_websocket_fixes  # noqa: E402
from sockjs.endpoint import SockJSEndpoint  # noqa: E402
from sockjs.testservices import EchoHandler, test_endpoints  # noqa: E402

install_daphne_websocket_fixes()

# An endpoint with an origin policy, as /ws has in the project: only this frontend may use it.
RESTRICTED_ORIGIN = "http://frontend.example:8080"

endpoints = test_endpoints(
    "sockjs-test",
    heartbeat_interval=settings.SOCKJS_HEARTBEAT_INTERVAL,
    disconnect_delay=settings.SOCKJS_DISCONNECT_DELAY,
    client_url="/static/vendor/sockjs.min.js",
)
endpoints.append(
    SockJSEndpoint(
        "sockjs-restricted/echo",
        EchoHandler,
        allowed_origin=OriginMatcher.from_patterns([RESTRICTED_ORIGIN]).allows,
        heartbeat_interval=settings.SOCKJS_HEARTBEAT_INTERVAL,
        disconnect_delay=settings.SOCKJS_DISCONNECT_DELAY,
    )
)
http_routes = [route for endpoint in endpoints for route in endpoint.http_urlpatterns]
websocket_routes = [route for endpoint in endpoints for route in endpoint.websocket_urlpatterns]

application = ProtocolTypeRouter(
    {
        "http": URLRouter([*http_routes, re_path(r"", get_asgi_application())]),
        "websocket": URLRouter(websocket_routes),
    }
)
