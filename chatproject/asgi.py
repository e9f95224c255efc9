"""ASGI entry point: routes HTTP and WebSocket traffic by protocol, then by path.

Streaming endpoints (the SSE stream, SockJS transports) are Channels consumers ahead of Django's view
stack; everything else is ordinary Django. The WebSocket stack checks the Origin against
FRONTEND_ORIGINS and resolves the handshake user (JWT header or session cookie) but never refuses an
anonymous handshake: STOMP CONNECT is the real gate.
"""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatproject.settings")
django_asgi_app = get_asgi_application()

# Imported after Django is set up: these modules import models.
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.conf import settings  # noqa: E402
from django.urls import get_resolver, re_path  # noqa: E402

from accounts.channels import WebSocketHandshake  # noqa: E402
from chatproject import routing  # noqa: E402
from chatproject.daphne_limits import install_daphne_receive_deadline  # noqa: E402
from chatproject.direct_routing import DirectURLRouter  # noqa: E402
from chatproject.gctune import gc_tune  # noqa: E402
from chatproject.logredact import redact_daphne_access_log  # noqa: E402
from operations.asgi import Instrumented, configure_from_settings  # noqa: E402
from operations.metrics import gc_pauses_observed  # noqa: E402
from sockjs.daphne import install_daphne_websocket_fixes  # noqa: E402
from stompengine.realtime.shutdown import install_daphne_shutdown_hook  # noqa: E402

redact_daphne_access_log()
install_daphne_shutdown_hook()
install_daphne_receive_deadline(settings.HTTP_RECEIVE_TIMEOUT)
install_daphne_websocket_fixes(settings.WEBSOCKET_MAX_MESSAGE_SIZE)

application = ProtocolTypeRouter(
    {
        "http": URLRouter([*routing.http_urlpatterns, re_path(r"", django_asgi_app)]),  # type: ignore[arg-type]  # Channels routes ASGI apps
        # The SockJS protocol test services accept any origin, like the reference server.
        "websocket": WebSocketHandshake(
            DirectURLRouter(routing.websocket_urlpatterns), exempt_prefixes=("/sockjs-test/",)
        ),
    }
)
# The per-process metrics sampler (event-loop lag, RSS, send-queue depths) starts on the first connection.
configure_from_settings()  # tracing (OTEL_*) and JSON log context (LOG_FORMAT=json), when asked for
application = Instrumented(application, sample_interval=settings.METRICS_SAMPLE_INTERVAL)

# Last: everything start-up built is alive now. The URL patterns (and the views they import) load here
# rather than on the first request, so they are part of what is frozen.
get_resolver().url_patterns  # noqa: B018 - imports the URLconf and its views
gc_tune(freeze=settings.GC_FREEZE, threshold=settings.GC_THRESHOLD)
gc_pauses_observed()  # chat_gc_pause_seconds: collections that still stall the loop show up
