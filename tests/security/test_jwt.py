"""Forged, stale and misused JWTs are refused at every entry point: WebSocket handshake, STOMP CONNECT, REST,
the SSE ticket endpoint and the SSE stream itself."""

from __future__ import annotations

import base64
import json
import time
import uuid

import jwt
import pytest
from channels.db import database_sync_to_async
from channels.testing import HttpCommunicator, WebsocketCommunicator
from django.conf import settings
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import RefreshToken

from stompengine.stomp.codec import FrameParser
from tests.security.fakes import wire

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("fresh_broker")]
WAIT = 5.0
BAD_TOKENS = ["alg-none", "wrong-signature", "expired", "not-yet-valid", "issued-in-future", "deleted-user",
              "deactivated-user", "refresh-as-access", "no-user-claim", "garbage"]  # fmt: skip


def _claims(subject, **overrides) -> dict:
    now = int(time.time())
    claims = {"token_type": "access", "exp": now + 300, "iat": now, "jti": uuid.uuid4().hex,
              settings.SIMPLE_JWT.get("USER_ID_CLAIM", "user_id"): str(subject)}  # fmt: skip
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


def _sign(claims: dict, key: str | None = None) -> str:
    return jwt.encode(claims, key or settings.SIMPLE_JWT["SIGNING_KEY"], algorithm="HS256")


def _b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def make_bad_token(kind: str, django_user_model) -> str:
    """A token of the given kind for a user that exists and is active (unless the kind says otherwise)."""
    user = django_user_model.objects.create_user(username=f"u-{uuid.uuid4().hex[:8]}", password="pw-unused-12345")
    now = int(time.time())
    if kind == "alg-none":
        return f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(_claims(user.pk))}."
    if kind == "wrong-signature":
        return _sign(_claims(user.pk), key="another-key-" + "x" * 40)
    if kind == "expired":
        return _sign(_claims(user.pk, exp=now - 5, iat=now - 600))
    if kind == "not-yet-valid":
        return _sign(_claims(user.pk, nbf=now + 600))
    if kind == "issued-in-future":
        return _sign(_claims(user.pk, iat=now + 600, exp=now + 900))
    if kind == "deleted-user":
        token = _sign(_claims(user.pk))
        user.delete()
        return token
    if kind == "deactivated-user":
        user.is_active = False
        user.save()
        return _sign(_claims(user.pk))
    if kind == "refresh-as-access":
        return str(RefreshToken.for_user(user))
    if kind == "no-user-claim":
        return _sign(_claims(user.pk, user_id=None))
    if kind == "garbage":
        return "eyJhbGciOiJIUzI1NiJ9.not-json.sig"
    raise ValueError(kind)


@pytest.fixture
def bad_token(django_user_model):
    return lambda kind: make_bad_token(kind, django_user_model)


async def _stomp_error(application, *, handshake_token: str | None, connect_token: str | None):
    headers = [(b"authorization", f"Bearer {handshake_token}".encode())] if handshake_token else []
    ws = WebsocketCommunicator(application, "/ws", subprotocols=["v12.stomp"], headers=headers)
    connected, _ = await ws.connect(WAIT)
    assert connected  # the handshake itself never demands credentials; CONNECT is the gate
    connect_headers = {"Authorization": f"Bearer {connect_token}"} if connect_token else {}
    await ws.send_to(text_data=wire("CONNECT", accept_version="1.2", **connect_headers).decode())
    parser, frames = FrameParser(), []
    while not frames:
        message = await ws.receive_output(WAIT)
        assert message["type"] == "websocket.send", message
        frames += parser.feed(message.get("bytes") or message["text"].encode())
    close = await ws.receive_output(WAIT)
    await ws.disconnect()
    return frames[0], close


@pytest.mark.parametrize("kind", BAD_TOKENS)
async def test_bad_token_in_stomp_connect_gets_unauthorized_error_and_close(application, bad_token, kind):
    token = await database_sync_to_async(bad_token)(kind)
    frame, close = await _stomp_error(application, handshake_token=None, connect_token=token)
    assert (frame.command, frame.get("message")) == ("ERROR", "Unauthorized")
    assert frame.get("code") in ("unauthorized", "token-invalid", "token-expired")
    assert close["type"] == "websocket.close"
    assert token not in frame.body.decode()  # the token is never echoed back


@pytest.mark.parametrize("kind", BAD_TOKENS)
async def test_bad_token_at_the_websocket_handshake_does_not_authenticate_connect(application, bad_token, kind):
    token = await database_sync_to_async(bad_token)(kind)
    frame, _ = await _stomp_error(application, handshake_token=token, connect_token=None)
    assert (frame.command, frame.get("message")) == ("ERROR", "Unauthorized")


@pytest.mark.parametrize("kind", BAD_TOKENS)
def test_bad_token_is_refused_by_rest_and_the_sse_ticket_endpoint(bad_token, kind):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {bad_token(kind)}")
    assert client.get("/api/me/").status_code == 401
    assert client.get("/api/rooms/").status_code == 401
    response = client.post("/api/notifications/ticket/")
    assert response.status_code == 401
    assert "ticket" not in response.json()


@pytest.mark.parametrize("kind", BAD_TOKENS)
async def test_bad_bearer_token_is_refused_by_the_sse_stream(application, bad_token, kind):
    token = await database_sync_to_async(bad_token)(kind)
    http = HttpCommunicator(application, "GET", "/api/notifications/stream/",
                            headers=[(b"authorization", f"Bearer {token}".encode())])  # fmt: skip
    response = await http.get_response(timeout=WAIT)
    assert response["status"] == 401
    assert b"text/event-stream" not in dict(response["headers"]).get(b"content-type", b"")


def test_good_token_still_works_everywhere(make_user):
    """The control case: the same entry points accept a valid access token."""
    from tests.conftest import access_token_for

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {access_token_for(make_user('carol'))}")
    assert client.get("/api/me/").status_code == 200
    assert client.post("/api/notifications/ticket/").status_code == 201
