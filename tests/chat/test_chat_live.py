"""Chat over STOMP with real clients (@stomp/stompjs in Node) against real daphne processes and Redis."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from chat import services
from chat.models import Message, Room
from tests.conftest import REPO, access_token_for, node_script, wait_for

pytestmark = pytest.mark.live
CLIENT = REPO / "tests" / "js" / "chat_client.mjs"


def run_client(plan: dict, timeout: float = 40) -> dict:
    result = node_script(CLIENT, json.dumps(plan), timeout=timeout)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def start_client(plan: dict) -> subprocess.Popen:
    return subprocess.Popen(["node", str(CLIENT), json.dumps(plan)], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip


def finish_client(process: subprocess.Popen, timeout: float = 40) -> dict:
    out, err = process.communicate(timeout=timeout)
    assert process.returncode == 0, err
    return json.loads(out.strip().splitlines()[-1])


def bodies(result: dict, destination: str) -> list:
    return [m["body"] for m in result["received"].get(destination, [])]


@pytest.fixture
def two_servers(daphne_factory, redis_server):
    url = f"redis://127.0.0.1:{redis_server.port}/0"
    return daphne_factory(REDIS_URL=url), daphne_factory(REDIS_URL=url)


@pytest.fixture
def people(make_user):
    alice, bob = make_user("alice"), make_user("bob")
    room = services.room_create(creator=alice, name="General", slug="general")
    services.room_join(room=room, user=bob)
    return alice, bob, room


def test_two_users_on_two_processes_chat_with_receipts_presence_and_order(two_servers, people, tmp_path: Path):
    alice, bob, room = people
    one, two = two_servers
    ready = tmp_path / "bob-ready"
    topic = "/topic/rooms.general"
    bob_proc = start_client({
        "url": f"{two.ws_url}/ws", "token": access_token_for(bob), "ready_file": str(ready),
        "subscribe": [{"destination": f"{topic}.presence"}, {"destination": topic}],
        "expect": {topic: 20, f"{topic}.presence": 2},
    })  # fmt: skip
    wait_for(ready.exists, timeout=20, what="bob to subscribe")
    sends = [{"destination": "/app/rooms.general", "body": {"body": f"hello {i}", "client_id": f"a-{i}"}}
             for i in range(20)]  # fmt: skip
    alice_result = run_client({
        "url": f"{one.ws_url}/ws/websocket", "token": access_token_for(alice),
        "subscribe": [{"destination": topic}], "send": sends, "expect": {topic: 20},
    })  # fmt: skip
    bob_result = finish_client(bob_proc)

    stored = list(Message.objects.filter(room=room).order_by("id").values_list("id", "body", "author__username"))
    assert [body for _, body, _ in stored] == [f"hello {i}" for i in range(20)]
    assert {author for _, _, author in stored} == {"alice"}
    assert sorted(alice_result["receipts"]) == sorted(f"send-{i}" for i in range(20))
    for result in (alice_result, bob_result):
        received = bodies(result, topic)
        assert [m["id"] for m in received] == [i for i, _, _ in stored]  # every message once, in order
        assert received[0] == {**received[0], "room": "general", "author": "alice", "client_id": "a-0"}
        assert not result["errors"]
    presence = bodies(bob_result, f"{topic}.presence")
    assert presence[0]["type"] == "snapshot"
    assert {"type": "join", "user": "alice"} in presence or "alice" in presence[0]["users"]


def test_resubscribing_with_since_id_replays_exactly_what_was_missed_under_concurrent_sends(
    two_servers, people, tmp_path: Path
):
    alice, bob, room = people
    one, two = two_servers
    before = [services.message_create(room=room, author=alice, body=f"old {i}")[0].id for i in range(10)]
    since = before[4]
    go = tmp_path / "go"
    topic = "/topic/rooms.general"
    # Alice starts sending 30 messages the moment Bob's resuming SUBSCRIBE goes out.
    sender = start_client({
        "url": f"{one.ws_url}/ws", "token": access_token_for(alice), "wait_for_file": str(go),
        "send": [{"destination": "/app/rooms.general", "body": {"body": f"new {i}"}} for i in range(30)],
    })  # fmt: skip
    time.sleep(0.5)
    go.touch()
    bob_result = run_client({
        "url": f"{two.ws_url}/ws", "token": access_token_for(bob),
        "subscribe": [{"destination": topic, "headers": {"since-id": str(since)}}], "expect": {topic: 35},
    })  # fmt: skip
    finish_client(sender)
    expected = list(Message.objects.filter(room=room, id__gt=since).order_by("id").values_list("id", flat=True))
    assert len(expected) == 35
    assert [m["id"] for m in bodies(bob_result, topic)] == expected  # no gap, no duplicate at the boundary


def test_resume_beyond_the_limit_flags_the_gap(daphne_factory, people):
    alice, bob, room = people
    server = daphne_factory(CHAT_RESUME_MAX="5")
    ids = [services.message_create(room=room, author=alice, body=f"m {i}")[0].id for i in range(12)]
    result = run_client({
        "url": f"{server.ws_url}/ws", "token": access_token_for(bob),
        "subscribe": [{"destination": "/topic/rooms.general", "headers": {"since-id": str(ids[0])}}],
        "expect": {"/topic/rooms.general": 5},
    })  # fmt: skip
    received = result["received"]["/topic/rooms.general"]
    assert [m["body"]["id"] for m in received] == ids[-5:]
    assert received[0]["headers"]["resume-gap"] == str(ids[-5])
    assert "resume-gap" not in received[1]["headers"]


def test_direct_messages_reach_the_recipient_queue_across_processes(two_servers, people, tmp_path: Path):
    alice, bob, _ = people
    one, two = two_servers
    ready = tmp_path / "ready"
    bob_proc = start_client({
        "url": f"{two.ws_url}/ws", "token": access_token_for(bob), "ready_file": str(ready),
        "subscribe": [{"destination": "/user/queue/dm"}], "expect": {"/user/queue/dm": 2},
    })  # fmt: skip
    wait_for(ready.exists, timeout=20, what="bob to subscribe")
    alice_result = run_client({
        "url": f"{one.ws_url}/ws", "token": access_token_for(alice),
        "send": [{"destination": "/app/dm.bob", "body": {"body": "psst", "client_id": "dm-1"}},
                 {"destination": "/app/dm.bob", "body": {"body": "psst", "client_id": "dm-1"}},
                 {"destination": "/app/dm.bob", "body": {"body": "again"}}],
    })  # fmt: skip
    bob_result = finish_client(bob_proc)
    assert sorted(alice_result["receipts"]) == ["send-0", "send-1", "send-2"]
    dms = bodies(bob_result, "/user/queue/dm")
    assert [m["body"] for m in dms] == ["psst", "again"]  # the retried client_id was stored and sent once
    direct = Room.objects.get(kind=Room.Kind.DIRECT)
    assert dms[0]["room"] == direct.slug
    assert set(direct.memberships.values_list("user__username", flat=True)) == {"alice", "bob"}


def test_a_refused_message_gets_an_error_on_the_error_queue_and_no_receipt(daphne_factory, people):
    alice, _, room = people
    server = daphne_factory(CHAT_MESSAGE_MAX_LENGTH="50")
    result = run_client({
        "url": f"{server.ws_url}/ws", "token": access_token_for(alice),
        "subscribe": [{"destination": "/user/queue/errors"}, {"destination": "/topic/rooms.general"}],
        "send": [{"destination": "/app/rooms.general", "body": {"body": "   "}, "receipt": False,
                  "headers": {"receipt": "empty-1"}},
                 {"destination": "/app/rooms.general", "body": {"body": "x" * 51}, "receipt": False,
                  "headers": {"receipt": "long-1"}},
                 {"destination": "/app/rooms.general", "body": {"body": "fine"}}],
        "expect": {"/user/queue/errors": 2, "/topic/rooms.general": 1},
    })  # fmt: skip
    errors = bodies(result, "/user/queue/errors")
    assert [(e["code"], e["receipt"]) for e in errors] == [("invalid", "empty-1"), ("invalid", "long-1")]
    assert "empty" in errors[0]["detail"] and "at most 50" in errors[1]["detail"]
    assert result["receipts"] == ["send-2"]
    assert not result["errors"] and result["closed"] is None  # the connection stayed up
    assert list(Message.objects.filter(room=room).values_list("body", flat=True)) == ["fine"]


def test_a_non_member_cannot_subscribe_to_a_private_room_and_learns_nothing(daphne_factory, make_user):
    owner, outsider = make_user("owner"), make_user("outsider")
    secret = services.room_create(creator=owner, name="Secret", slug="secret", is_private=True)
    services.message_create(room=secret, author=owner, body="classified")
    server = daphne_factory()
    results = [
        run_client({"url": f"{server.ws_url}/ws", "token": access_token_for(outsider),
                    "subscribe": [{"destination": destination, "headers": {"since-id": "0"}}]})
        for destination in ("/topic/rooms.secret", "/topic/rooms.secret.presence", "/topic/rooms.nonexistent")
    ]  # fmt: skip
    for result in results:
        assert result["errors"] and result["errors"][0]["code"] == "not-found"
        assert "classified" not in json.dumps(result)
        assert result["closed"] is not None
    sent = run_client({
        "url": f"{server.ws_url}/ws", "token": access_token_for(outsider),
        "subscribe": [{"destination": "/user/queue/errors"}],
        "send": [{"destination": "/app/rooms.secret", "body": {"body": "let me in"}, "receipt": False}],
        "expect": {"/user/queue/errors": 1},
    })  # fmt: skip
    assert bodies(sent, "/user/queue/errors")[0]["code"] == "not-found"
    assert not Message.objects.filter(body="let me in").exists()


def test_author_comes_from_the_token_and_typing_is_relayed_not_stored(daphne_factory, people, tmp_path: Path):
    alice, bob, _ = people
    server = daphne_factory()
    ready = tmp_path / "ready"
    watcher = start_client({
        "url": f"{server.ws_url}/ws", "token": access_token_for(bob), "ready_file": str(ready),
        "subscribe": [{"destination": "/topic/rooms.general.typing"}, {"destination": "/topic/rooms.general"}],
        "expect": {"/topic/rooms.general.typing": 1, "/topic/rooms.general": 1},
    })  # fmt: skip
    wait_for(ready.exists, timeout=20, what="bob to subscribe")
    run_client({
        "url": f"{server.ws_url}/ws", "token": access_token_for(alice),
        "send": [{"destination": "/app/rooms.general.typing", "body": {"typing": True}},
                 {"destination": "/app/rooms.general", "body": {"body": "hi", "author": "bob"},
                  "headers": {"author": "bob"}}],
    })  # fmt: skip
    result = finish_client(watcher)
    assert bodies(result, "/topic/rooms.general.typing") == [{"user": "alice", "typing": True}]
    assert bodies(result, "/topic/rooms.general")[0]["author"] == "alice"
    assert list(Message.objects.values_list("author__username", "body")) == [("alice", "hi")]


@pytest.mark.parametrize("transport", ["websocket", "xhr-streaming", "xhr-polling"])
def test_chat_over_each_sockjs_transport_from_a_foreign_origin(daphne_factory, people, transport):
    alice, _, room = people
    server = daphne_factory(FRONTEND_ORIGINS="http://frontend.example:8080")
    result = run_client({
        "url": f"{server.url}/ws", "sockjs": True, "transports": [transport], "origin": "http://frontend.example:8080",
        "token": access_token_for(alice), "subscribe": [{"destination": "/topic/rooms.general"}],
        "send": [{"destination": "/app/rooms.general", "body": {"body": f"via {transport} {i}"}} for i in range(5)],
        "expect": {"/topic/rooms.general": 5},
    })  # fmt: skip
    assert result["transport"] == transport
    assert [m["body"] for m in bodies(result, "/topic/rooms.general")] == [f"via {transport} {i}" for i in range(5)]
    assert sorted(result["receipts"]) == [f"send-{i}" for i in range(5)]
    assert Message.objects.filter(room=room).count() == 5


def test_concurrent_publishers_on_two_processes_give_every_subscriber_the_same_order(two_servers, make_user, tmp_path):
    one, two = two_servers
    users = [make_user(name) for name in ("pub1", "pub2", "sub1", "sub2")]
    topic = "/topic/order-check"
    watchers = []
    for index, (server, user) in enumerate(((one, users[2]), (two, users[3]))):
        ready = tmp_path / f"ready-{index}"
        watchers.append(start_client({
            "url": f"{server.ws_url}/ws", "token": access_token_for(user), "ready_file": str(ready),
            "subscribe": [{"destination": topic}], "expect": {topic: 80},
        }))  # fmt: skip
        wait_for(ready.exists, timeout=20, what="a watcher to subscribe")
    go = tmp_path / "go"
    senders = [
        start_client({
            "url": f"{server.ws_url}/ws", "token": access_token_for(user), "wait_for_file": str(go),
            "send": [{"destination": topic, "body": {"from": user.username, "n": i}} for i in range(40)],
        })
        for server, user in ((one, users[0]), (two, users[1]))
    ]  # fmt: skip
    time.sleep(0.5)
    go.touch()
    for sender in senders:
        finish_client(sender)
    first, second = (finish_client(w) for w in watchers)
    order_one = [(m["from"], m["n"]) for m in bodies(first, topic)]
    order_two = [(m["from"], m["n"]) for m in bodies(second, topic)]
    assert len(order_one) == 80 and len(set(order_one)) == 80
    assert order_one == order_two  # one order for everyone, whichever process they are on


def test_a_retried_client_id_is_stored_once_and_re_announced_under_the_same_id(daphne_factory, people):
    alice, _, room = people
    server = daphne_factory()
    topic = "/topic/rooms.general"
    result = run_client({
        "url": f"{server.ws_url}/ws", "token": access_token_for(alice), "subscribe": [{"destination": topic}],
        "send": [{"destination": "/app/rooms.general", "body": {"body": "once", "client_id": "retry-1"}},
                 {"destination": "/app/rooms.general", "body": {"body": "once", "client_id": "retry-1"}}],
        "expect": {topic: 2},
    })  # fmt: skip
    announced = bodies(result, topic)
    stored = list(Message.objects.filter(room=room).values_list("id", flat=True))
    assert len(stored) == 1
    # A worker may die between commit and broadcast; the retry repairs that, under the same id.
    assert [m["id"] for m in announced] == stored * 2
    assert sorted(result["receipts"]) == ["send-0", "send-1"]
