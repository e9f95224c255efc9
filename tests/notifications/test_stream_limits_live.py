"""Issue 16 items 3 and 6 under real daphne (and Redis): streams per user are capped and confirmed once per
subscription; a stream ends when the token that bought its ticket expires, on deactivation and on logout;
an inactive user is never notified."""

from __future__ import annotations

import json
from datetime import timedelta

import httpx
import pytest
from django.utils import timezone
from rest_framework_simplejwt.tokens import AccessToken, RefreshToken

from chat import services as chat_services
from notifications.models import Notification
from tests.conftest import access_token_for, wait_for
from tests.notifications.conftest import stream_url, ticket_for
from tests.notifications.test_notification_stream_live import notify, staff_stats

pytestmark = pytest.mark.live


@pytest.fixture
def ops_layer(settings, redis_url):
    """This test process sends operations orders (chat/ops.py) through the servers' Redis, as a worker would."""
    from channels.layers import channel_layers

    settings.REDIS_URL = redis_url  # the bus layer of this process rides it
    channel_layers.backends = {}
    yield redis_url
    channel_layers.backends = {}


def close_event(stream) -> dict:
    wait_for(lambda: stream.closed, timeout=20, what="the server to end the stream")
    closing = [e for e in stream.events if e.event == "close"]
    assert closing, f"no close event among {stream.events}"
    return json.loads(closing[-1].data)


# --- Item 3: a cap per user, and one barrier per subscription -----------------------------------------------


def test_streams_beyond_the_per_user_cap_are_a_json_429_and_a_slot_frees_on_close(
    daphne_factory, redis_layer, sse, make_user
):
    server = daphne_factory(REDIS_URL=redis_layer, SSE_MAX_STREAMS_PER_USER="3")
    bob, alice = make_user("bob"), make_user("alice")
    streams = [sse.open(stream_url(server.url, ticket=ticket_for(server.url, bob))) for _ in range(3)]
    assert [s.status for s in streams] == [200, 200, 200]
    refused = sse.open(stream_url(server.url, ticket=ticket_for(server.url, bob)))
    assert refused.status == 429
    assert refused.headers["content-type"] == "application/json"
    assert refused.json()["code"] == "too-many-streams" and refused.json()["limit"] == 3
    assert "at most 3" in refused.json()["detail"]
    # Someone else is not affected, and a closed stream frees its place.
    assert sse.open(stream_url(server.url, ticket=ticket_for(server.url, alice))).status == 200
    sse.close(streams[0])
    wait_for(lambda: sse.open(stream_url(server.url, ticket=ticket_for(server.url, bob))).status == 200,
             timeout=15, what="a freed place")  # fmt: skip
    # The streams that stayed open still deliver.
    (created,) = notify(bob)
    streams[1].wait_ids([created.pk])


def test_unused_tickets_per_user_are_capped_with_a_json_429(daphne_factory, make_user):
    server = daphne_factory(SSE_MAX_STREAMS_PER_USER="2")
    bob = make_user("bob")
    ticket_for(server.url, bob)
    ticket_for(server.url, bob)
    refused = httpx.post(f"{server.url}/api/notifications/ticket/",
                         headers={"Authorization": f"Bearer {access_token_for(bob)}"}, timeout=10)  # fmt: skip
    assert refused.status_code == 429
    assert refused.json()["code"] == "too-many-tickets" and refused.json()["limit"] == 2


def test_a_users_streams_join_without_broadcasting_to_the_group(daphne_factory, redis_layer, sse, make_user):
    """Joining is confirmed by Redis itself (stompengine.gating): n streams of a user put nothing on the group's
    channel, where the old barrier messages reached every stream of the group (n streams cost n x n)."""
    import redis

    server = daphne_factory(REDIS_URL=redis_layer)
    bob, staff = make_user("bob"), make_user("staff", is_staff=True)
    first = sse.open(stream_url(server.url, ticket=ticket_for(server.url, bob)))
    group = f"stomp:layer:g:notifications.user.{bob.pk}"  # the bus layer's Redis channel of bob's group
    client = redis.Redis.from_url(redis_layer)
    watch = client.pubsub()
    watch.subscribe(group)
    assert watch.get_message(timeout=10)["type"] == "subscribe"
    # Each open returns after the stream's subscription was confirmed.
    streams = [sse.open(stream_url(server.url, ticket=ticket_for(server.url, bob))) for _ in range(6)]
    wait_for(lambda: staff_stats(server, staff)["grouped_streams"] == 7, timeout=15, what="7 streams in the group")
    (created,) = notify(bob)
    for stream in [first, *streams]:
        stream.wait_ids([created.pk])
        assert stream.ids == [created.pk]
    # Everything the group's channel carried since the watch began: the one notification, nothing else.
    seen: list[bytes] = []
    while (message := watch.get_message(timeout=1.0)) is not None:
        if message["type"] == "message":
            seen.append(message["data"])
    watch.close()
    assert len(seen) == 1, seen


