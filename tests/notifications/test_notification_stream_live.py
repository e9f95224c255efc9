"""The SSE stream under real daphne processes (and Redis): headers, auth, replay, live delivery, cleanup."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from datetime import timedelta

import httpx
import pytest
import redis
from django.utils import timezone

from accounts.models import OneTimeCode
from notifications import services
from notifications.models import Notification
from scripts.processes import free_port
from tests.conftest import OUTPUT, REPO, access_token_for, wait_for
from tests.notifications.conftest import FRONTEND, stream_url, ticket_for

pytestmark = pytest.mark.live


def notify(user, n: int = 1, **payload) -> list[Notification]:
    return [
        services.notification_create(recipient=user, kind="announcement", payload={"i": i, **payload}) for i in range(n)
    ]


def staff_stats(server, staff) -> dict:
    response = httpx.get(f"{server.url}/api/notifications/stream/stats/",
                         headers={"Authorization": f"Bearer {access_token_for(staff)}"}, timeout=10)  # fmt: skip
    assert response.status_code == 200, response.text
    return response.json()


# --- Headers, auth and refusals --------------------------------------------------------------------------


def test_ticketed_stream_has_event_stream_headers_cors_and_a_retry_hint(daphne_factory, sse, make_user):
    server = daphne_factory(SSE_RETRY_MS="2500")
    bob = make_user("bob")
    stream = sse.open(stream_url(server.url, ticket=ticket_for(server.url, bob)), headers={"Origin": FRONTEND})
    assert stream.status == 200
    assert stream.headers["content-type"] == "text/event-stream; charset=utf-8"
    assert stream.headers["cache-control"] == "no-cache"
    assert stream.headers["x-accel-buffering"] == "no"
    assert stream.headers["access-control-allow-origin"] == FRONTEND
    assert stream.headers["access-control-allow-credentials"] == "true"
    wait_for(lambda: stream.parser.retry is not None, timeout=10, what="the retry hint")
    assert stream.parser.retry == 2500


def test_notification_created_while_connected_arrives_with_id_kind_and_json_data(daphne_factory, sse, make_user):
    server = daphne_factory()
    bob = make_user("bob")
    stream = sse.open(stream_url(server.url, ticket=ticket_for(server.url, bob)))
    # Created by a request served by the daphne process itself (in-memory layer): alice sends bob a DM.
    alice = make_user("alice")
    headers = {"Authorization": f"Bearer {access_token_for(alice)}"}
    dm = httpx.post(f"{server.url}/api/dms/bob/", headers=headers, timeout=10).json()
    body = "hello\nsecond line ☃"
    posted = httpx.post(f"{server.url}/api/rooms/{dm['slug']}/messages/", json={"body": body}, headers=headers,
                        timeout=10)  # fmt: skip
    assert posted.status_code == 201, posted.text
    (event,) = stream.wait_events(1)
    stored = Notification.objects.get(recipient=bob)
    assert event.id == str(stored.pk) and event.event == "direct_message"
    data = json.loads(event.data)
    assert data["id"] == stored.pk and data["kind"] == "direct_message" and data["read"] is False
    assert data["payload"]["author"] == "alice" and data["payload"]["excerpt"] == "hello second line ☃"


def test_session_cookie_opens_a_stream(daphne_factory, sse, make_user, client):
    server = daphne_factory()
    bob = make_user("bob")
    client.force_login(bob)
    cookie = f"sessionid={client.cookies['sessionid'].value}"
    stream = sse.open(stream_url(server.url), headers={"Cookie": cookie, "Origin": FRONTEND})
    assert stream.status == 200


@pytest.mark.parametrize(
    ("query", "headers", "code"),
    [
        ({}, {}, "unauthorized"),
        ({"ticket": "not-a-ticket"}, {}, "ticket-rejected"),
        ({}, {"Authorization": "Bearer not.a.jwt"}, "token-invalid"),
        ({}, {"Cookie": "sessionid=no-such-session"}, "session-invalid"),
    ],
)
def test_missing_or_bad_credentials_are_a_json_401_with_cors(daphne_factory, sse, query, headers, code):
    server = daphne_factory()
    stream = sse.open(stream_url(server.url, **query), headers={"Origin": FRONTEND, **headers})
    assert stream.status == 401
    assert stream.headers["content-type"] == "application/json"
    assert stream.headers["access-control-allow-origin"] == FRONTEND  # so the page can read why
    assert stream.json()["code"] == code and stream.json()["detail"]


def test_a_ticket_works_once(daphne_factory, sse, make_user):
    server = daphne_factory()
    url = stream_url(server.url, ticket=ticket_for(server.url, make_user("bob")))
    assert sse.open(url).status == 200
    again = sse.open(url)
    assert again.status == 401 and again.json()["code"] == "ticket-rejected"


def test_an_expired_ticket_is_refused(daphne_factory, sse, make_user):
    server = daphne_factory()
    ticket = ticket_for(server.url, make_user("bob"))
    OneTimeCode.objects.filter(purpose="sse_ticket").update(expires=timezone.now() - timedelta(seconds=1))
    refused = sse.open(stream_url(server.url, ticket=ticket))
    assert refused.status == 401 and refused.json()["code"] == "ticket-rejected"


def test_a_bad_ticket_does_not_fall_back_to_the_session_cookie(daphne_factory, sse, make_user, client):
    server = daphne_factory()
    client.force_login(make_user("bob"))
    refused = sse.open(stream_url(server.url, ticket="used-or-forged"),
                       headers={"Cookie": f"sessionid={client.cookies['sessionid'].value}"})  # fmt: skip
    assert refused.status == 401


def test_foreign_origin_is_403_json_without_cors_and_other_methods_405(daphne_factory, sse, make_user):
    server = daphne_factory()
    ticket = ticket_for(server.url, make_user("bob"))
    refused = sse.open(stream_url(server.url, ticket=ticket), headers={"Origin": "https://evil.example"})
    assert refused.status == 403 and refused.headers["content-type"] == "application/json"
    assert "access-control-allow-origin" not in refused.headers
    posted = httpx.post(stream_url(server.url), timeout=10)
    assert posted.status_code == 405 and posted.headers["content-type"] == "application/json"
    preflight = httpx.options(stream_url(server.url), headers={"Origin": FRONTEND,
                              "Access-Control-Request-Headers": "last-event-id"}, timeout=10)  # fmt: skip
    assert preflight.status_code == 204 and preflight.headers["access-control-allow-origin"] == FRONTEND
    assert "last-event-id" in preflight.headers["access-control-allow-headers"]


def test_malformed_last_event_id_is_a_json_400(daphne_factory, sse, make_user):
    server = daphne_factory()
    ticket = ticket_for(server.url, make_user("bob"))
    refused = sse.open(stream_url(server.url, ticket=ticket), headers={"Last-Event-ID": "abc"})
    assert refused.status == 400 and refused.json()["code"] == "bad-id"


# --- Resume ------------------------------------------------------------------------------------------------


def test_reconnect_with_last_event_id_replays_what_was_missed_in_order_then_continues_live(
    daphne_factory, redis_layer, sse, make_user
):
    server = daphne_factory(REDIS_URL=redis_layer, SSE_REPLAY_BATCH="3")  # several replay batches
    bob = make_user("bob")
    notify(make_user("alice"), 3)  # someone else's: never replayed to bob
    first = sse.open(stream_url(server.url, ticket=ticket_for(server.url, bob)))
    seen = notify(bob, 2)
    first.wait_ids([n.pk for n in seen])
    sse.close(first)
    missed = notify(bob, 8)  # created while disconnected
    second = sse.open(stream_url(server.url, ticket=ticket_for(server.url, bob)),
                      headers={"Last-Event-ID": first.parser.last_event_id})  # fmt: skip
    second.wait_ids([n.pk for n in missed])
    live = notify(bob, 2)
    second.wait_ids([n.pk for n in live])
    assert second.ids == [n.pk for n in missed + live]
    assert [json.loads(e.data)["payload"]["i"] for e in second.events] == [*range(8), 0, 1]


def test_last_event_id_query_parameter_resumes_a_new_eventsource(daphne_factory, redis_layer, sse, make_user):
    server = daphne_factory(REDIS_URL=redis_layer)
    bob = make_user("bob")
    old = notify(bob, 3)
    stream = sse.open(stream_url(server.url, ticket=ticket_for(server.url, bob), last_event_id=old[0].pk))
    stream.wait_ids([n.pk for n in old[1:]])
    assert stream.ids == [n.pk for n in old[1:]]


def test_no_gap_and_no_duplicate_at_the_replay_boundary_under_concurrent_creation(
    daphne_factory, redis_layer, sse, make_user
):
    server = daphne_factory(REDIS_URL=redis_layer, SSE_REPLAY_BATCH="5", SSE_REPLAY_BUFFER_LIMIT="4")
    bob = make_user("bob")
    before = notify(bob, 10)
    created: list[int] = [n.pk for n in before]
    stop = threading.Event()

    def create_continuously() -> None:
        i = 0
        while not stop.is_set() and i < 400:
            created.append(notify(bob, 1, writer=i)[0].pk)
            i += 1

    writer = threading.Thread(target=create_continuously)
    writer.start()
    streams = []
    try:
        # Connect repeatedly while notifications keep arriving, each resuming from a different point.
        for k in range(6):
            wait_for(lambda k=k: len(created) >= 20 + 25 * k, timeout=30, what="the writer to make progress")
            resume_after = created[k]
            url = stream_url(server.url, ticket=ticket_for(server.url, bob), last_event_id=resume_after)
            streams.append((resume_after, sse.open(url)))
    finally:
        stop.set()
        writer.join(timeout=60)
    final = notify(bob, 1)[0].pk  # a last live one marks the end for every stream
    for resume_after, stream in streams:
        stream.wait_ids([final], timeout=30)
        expected = sorted(i for i in [*created, final] if i > resume_after)
        got = stream.ids
        assert got == expected, (
            f"resumed after {resume_after}: missing {sorted(set(expected) - set(got))}, "
            f"duplicated {sorted({i for i in got if got.count(i) > 1})}, in order: {got == sorted(got)}"
        )


# --- Across processes, heart-beats, cleanup ---------------------------------------------------------------


def test_notification_created_on_one_process_reaches_a_stream_held_by_another(
    daphne_factory, redis_layer, sse, make_user
):
    holder = daphne_factory(REDIS_URL=redis_layer)
    writer = daphne_factory(REDIS_URL=redis_layer)
    alice, bob = make_user("alice"), make_user("bob")
    stream = sse.open(stream_url(holder.url, ticket=ticket_for(holder.url, bob)))
    headers = {"Authorization": f"Bearer {access_token_for(alice)}"}
    room = httpx.post(f"{writer.url}/api/rooms/", json={"name": "Ops", "is_private": True}, headers=headers,
                      timeout=10).json()  # fmt: skip
    assert httpx.post(f"{writer.url}/api/rooms/{room['slug']}/members/", json={"username": "bob"},
                      headers=headers, timeout=10).status_code in (200, 201)  # fmt: skip
    httpx.post(f"{writer.url}/api/rooms/{room['slug']}/messages/", json={"body": "ping @bob"}, headers=headers,
               timeout=10).raise_for_status()  # fmt: skip
    events = stream.wait_events(2)
    assert [e.event for e in events] == ["room_invite", "mention"]
    assert json.loads(events[1].data)["payload"]["room"] == room["slug"]


def test_an_announcement_to_everyone_reaches_every_open_stream_once(
    daphne_factory, redis_layer, sse, django_user_model
):
    server = daphne_factory(REDIS_URL=redis_layer)
    django_user_model.objects.bulk_create([django_user_model(username=f"user{i:03d}") for i in range(120)])
    users = list(django_user_model.objects.order_by("username"))
    listeners = users[::30]
    streams = [sse.open(stream_url(server.url, ticket=ticket_for(server.url, u))) for u in listeners]
    assert services.announcement_create_for_all(text="maintenance at 10", title="Heads up") == 120
    for user, stream in zip(listeners, streams, strict=True):
        (event,) = stream.wait_events(1)
        assert event.event == "announcement"
        assert json.loads(event.data)["payload"] == {"title": "Heads up", "text": "maintenance at 10", "by": None}
        assert int(event.id) == Notification.objects.get(recipient=user).pk


def test_idle_stream_gets_comment_heartbeats(daphne_factory, sse, make_user):
    server = daphne_factory(SSE_HEARTBEAT_INTERVAL="0.2")
    stream = sse.open(stream_url(server.url, ticket=ticket_for(server.url, make_user("bob"))))
    wait_for(lambda: len(stream.parser.comments) >= 3, timeout=15, what="three heart-beat comments")
    assert stream.events == []


def test_disconnect_frees_the_group_membership_and_the_task_at_once(daphne_factory, redis_layer, sse, make_user):
    server = daphne_factory(REDIS_URL=redis_layer)
    bob = make_user("bob")
    staff = make_user("staff", is_staff=True)
    # Warm up: the layer's own per-process reader task starts with the first subscription and stays.
    sse.close(sse.open(stream_url(server.url, ticket=ticket_for(server.url, bob))))
    wait_for(lambda: staff_stats(server, staff)["open_streams"] == 0, timeout=15, what="the warm-up stream to end")
    baseline = staff_stats(server, staff)
    streams = [sse.open(stream_url(server.url, ticket=ticket_for(server.url, bob))) for _ in range(5)]
    redis_client = redis.Redis.from_url(redis_layer)
    redis_channel = f"stomp:layer:g:notifications.user.{bob.pk}"  # the bus layer's Redis channel of the group

    def subscribers() -> int:  # processes subscribed to bob's group in Redis (pub/sub layer)
        return dict(redis_client.pubsub_numsub(redis_channel))[redis_channel.encode()]

    wait_for(lambda: staff_stats(server, staff)["grouped_streams"] == 5, timeout=15, what="5 streams in the group")
    stats = staff_stats(server, staff)
    assert stats["open_streams"] == 5 and stats["stream_tasks"] == 5 and stats["heartbeat_streams"] == 5
    assert subscribers() == 1  # one subscription per process, however many streams
    for stream in streams[:4]:
        sse.close(stream)
    wait_for(lambda: staff_stats(server, staff)["open_streams"] == 1, timeout=15, what="4 streams to be released")
    assert subscribers() == 1
    sse.close(streams[4])
    wait_for(lambda: staff_stats(server, staff)["open_streams"] == 0, timeout=15, what="streams to be released")
    wait_for(lambda: subscribers() == 0, timeout=15, what="the group subscription to be dropped")
    stats = staff_stats(server, staff)
    assert stats["stream_tasks"] == 0 and stats["heartbeat_streams"] == 0
    wait_for(lambda: staff_stats(server, staff)["asyncio_tasks"] <= baseline["asyncio_tasks"], timeout=15,
             what="the server's task count to return to its baseline")  # fmt: skip
    assert "Traceback" not in server.log()


def test_stats_are_for_staff_only(daphne_factory, make_user):
    server = daphne_factory()
    url = f"{server.url}/api/notifications/stream/stats/"
    assert httpx.get(url, timeout=10).status_code == 401
    token = access_token_for(make_user("bob"))
    assert httpx.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=10).status_code == 403


def test_stream_works_under_manage_py_runserver(live_db, sse, make_user):
    port = free_port()
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "chatproject.settings", "DATABASE_URL": f"sqlite:///{live_db}",
           "FRONTEND_ORIGINS": FRONTEND, "PYTHONUNBUFFERED": "1"}  # fmt: skip
    env.pop("REDIS_URL", None)
    OUTPUT.mkdir(exist_ok=True)
    log_path = OUTPUT / f"runserver-{port}.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen([sys.executable, "manage.py", "runserver", "--noreload", f"127.0.0.1:{port}"],
                                   cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:

        def healthy() -> bool:
            assert process.poll() is None, log_path.read_text()
            try:
                return httpx.get(f"{url}/readyz/", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(healthy, timeout=30, what="runserver to answer")
        alice, bob = make_user("alice"), make_user("bob")
        stream = sse.open(stream_url(url, ticket=ticket_for(url, bob)), headers={"Origin": FRONTEND})
        assert stream.headers["content-type"] == "text/event-stream; charset=utf-8"
        headers = {"Authorization": f"Bearer {access_token_for(alice)}"}
        dm = httpx.post(f"{url}/api/dms/bob/", headers=headers, timeout=10).json()
        httpx.post(f"{url}/api/rooms/{dm['slug']}/messages/", json={"body": "hi"}, headers=headers,
                   timeout=10).raise_for_status()  # fmt: skip
        assert stream.wait_events(1)[0].event == "direct_message"
        assert sse.open(stream_url(url)).status == 401
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
