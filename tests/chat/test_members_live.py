"""Member changes reach open STOMP connections on a live daphne: a removed member or a leaver stops
receiving and sending at once, an archived room refuses subscriptions, and a read marker moving in a
direct room is announced as an ``event: read`` MESSAGE."""

from __future__ import annotations

import json

import httpx
import pytest

from chat import services
from chat.models import Message, Room
from tests.conftest import access_token_for
from tests.live.raw_stomp import connect

pytestmark = pytest.mark.live
ERRORS = "/user/queue/errors"


@pytest.fixture
def server(daphne_factory, redis_server):
    # Through Redis, as in production: member changes travel as operations orders (chat/ops.py).
    return daphne_factory(REDIS_URL=f"redis://127.0.0.1:{redis_server.port}/0")


@pytest.fixture
def team(make_user):
    alice, bob, carol = make_user("alice"), make_user("bob"), make_user("carol")
    room = services.room_create(creator=alice, name="Team", slug="team", is_private=True)
    for name in ("bob", "carol"):
        services.room_member_add(room=room, actor=alice, username=name)
    return alice, bob, carol


def auth(user) -> dict[str, str]:
    return {"Authorization": f"Bearer {access_token_for(user)}"}


def subscribed(server, user, destination: str = "/topic/rooms.team"):
    client = connect(server.ws_url, access_token_for(user))
    client.send("SUBSCRIBE", id="e", destination=ERRORS)
    client.send("SUBSCRIBE", id="t", destination=destination, receipt="subscribed")
    assert client.read_until(lambda f: f.get("receipt-id") == "subscribed", "RECEIPT") is not None, client.frames
    return client


def bodies(client, destination: str = "/topic/rooms.team") -> list[str]:
    return [json.loads(f.body).get("body") for f in client.frames if f.get("destination") == destination]


def test_a_removed_member_can_no_longer_receive_or_send(server, team):
    alice, bob, _ = team
    client = subscribed(server, bob)
    sent = httpx.post(
        f"{server.url}/api/rooms/team/messages/", json={"body": "before"}, headers=auth(alice), timeout=10
    )
    assert sent.status_code == 201
    assert client.read_until(lambda f: b'"before"' in f.body, "the message before the removal") is not None

    removed = httpx.delete(f"{server.url}/api/rooms/team/members/bob/", headers=auth(alice), timeout=10)
    assert removed.status_code == 204
    notice = client.read_until(lambda f: f.get("destination") == ERRORS and b'"removed"' in f.body, "removal")
    assert notice is not None, client.frames
    assert json.loads(notice.body) == {
        "code": "removed",
        "detail": "you are no longer a member of team",
        "room": "team",
    }

    after = httpx.post(
        f"{server.url}/api/rooms/team/messages/", json={"body": "after"}, headers=auth(alice), timeout=10
    )
    assert after.status_code == 201
    client.send("SEND", b"let me back", destination="/app/rooms.team", receipt="mine")
    refusal = client.read_until(lambda f: f.get("destination") == ERRORS and b'"mine"' in f.body, "refusal")
    assert refusal is not None and json.loads(refusal.body)["code"] == "not-found", client.frames
    # The refusal came after alice's second message was broadcast: had bob still been subscribed, he would have it.
    assert bodies(client) == ["before"]
    assert not [f for f in client.frames if f.get("receipt-id") == "mine"]
    assert list(Message.objects.filter(room__slug="team").values_list("body", flat=True)) == ["before", "after"]

    client.send("SUBSCRIBE", id="again", destination="/topic/rooms.team")
    error = client.read_until(lambda f: f.command == "ERROR", "ERROR")
    assert error is not None and error.get("code") == "not-found"
    client.close()


def test_the_owner_leaving_ends_their_subscriptions_and_the_oldest_member_takes_over(server, team):
    alice, bob, _ = team
    client = subscribed(server, alice)
    left = httpx.post(f"{server.url}/api/rooms/team/leave/", headers=auth(alice), timeout=10)
    assert left.status_code == 200 and left.json()["new_owner"] == "bob"
    notice = client.read_until(lambda f: f.get("destination") == ERRORS and b'"removed"' in f.body, "notice")
    assert notice is not None, client.frames
    client.send("SEND", b"still here?", destination="/app/rooms.team", receipt="mine")
    refusal = client.read_until(lambda f: f.get("destination") == ERRORS and b'"mine"' in f.body, "refusal")
    assert refusal is not None, client.frames
    members = httpx.get(f"{server.url}/api/rooms/team/members/", headers=auth(bob), timeout=10).json()["results"]
    assert {m["username"]: m["role"] for m in members} == {"bob": "owner", "carol": "member"}
    client.close()


def test_an_archived_room_refuses_a_subscription_with_a_clear_error(server, team):
    _, bob, _ = team
    Room.objects.filter(slug="team").update(archived="2026-01-01T00:00:00Z")  # as the admin's field does
    client = connect(server.ws_url, access_token_for(bob))
    client.send("SUBSCRIBE", id="t", destination="/topic/rooms.team")
    error = client.read_until(lambda f: f.command == "ERROR", "ERROR")
    assert error is not None and error.get("code") == "forbidden", client.frames
    assert b"archived" in error.body or "archived" in (error.get("message") or "")
    client.close()


def test_a_read_marker_moving_in_a_direct_room_reaches_the_other_member(server, make_user):
    alice, bob = make_user("alice"), make_user("bob")
    room, _ = services.direct_room_get_or_create(user=alice, other_username="bob")
    message, _ = services.message_create(room=room, author=alice, body="did you see this?")
    topic = f"/topic/rooms.{room.slug}"
    client = subscribed(server, alice, topic)
    read = httpx.post(f"{server.url}/api/rooms/{room.slug}/read/", json={"last_read_message_id": message.id},
                      headers=auth(bob), timeout=10)  # fmt: skip
    assert read.status_code == 200
    event = client.read_until(lambda f: f.get("destination") == topic and f.get("event") == "read", "read event")
    assert event is not None, client.frames
    assert json.loads(event.body) == {"user": "bob", "last_read_message_id": message.id}
    assert event.get("event-seq") is None
    client.close()
