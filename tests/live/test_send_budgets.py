"""Issue 16 items 7 and 9, live on daphne over a raw WebSocket: one user's budget across connections, and
SUBSCRIBE/UNSUBSCRIBE floods counted against the connection's budget."""

from __future__ import annotations

import json

import pytest
from rest_framework_simplejwt.tokens import AccessToken

from tests.live.raw_stomp import connect

pytestmark = pytest.mark.live
ERRORS = "/user/queue/errors"


def refusal_codes(client) -> list[str]:
    return [json.loads(f.body)["code"] for f in client.frames if f.get("destination") == ERRORS]


def test_one_users_connections_share_one_send_budget(daphne_factory, make_user):
    # The user's bucket refills slowly here, so the count does not depend on how fast the machine is.
    server = daphne_factory(STOMP_USER_SEND_RATE="0.01", STOMP_USER_SEND_BURST="10")
    url = server.url.replace("http", "ws")
    token = str(AccessToken.for_user(make_user("flooder")))
    clients = [connect(url, token) for _ in range(3)]
    for client in clients:
        client.send("SUBSCRIBE", id="errors", destination=ERRORS, receipt="errors")
        assert client.read_until(lambda f: f.get("receipt-id") == "errors", "RECEIPT") is not None
    for n in range(10):
        for i, client in enumerate(clients):
            client.send("SEND", b"x", destination="/topic/budget", receipt=f"{i}-{n}")
    for i, client in enumerate(clients):
        client.send("SEND", b"x", destination="/topic/budget", receipt=f"{i}-last")
    receipts = 0
    for i, client in enumerate(clients):
        # Frames are answered in order: once the last SEND is answered (RECEIPT or refusal), all were.
        client.read_until(
            lambda f, i=i: (
                f.get("receipt-id") == f"{i}-last"
                or (f.get("destination") == ERRORS and json.loads(f.body)["receipt"] == f"{i}-last")
            ),
            "the last SEND's answer",
        )
        receipts += sum(f.command == "RECEIPT" and f.get("receipt-id") != "errors" for f in client.frames)
    refused = [code for client in clients for code in refusal_codes(client)]
    assert receipts == 10, receipts  # the user's burst, shared by the three connections
    assert refused == ["rate-limited"] * 23
    # Another user is not affected.
    other = connect(url, str(AccessToken.for_user(make_user("other"))))
    other.send("SEND", b"x", destination="/topic/budget", receipt="other")
    assert other.read_until(lambda f: f.get("receipt-id") == "other", "RECEIPT") is not None
    for client in [*clients, other]:
        client.close()


def test_a_subscribe_unsubscribe_flood_is_refused(daphne_factory, make_user):
    server = daphne_factory(STOMP_SEND_RATE="20")  # bursts of 1000 tokens, a SUBSCRIBE costs 5
    url = server.url.replace("http", "ws")
    flooder = connect(url, str(AccessToken.for_user(make_user("flooder"))))
    flooder.send("SUBSCRIBE", id="errors", destination=ERRORS, receipt="errors")
    for n in range(400):
        flooder.send("SUBSCRIBE", id=f"s{n}", destination="/topic/flood", receipt=f"s{n}")
        flooder.send("UNSUBSCRIBE", id=f"s{n}", receipt=f"u{n}")
    refusal = flooder.read_until(lambda f: f.get("destination") == ERRORS, "the first refusal")
    assert refusal is not None, flooder.frames[-3:]
    body = json.loads(refusal.body)
    assert body["code"] == "rate-limited" and body["receipt"].startswith("s")
    flooder.read_until(lambda f: f.command == "ERROR", "the end")  # the UNSUBSCRIBE of what was never made
    receipts = sum(f.command == "RECEIPT" for f in flooder.frames)
    assert receipts < 800 // 2
    flooder.close()
