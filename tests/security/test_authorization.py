"""No access across rooms or users: subscribe, send, history, presence, typing, DMs and notifications, over STOMP
and REST; the author of a message is always the authenticated user."""

from __future__ import annotations

import json

import pytest
from channels.db import database_sync_to_async
from rest_framework.test import APIClient

from chat import services
from chat.models import Message
from chat.selectors import direct_room_slug
from notifications.models import Notification
from tests.conftest import access_token_for
from tests.security.stomp_client import StompTestClient

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("fresh_broker")]


@pytest.fixture
def world(make_user):
    """alice owns the private room 'secret'; mallory is a user who is not in it."""
    alice, mallory, bob = make_user("alice"), make_user("mallory"), make_user("bob")
    secret = services.room_create(creator=alice, name="Secret", slug="secret", is_private=True)
    services.message_create(room=secret, author=alice, body="the launch code is 0000")
    services.direct_room_get_or_create(user=alice, other_username="bob")
    return {"alice": alice, "mallory": mallory, "bob": bob, "secret": secret}


def rest(user) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {access_token_for(user)}")
    return client


@pytest.mark.parametrize(
    ("destination", "headers"),
    [("/topic/rooms.secret", {}), ("/topic/rooms.secret", {"since-id": "0"}), ("/topic/rooms.secret.presence", {}),
     ("/topic/rooms.secret.typing", {}), ("/topic/rooms.{dm}", {}), ("/topic/rooms.no-such-room", {})],
)  # fmt: skip
async def test_non_member_cannot_subscribe_to_a_private_room_topic(application, world, destination, headers):
    token = await database_sync_to_async(access_token_for)(world["mallory"])
    client = await StompTestClient.open(application, token=token)
    dm = direct_room_slug(world["alice"].pk, world["bob"].pk)  # alice and bob's conversation
    await client.subscribe(destination.replace("{dm}", dm), "s", **headers)
    error = await client.error()
    assert error.get("message") == "Forbidden"
    assert not [f for f in client.frames if f.command == "MESSAGE"]  # nothing replayed, no snapshot
    assert "launch code" not in b"".join(f.body for f in client.frames).decode()
    await client.close()


@pytest.mark.parametrize(
    ("destination", "verb"),
    [("/user/2/queue/dm", "subscribe"), ("user:2:/queue/dm", "subscribe"), ("/queue/dm", "subscribe"),
     ("/topic/rooms.secret", "send"), ("/topic/rooms.general.presence", "send"), ("/user/queue/dm", "send"),
     ("/app/rooms.secret", "subscribe")],
)  # fmt: skip
async def test_destinations_of_other_users_and_broker_topics_are_refused_by_policy(application, world, destination,
                                                                                    verb):  # fmt: skip
    token = await database_sync_to_async(access_token_for)(world["mallory"])
    client = await StompTestClient.open(application, token=token)
    if verb == "subscribe":
        await client.subscribe(destination, "s")
    else:
        await client.send("SEND", "{}", destination=destination, receipt="x")
    error = await client.error()
    assert error.get("message") in ("Forbidden", "invalid destination")
    assert not [f for f in client.frames if f.command == "RECEIPT"]
    await client.close()


async def test_non_member_cannot_send_to_a_private_room_and_nothing_is_stored(application, world):
    token = await database_sync_to_async(access_token_for)(world["mallory"])
    client = await StompTestClient.open(application, token=token)
    await client.subscribe("/user/queue/errors", "errors")
    await client.receipt("r-errors")
    await client.send("SEND", json.dumps({"body": "let me in"}), destination="/app/rooms.secret",
                      receipt="s1", **{"content-type": "application/json"})  # fmt: skip
    assert (await client.queue_error())["code"] == "not-found"
    await client.send("SEND", '{"typing": true}', destination="/app/rooms.secret.typing", receipt="t1")
    assert (await client.queue_error())["code"] == "not-found"
    assert not [f for f in client.frames if f.command == "RECEIPT" and f.get("receipt-id") in ("s1", "t1")]
    await client.close()
    assert not await database_sync_to_async(Message.objects.filter(body="let me in").exists)()


async def test_the_author_is_the_authenticated_user_whatever_the_frame_claims(application, world):
    token = await database_sync_to_async(access_token_for)(world["alice"])
    client = await StompTestClient.open(application, token=token)
    body = {"body": "signed by bob?", "author": "bob", "author_id": world["bob"].pk, "user": "bob"}
    await client.send("SEND", json.dumps(body), destination="/app/rooms.secret", receipt="s1",
                      **{"content-type": "application/json", "user-name": "bob", "login": "bob"})  # fmt: skip
    await client.receipt("s1")
    await client.close()
    message = await database_sync_to_async(Message.objects.select_related("author").get)(body="signed by bob?")
    assert message.author.username == "alice"


def test_rest_gives_no_access_to_rooms_history_members_or_reads_across_users(world):
    mallory = rest(world["mallory"])
    for method, path, data in [
        ("get", "/api/rooms/secret/", None),
        ("get", "/api/rooms/secret/messages/", None),
        ("get", "/api/rooms/secret/messages/?after=0", None),
        ("post", "/api/rooms/secret/messages/", {"body": "hi"}),
        ("get", "/api/rooms/secret/members/", None),
        ("post", "/api/rooms/secret/members/", {"username": "mallory"}),
        ("post", "/api/rooms/secret/join/", None),
        ("post", "/api/rooms/secret/read/", {"message_id": 1}),
    ]:
        response = getattr(mallory, method)(path, data, format="json")
        assert response.status_code in (403, 404), (path, response.status_code)
        assert "launch code" not in response.content.decode()
    assert "secret" not in [room["slug"] for room in mallory.get("/api/rooms/").json()["results"]]
    assert not Message.objects.filter(body="hi").exists()


def test_rest_author_is_the_authenticated_user(world):
    response = rest(world["alice"]).post("/api/rooms/secret/messages/",
                                         {"body": "rest body", "author": world["bob"].pk}, format="json")  # fmt: skip
    assert response.status_code == 201
    assert Message.objects.get(body="rest body").author == world["alice"]


def test_notifications_of_another_user_cannot_be_read_or_marked(world):
    note = Notification.objects.create(recipient=world["alice"], kind="mention", payload={"text": "private"})
    mallory = rest(world["mallory"])
    assert note.pk not in [n["id"] for n in mallory.get("/api/notifications/").json()["results"]]
    assert mallory.post(f"/api/notifications/{note.pk}/read/").status_code == 404
    mallory.post("/api/notifications/read-all/")
    note.refresh_from_db()
    assert note.read is False
