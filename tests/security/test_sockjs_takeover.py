"""Issue 16 item 4 over the real STOMP endpoint: knowing a SockJS session id is not enough to use it.

The reported attack: an intruder who read a live session's id (daphne's access log) sent a SEND into it,
stored as the session's user in a private room, and polled it, receiving that user's CONNECTED frame
and a private message. Here the victim connects as the frontend does (server-issued key, 32-character
session id) and the intruder, knowing the id, tries both, without the key and from another address.
"""

from __future__ import annotations

import json
import secrets

import httpx
import pytest

from chat import services
from chat.models import Message
from tests.conftest import access_token_for

pytestmark = pytest.mark.live
ORIGIN = "http://localhost:8000"


def stomp(command: str, body: str = "", **headers: str) -> str:
    lines = [command, *(f"{name.replace('_', '-')}:{value}" for name, value in headers.items())]
    return "\n".join(lines) + "\n\n" + body + "\x00"


def frames(reply: str) -> list[str]:
    """The messages of an ``a[...]`` SockJS frame (STOMP text), or [] for o/h."""
    return json.loads(reply[1:]) if reply.startswith("a") else []


@pytest.fixture
def victim_room(make_user):
    alice = make_user("alice")
    room = services.room_create(creator=alice, name="Secret", slug="secret", is_private=True)
    return alice, room


def test_an_intruder_knowing_the_session_id_can_neither_send_as_the_user_nor_read_the_session(
    daphne_factory, victim_room
):
    alice, room = victim_room
    server = daphne_factory()
    key = httpx.post(f"{server.url}/ws/key", headers={"Origin": ORIGIN}).json()["key"]
    session = f"{server.url}/ws/123/{secrets.token_hex(16)}"
    victim = httpx.Client(params={"key": key}, headers={"Origin": ORIGIN}, timeout=10)
    assert victim.post(f"{session}/xhr").text == "o\n"
    connect = stomp("CONNECT", accept_version="1.2", host="chat", Authorization=f"Bearer {access_token_for(alice)}")
    assert victim.post(f"{session}/xhr_send", content=json.dumps([connect])).status_code == 204

    forged = stomp(
        "SEND", json.dumps({"body": "written by the intruder"}),
        destination="/app/rooms.secret", content_type="application/json",
    )  # fmt: skip
    intruders = [
        httpx.Client(timeout=10),  # the id alone, no Origin, as curl would
        httpx.Client(headers={"Origin": ORIGIN}, timeout=10),  # the page's origin, no key
        httpx.Client(  # even with the key, from another address
            params={"key": key}, headers={"Origin": ORIGIN}, timeout=10,
            transport=httpx.HTTPTransport(local_address="127.0.0.2"),
        ),
    ]  # fmt: skip
    for intruder in intruders:
        for server_id in ("123", "999"):
            url = session.replace("/123/", f"/{server_id}/")
            sent = intruder.post(f"{url}/xhr_send", content=json.dumps([forged]))
            polled = intruder.post(f"{url}/xhr")
            assert (sent.status_code, polled.status_code) == (403, 403), (sent.text, polled.text)
            assert "CONNECTED" not in polled.text

    # The victim's session is intact: its CONNECTED frame is still waiting for it, and it can chat.
    connected = frames(victim.post(f"{session}/xhr").text)
    assert connected and connected[0].startswith("CONNECTED")
    mine = stomp(
        "SEND", json.dumps({"body": "mine"}),
        destination="/app/rooms.secret", content_type="application/json", receipt="r1",
    )  # fmt: skip
    assert victim.post(f"{session}/xhr_send", content=json.dumps([mine])).status_code == 204
    assert any(f.startswith("RECEIPT") for f in frames(victim.post(f"{session}/xhr").text))
    assert list(Message.objects.filter(room=room).values_list("author__username", "body")) == [("alice", "mine")]
