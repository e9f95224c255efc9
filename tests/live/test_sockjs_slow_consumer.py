"""Issue 16 item 2, SockJS half, live: a SockJS session that stops polling is cut off as a slow consumer.

Over an HTTP transport the server's writes only append to the session's queue, so a client that never
polls again would make it grow without limit. The abuser opens an xhr-polling session the way the
frontend does, CONNECTs, SUBSCRIBEs to a room and never polls again while messages flood into the room;
its session's unsent bytes (``SockJSTransport.pending_bytes``) pass ``STOMP_MAX_UNSENT_BYTES`` and the
connection ends with ``ERROR slow consumer``, which the abuser finds (after a bounded backlog) when it
polls at last. An honest SockJS client of the same room keeps sending and receiving throughout.
"""

from __future__ import annotations

import json
import secrets
import time

import httpx
import pytest
from rest_framework_simplejwt.tokens import AccessToken

from chat.services import room_create
from stompengine.stomp.codec import FrameParser
from tests.conftest import wait_for
from tests.stomp.fakes import wire

pytestmark = pytest.mark.live
WAIT = 30.0
BOUND = 64 * 1024
ROUNDS = 30  # at most; the abuser is cut off after about 50 messages
BATCH = 10
ORIGIN = "http://localhost:8000"


class SockJSStomp:
    """STOMP over a SockJS xhr-polling session, as static/js/chat.js opens it (key, 32-character id)."""

    def __init__(self, base: str, token: str) -> None:
        key = httpx.post(f"{base}/ws/key", headers={"Origin": ORIGIN}).json()["key"]
        self.url = f"{base}/ws/000/{secrets.token_hex(16)}"
        self.http = httpx.Client(params={"key": key}, headers={"Origin": ORIGIN}, timeout=WAIT)
        self.parser = FrameParser(max_frame_size=1 << 26)
        self.frames: list = []
        self.closed: str | None = None
        assert self.http.post(f"{self.url}/xhr").text == "o\n"
        self.send("CONNECT", accept_version="1.2", host="chat", Authorization=f"Bearer {token}")
        assert self.poll_until(lambda f: f.command in ("CONNECTED", "ERROR")).command == "CONNECTED"

    def send(self, command: str, body: bytes = b"", **headers: str) -> None:
        text = wire(command, body, **headers).decode()
        assert self.http.post(f"{self.url}/xhr_send", content=json.dumps([text])).status_code == 204

    def poll(self) -> str:
        """One poll; its SockJS frame's STOMP frames go into ``self.frames``; returns the raw answer."""
        reply = self.http.post(f"{self.url}/xhr").text
        if reply.startswith("a"):
            for text in json.loads(reply[1:]):
                self.frames += self.parser.feed(text.encode())
        elif reply.startswith("c"):
            self.closed = reply.strip()
        return reply

    def poll_until(self, predicate):
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline and self.closed is None:
            found = next((f for f in self.frames if predicate(f)), None)
            if found is not None:
                return found
            self.poll()
        return next((f for f in self.frames if predicate(f)), None)


def test_a_sockjs_session_that_stops_polling_is_cut_off_as_a_slow_consumer_and_an_honest_one_keeps_working(
    daphne_factory, make_user
):
    owner = make_user("owner")
    room = room_create(creator=owner, name="Busy")
    server = daphne_factory(STOMP_MAX_UNSENT_BYTES=str(BOUND))
    topic = f"/topic/rooms.{room.slug}"
    honest = SockJSStomp(server.url, str(AccessToken.for_user(owner)))
    honest.send("SUBSCRIBE", id="live", destination=topic, receipt="sub")
    assert honest.poll_until(lambda f: f.get("receipt-id") == "sub") is not None
    abuser = SockJSStomp(server.url, str(AccessToken.for_user(make_user("abuser"))))
    abuser.send("SUBSCRIBE", id="live", destination=topic, receipt="sub")
    assert abuser.poll_until(lambda f: f.get("receipt-id") == "sub") is not None
    # From here on the abuser never polls. Messages flood into the room a batch at a time; the honest
    # client reads each batch before the next, so only the abuser's session piles them up. Each batch is
    # written out to the session at once, so the connection's own queue stays short: only the session's
    # unsent bytes show the backlog.
    for batch in range(ROUNDS):
        frames = [
            wire("SEND", json.dumps({"body": f"{batch:03d}-{n:02d} " + "m" * 1000}).encode(),
                 destination=f"/app/rooms.{room.slug}", content_type="application/json").decode()
            for n in range(BATCH)
        ]  # fmt: skip
        assert honest.http.post(f"{honest.url}/xhr_send", content=json.dumps(frames)).status_code == 204
        last = f"{batch:03d}-{BATCH - 1:02d}"
        assert honest.poll_until(lambda f, last=last: f.command == "MESSAGE" and last.encode() in f.body)
        if "closing as a slow consumer" in server.log():
            break
    wait_for(lambda: "closing as a slow consumer" in server.log(), timeout=WAIT, what="a slow-consumer disconnect")

    honest.send("SEND", json.dumps({"body": "still here"}).encode(), destination=f"/app/rooms.{room.slug}",
                content_type="application/json", receipt="send")  # fmt: skip
    assert honest.poll_until(lambda f: f.get("receipt-id") == "send") is not None
    assert honest.poll_until(lambda f: f.command == "MESSAGE" and b"still here" in f.body) is not None
    assert not [f for f in honest.frames if f.command == "ERROR"]

    # Polling at last, the abuser gets what was queued before the bound (bounded), the ERROR, the close.
    first = abuser.poll()
    assert len(first) < 4 * BOUND, len(first)  # its session's buffer did not grow with the flood
    error = abuser.poll_until(lambda f: f.command == "ERROR")
    assert error is not None and (error.get("message"), error.get("code")) == ("slow consumer", "slow-consumer")
    abuser.poll_until(lambda f: False)
    assert abuser.closed is not None and abuser.closed.startswith("c[1000")
