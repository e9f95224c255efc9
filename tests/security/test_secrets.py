"""Secrets stay secret: no token or ticket in the server's log (even at DEBUG), and SSE tickets work once."""

from __future__ import annotations

import logging

import httpx
import pytest

from chatproject.logredact import RedactSecrets, redact
from tests.conftest import TEST_PASSWORD
from tests.reliability.live_stomp import LiveStomp

JWT = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJ1c2VyX2lkIjoiMSJ9.c2lnbmF0dXJlLWJ5dGVz"


@pytest.mark.parametrize(
    "line",
    [f"token {JWT} refused", f"Authorization: Bearer {JWT}", "Authorization: Bearer opaque-token-123",
     "GET /api/notifications/stream/?ticket=abcDEF123_-x&x=1", "GET /login/handover/?code=s3cr3t-code",
     "passcode:opaque-token-123"],
)  # fmt: skip
def test_redact_masks_every_credential_shape(line):
    cleaned = redact(line)
    for secret in (JWT, "opaque-token-123", "abcDEF123_-x", "s3cr3t-code"):
        assert secret not in cleaned
    assert "[redacted]" in cleaned


def test_the_filter_rewrites_records_with_arguments_and_tracebacks():
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "refused %s for %s", (JWT, "alice"), None)
    assert RedactSecrets().filter(record)
    assert record.getMessage() == "refused [redacted] for alice"
    try:
        raise ValueError(f"bad header Bearer {JWT}")
    except ValueError:
        import sys

        failed = logging.LogRecord("x", logging.ERROR, __file__, 1, "boom", None, sys.exc_info())
    RedactSecrets().filter(failed)
    assert JWT not in (failed.exc_text or "")


@pytest.mark.live
def test_no_token_or_ticket_reaches_the_server_log_at_debug_level(daphne_factory, make_user):
    make_user("alice")
    server = daphne_factory(LOG_LEVEL="DEBUG")
    http = httpx.Client(base_url=server.url, timeout=10)
    pair = http.post("/api/auth/token/", json={"username": "alice", "password": TEST_PASSWORD}).json()
    access, refresh = pair["access"], pair["refresh"]
    secrets = [access, refresh]
    # STOMP: handshake Bearer, CONNECT passcode, a refresh over /app/auth.refresh, a refused token.
    handshake = LiveStomp.connect(f"{server.ws_url}/ws", None)
    handshake.send("CONNECT", accept_version="1.2", login="alice", passcode=access)
    assert handshake.next_frame().command == "CONNECTED"
    fresh = http.post("/api/auth/token/refresh/", json={"refresh": refresh}).json()["access"]
    secrets.append(fresh)
    handshake.send("SEND", b"", destination="/app/auth.refresh", receipt="r", Authorization=f"Bearer {fresh}")
    handshake.receipt("r")
    handshake.close()
    bad = access[:-4] + ("AAAA" if not access.endswith("AAAA") else "BBBB")
    secrets.append(bad)
    refused = LiveStomp.connect(f"{server.ws_url}/ws", None)
    refused.send("CONNECT", accept_version="1.2", Authorization=f"Bearer {bad}")
    assert refused.next_frame().command == "ERROR"
    refused.close()
    # REST refusals are logged by django.request.
    assert http.get("/api/me/", headers={"Authorization": f"Bearer {bad}"}).status_code == 401
    # SSE: a ticket in the URL, redeemed once; the second use is refused.
    ticket = http.post("/api/notifications/ticket/", headers={"Authorization": f"Bearer {access}"}).json()["ticket"]
    secrets.append(ticket)
    with http.stream("GET", f"/api/notifications/stream/?ticket={ticket}") as stream:
        assert stream.status_code == 200
        assert stream.headers["content-type"].startswith("text/event-stream")
    assert http.get(f"/api/notifications/stream/?ticket={ticket}").status_code == 401
    http.close()
    server.stop()
    log = server.log()
    assert "STOMP" in log or "stomp" in log or "DEBUG" in log  # the log did record these requests
    for secret in secrets:
        assert secret not in log
        assert secret.split(".")[-1] not in log  # not even a token's signature part


def test_sse_ticket_is_single_use_and_only_for_its_purpose(db, make_user):
    from accounts.models import OneTimeCode
    from accounts.services import CodeRejected, one_time_code_issue, one_time_code_redeem
    from notifications.tickets import StreamUnauthorized, stream_ticket_issue, stream_user_resolve

    user = make_user("alice")
    ticket = stream_ticket_issue(user=user)
    assert stream_user_resolve(ticket=ticket, bearer=None, session_key=None) == user
    with pytest.raises(StreamUnauthorized):
        stream_user_resolve(ticket=ticket, bearer=None, session_key=None)
    # A login hand-over code is not a stream ticket, and a ticket is not a hand-over code.
    handover = one_time_code_issue(user=user, purpose=OneTimeCode.Purpose.HANDOVER, ttl_seconds=60)
    with pytest.raises(StreamUnauthorized):
        stream_user_resolve(ticket=handover, bearer=None, session_key=None)
    with pytest.raises(CodeRejected):
        one_time_code_redeem(code=stream_ticket_issue(user=user), purpose=OneTimeCode.Purpose.HANDOVER)
    assert not OneTimeCode.objects.filter(code_hash__contains=ticket).exists()  # stored only as a hash