# --- Item 6: revocation ---------------------------------------------------------------------------------------


def short_token(user, seconds: int) -> str:
    token = AccessToken.for_user(user)
    token.set_exp(lifetime=timedelta(seconds=seconds))
    return str(token)


def test_a_stream_ends_when_the_access_token_that_bought_its_ticket_expires_and_resumes_losslessly(
    daphne_factory, redis_layer, sse, make_user
):
    server = daphne_factory(REDIS_URL=redis_layer)
    bob = make_user("bob")
    response = httpx.post(f"{server.url}/api/notifications/ticket/",
                          headers={"Authorization": f"Bearer {short_token(bob, 3)}"}, timeout=10)  # fmt: skip
    assert response.status_code == 201, response.text
    stream = sse.open(stream_url(server.url, ticket=response.json()["ticket"]))
    assert stream.status == 200
    (before,) = notify(bob)
    stream.wait_ids([before.pk])
    assert close_event(stream)["code"] == "token-expired"
    missed = notify(bob, 2)  # while the page buys a new ticket
    again = sse.open(
        stream_url(server.url, ticket=ticket_for(server.url, bob), last_event_id=stream.parser.last_event_id)
    )
    again.wait_ids([n.pk for n in missed])
    assert again.ids == [n.pk for n in missed]


def test_a_bearer_stream_ends_when_its_token_expires_and_frees_its_place(daphne_factory, sse, make_user):
    server = daphne_factory()
    staff = make_user("staff", is_staff=True)
    stream = sse.open(stream_url(server.url), headers={"Authorization": f"Bearer {short_token(make_user('bob'), 2)}"})
    assert stream.status == 200
    assert close_event(stream)["code"] == "token-expired"
    wait_for(lambda: staff_stats(server, staff)["open_streams"] == 0, timeout=15, what="the stream to be released")
    assert staff_stats(server, staff)["users"] == 0


def test_deactivating_a_user_ends_their_streams_on_every_worker_and_a_dm_is_not_notified(
    daphne_factory, ops_layer, sse, make_user
):
    one, two = daphne_factory(REDIS_URL=ops_layer), daphne_factory(REDIS_URL=ops_layer)
    alice, bob = make_user("alice"), make_user("bob")
    streams = [sse.open(stream_url(s.url, ticket=ticket_for(s.url, bob))) for s in (one, two)]
    room, _ = chat_services.direct_room_get_or_create(user=alice, other_username="bob")
    bob.is_active = False
    bob.save()  # the admin's "active" checkbox does exactly this save
    for stream in streams:
        assert close_event(stream)["code"] == "account-disabled"
    chat_services.message_create(room=room, author=alice, body="are you there?")
    assert not Notification.objects.filter(recipient=bob).exists()


def test_logout_ends_the_users_streams_on_every_worker(daphne_factory, ops_layer, redis_layer, sse, make_user):
    one, two = daphne_factory(REDIS_URL=ops_layer), daphne_factory(REDIS_URL=ops_layer)
    bob, carol = make_user("bob"), make_user("carol")
    streams = [sse.open(stream_url(s.url, ticket=ticket_for(s.url, bob))) for s in (one, two)]
    other = sse.open(stream_url(one.url, ticket=ticket_for(one.url, carol)))
    refresh = str(RefreshToken.for_user(bob))
    assert httpx.post(f"{two.url}/api/auth/logout/", json={"refresh": refresh}, timeout=10).status_code == 204
    for stream in streams:
        assert close_event(stream)["code"] == "logged-out"
    (for_carol,) = notify(carol)
    other.wait_ids([for_carol.pk])  # another user's stream stays
    assert not other.closed


def test_an_expired_ticket_bought_with_a_nearly_expired_token_is_refused(daphne_factory, sse, make_user):
    """A ticket never outlives the access token that bought it."""
    from accounts.models import OneTimeCode

    server = daphne_factory()
    bob = make_user("bob")
    response = httpx.post(f"{server.url}/api/notifications/ticket/",
                          headers={"Authorization": f"Bearer {short_token(bob, 30)}"}, timeout=10)  # fmt: skip
    entry = OneTimeCode.objects.get(purpose="sse_ticket")
    assert entry.access_expires is not None and entry.expires <= entry.access_expires
    assert entry.access_expires <= timezone.now() + timedelta(seconds=31)
    assert sse.open(stream_url(server.url, ticket=response.json()["ticket"])).status == 200
