"""Read events on the live stream (issue 20): when a user's notifications are read on one page (opening
a room, the bell's buttons), every open stream of that user gets ``event: read`` with the new unread
count, without an id (Last-Event-ID stays on the last notification), across processes too."""

from __future__ import annotations

import json

import httpx
import pytest

from notifications import services
from notifications.models import Notification
from tests.conftest import access_token_for
from tests.notifications.conftest import stream_url, ticket_for

pytestmark = pytest.mark.live


def mentions(user, room: str, n: int) -> list[Notification]:
    payload = {"room": room, "room_name": room, "author": "alice", "excerpt": "hi"}
    return [services.notification_create(recipient=user, kind="mention", payload=payload) for _ in range(n)]


def test_opening_a_room_sends_a_read_event_without_an_id_to_the_users_stream(daphne_factory, sse, make_user):
    server = daphne_factory()  # one process, the in-memory layer of `make run`: everything goes through it
    bob, alice = make_user("bob"), make_user("alice")
    stream = sse.open(stream_url(server.url, ticket=ticket_for(server.url, bob)))
    as_alice = {"Authorization": f"Bearer {access_token_for(alice)}"}
    slugs = []
    for name in ("Lobby", "Side"):
        room = httpx.post(f"{server.url}/api/rooms/", json={"name": name}, headers=as_alice, timeout=10).json()
        slugs.append(room["slug"])
    for slug, count in zip(slugs, (2, 1), strict=True):
        for i in range(count):
            httpx.post(f"{server.url}/api/rooms/{slug}/messages/", json={"body": f"@bob {i}"}, headers=as_alice,
                       timeout=10).raise_for_status()  # fmt: skip
    stream.wait_events(3)
    last_id = stream.parser.last_event_id
    headers = {"Authorization": f"Bearer {access_token_for(bob)}"}
    answer = httpx.post(f"{server.url}/api/notifications/read-room/", json={"room": slugs[0]}, headers=headers,
                        timeout=10)  # fmt: skip
    assert answer.status_code == 200 and answer.json() == {"updated": 2, "unread": 1}
    read = stream.wait_events(4)[3]
    assert read.event == "read" and read.id is None
    assert json.loads(read.data) == {"scope": "room", "room": slugs[0], "unread": 1}
    assert stream.parser.last_event_id == last_id  # a resume still starts after the last notification
    side = Notification.objects.get(recipient=bob, payload__room=slugs[1])
    httpx.post(f"{server.url}/api/notifications/{side.pk}/read/", headers=headers, timeout=10).raise_for_status()
    assert json.loads(stream.wait_events(5)[4].data) == {"scope": "one", "id": side.pk, "unread": 0}


def test_a_read_on_one_process_reaches_the_streams_held_by_another(daphne_factory, redis_layer, sse, make_user):
    holder = daphne_factory(REDIS_URL=redis_layer)
    writer = daphne_factory(REDIS_URL=redis_layer)
    bob, carol = make_user("bob"), make_user("carol")
    streams = [sse.open(stream_url(holder.url, ticket=ticket_for(holder.url, bob))) for _ in range(2)]
    other = sse.open(stream_url(holder.url, ticket=ticket_for(holder.url, carol)))
    created = mentions(bob, "lobby", 3)
    mentions(carol, "lobby", 1)
    for stream in streams:
        stream.wait_ids([n.pk for n in created])
    other.wait_events(1)
    headers = {"Authorization": f"Bearer {access_token_for(bob)}"}
    httpx.post(f"{writer.url}/api/notifications/read-all/", json={"up_to": created[1].pk}, headers=headers,
               timeout=10).raise_for_status()  # fmt: skip
    for stream in streams:  # every tab of bob's
        read = stream.wait_events(4)[3]
        assert read.event == "read" and json.loads(read.data) == {"scope": "all", "up_to": created[1].pk, "unread": 1}
    assert [e.event for e in other.events] == ["mention"]  # carol's stream hears nothing of bob's reads
