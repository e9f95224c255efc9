"""Cross-site WebSocket hijacking: foreign origins are refused at the handshake (raw WebSocket, SockJS, SSE),
and a session cookie alone never authenticates a STOMP connection."""

from __future__ import annotations

import pytest
from channels.db import database_sync_to_async
from channels.testing import HttpCommunicator, WebsocketCommunicator
from django.test import Client

from tests.conftest import TEST_PASSWORD
from tests.security.stomp_client import WAIT, StompTestClient

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("fresh_broker")]
EVIL = "https://evil.example"
GOOD = "http://localhost:8000"  # settings.SITE_ORIGIN, in FRONTEND_ORIGINS by default


def session_cookie(make_user) -> bytes:
    make_user("victim")
    client = Client()
    assert client.login(username="victim", password=TEST_PASSWORD)
    return f"sessionid={client.cookies['sessionid'].value}".encode()


@pytest.mark.parametrize("path", ["/ws", "/ws/websocket", "/ws/000/abcdefgh/websocket"])
@pytest.mark.parametrize("origin", [EVIL, "null", "http://localhost:8000.evil.example", "HTTP://EVIL.EXAMPLE"])
async def test_websocket_handshake_from_a_foreign_origin_is_refused(application, make_user, path, origin):
    cookie = await database_sync_to_async(session_cookie)(make_user)
    ws = WebsocketCommunicator(application, path, subprotocols=["v12.stomp"],
                               headers=[(b"origin", origin.encode()), (b"cookie", cookie)])  # fmt: skip
    connected, code = await ws.connect(WAIT)
    assert not connected
    assert code in (403, 4403, 1008, None) or code >= 4000


async def test_session_cookie_alone_never_authenticates_stomp_even_from_an_allowed_origin(application, make_user):
    cookie = await database_sync_to_async(session_cookie)(make_user)
    client = await StompTestClient.open(application, headers=[(b"origin", GOOD.encode()), (b"cookie", cookie)])
    await client.send("CONNECT", accept_version="1.2")
    error = await client.error()
    assert (error.get("message"), error.get("code")) == ("Unauthorized", "unauthorized")
    await client.close()


@pytest.mark.parametrize("path", ["/ws/info", "/ws/000/abcdefgh/xhr", "/ws/000/abcdefgh/xhr_streaming",
                                  "/ws/000/abcdefgh/eventsource"])  # fmt: skip
async def test_sockjs_transports_refuse_a_foreign_origin(application, path):
    method = "POST" if path.endswith(("xhr", "xhr_streaming")) else "GET"
    http = HttpCommunicator(application, method, path, headers=[(b"origin", EVIL.encode())])
    response = await http.get_response(timeout=WAIT)
    assert response["status"] == 403
    headers = dict(response["headers"])
    assert headers.get(b"access-control-allow-origin") not in (EVIL.encode(), b"*")


async def test_sse_stream_refuses_a_foreign_origin_even_with_the_session_cookie(application, make_user):
    cookie = await database_sync_to_async(session_cookie)(make_user)
    http = HttpCommunicator(application, "GET", "/api/notifications/stream/",
                            headers=[(b"origin", EVIL.encode()), (b"cookie", cookie)])  # fmt: skip
    response = await http.get_response(timeout=WAIT)
    assert response["status"] == 403
    assert dict(response["headers"]).get(b"access-control-allow-origin") is None


def test_rest_cors_does_not_grant_a_foreign_origin(make_user):
    client = Client()
    response = client.options("/api/me/", HTTP_ORIGIN=EVIL, HTTP_ACCESS_CONTROL_REQUEST_METHOD="GET")
    assert "access-control-allow-origin" not in {k.lower() for k in response.headers}
    response = client.options("/api/me/", HTTP_ORIGIN=GOOD, HTTP_ACCESS_CONTROL_REQUEST_METHOD="GET")
    assert response.headers.get("access-control-allow-origin") == GOOD
