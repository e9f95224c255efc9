"""Mentions written by the chat writer's batches reach the SSE stream and the REST list exactly once."""

from __future__ import annotations

import json
import time

import httpx
import pytest

from chat import services as chat
from notifications.models import Notification
from tests.conftest import access_token_for
from tests.notifications.conftest import stream_url, ticket_for
from tests.reliability.live_stomp import LiveStomp

pytestmark = pytest.mark.live


def test_mentions_in_one_batch_are_notified_once_on_the_stream_and_in_the_rest_list(
    daphne_factory, redis_url, sse, make_user
):
    server = daphne_factory(REDIS_URL=redis_url, CHAT_WRITE_WINDOW_MS="300")  # the SENDs below share a batch
    authors = [make_user(f"author{i}") for i in range(3)]
    bob = make_user("bob")
    room = chat.room_create(creator=authors[0], name="General", slug="general")
    for user in (*authors[1:], bob):
        chat.room_join(room=room, user=user)
    stream = sse.open(stream_url(server.url, ticket=ticket_for(server.url, bob)))

    clients = [LiveStomp.connect(f"{server.ws_url}/ws", access_token_for(user)) for user in authors]
    sends = [(0, "hey @bob", "m-0"), (1, "@Bob and @bob again", "m-1"), (2, "@bob, look", "m-2")]
    for index, body, client_id in sends:
        clients[index].send_json("/app/rooms.general", {"body": body, "client_id": client_id}, receipt=client_id)
    for (_, _, client_id), stomp in zip(sends, clients, strict=True):
        stomp.receipt(client_id)
    # A resend of the same client_id (a lost RECEIPT) in a later batch notifies nobody again.
    clients[0].send_json("/app/rooms.general", {"body": "hey @bob", "client_id": "m-0"}, receipt="again")
    clients[0].receipt("again")

    events = stream.wait_events(3)
    time.sleep(0.5)  # room for a duplicate to show up (there must be none): not a timing assertion
    stored = list(Notification.objects.filter(recipient=bob).order_by("id"))
    assert len(stored) == 3 and {n.kind for n in stored} == {"mention"}
    assert [int(e.id) for e in stream.events] == [n.pk for n in stored]  # each once, in id order
    assert sorted(json.loads(e.data)["payload"]["author"] for e in events) == ["author0", "author1", "author2"]
    listed = httpx.get(f"{server.url}/api/notifications/", headers={"Authorization": f"Bearer {access_token_for(bob)}"},
                       timeout=10).json()["results"]  # fmt: skip
    assert sorted(n["id"] for n in listed) == [n.pk for n in stored]
    for stomp in clients:
        stomp.close()
