"""Live operations across two workers: the admin's report, and access changes enforced on open sockets."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import httpx
import pytest

from chat import services
from tests.chat.test_chat_live import CLIENT, finish_client
from tests.conftest import REPO, access_token_for, wait_for

pytestmark = pytest.mark.live


@pytest.fixture
def redis_layer(redis_server, settings):
    """This test process publishes operations orders through the same Redis as the servers."""
    from channels.layers import channel_layers

    url = f"redis://127.0.0.1:{redis_server.port}/0"
    settings.REDIS_URL = url  # the bus layer of this process rides it
    channel_layers.backends = {}
    yield url
    channel_layers.backends = {}


@pytest.fixture
def workers(daphne_factory, redis_layer):
    return daphne_factory(REDIS_URL=redis_layer), daphne_factory(REDIS_URL=redis_layer)


@pytest.fixture
def team(make_user):
    alice, bob = make_user("alice"), make_user("bob")
    room = services.room_create(creator=alice, name="Team", slug="team", is_private=True)
    services.room_member_add(room=room, actor=alice, username="bob")
    return alice, bob, room


def hold(plan: dict, ready: Path) -> subprocess.Popen:
    process = subprocess.Popen(["node", str(CLIENT), json.dumps({"ready_file": str(ready), **plan})], cwd=REPO,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    wait_for(lambda: ready.exists() or process.poll() is not None, timeout=20, what="a client to subscribe")
    assert ready.exists(), process.communicate()[1]
    return process


def admin_cookies(django_user_model) -> dict[str, str]:
    from django.test import Client

    admin = django_user_model.objects.create_superuser("root", "root@example.com", "a-long-passphrase")
    client = Client()
    client.force_login(admin)
    return {"sessionid": client.cookies["sessionid"].value}


def test_operations_view_reports_connections_of_every_worker(workers, team, tmp_path, django_user_model):
    alice, bob, _ = team
    one, two = workers
    clients = [
        hold({"url": f"{one.ws_url}/ws", "token": access_token_for(alice), "deadline_ms": 30000,
              "subscribe": [{"destination": "/topic/rooms.team"}], "expect": {"never": 1}}, tmp_path / "a"),
        hold({"url": f"{two.url}/ws", "sockjs": True, "transports": ["xhr-streaming"], "deadline_ms": 30000,
              "token": access_token_for(bob), "subscribe": [{"destination": "/topic/rooms.team"}],
              "expect": {"never": 1}}, tmp_path / "b"),
    ]  # fmt: skip
    try:
        cookies = admin_cookies(django_user_model)
        page = httpx.get(f"{one.url}/admin/operations/", cookies=cookies, timeout=10)
        assert page.status_code == 200 and "Live operations" in page.text
        report = httpx.get(f"{one.url}/admin/operations/?format=json", cookies=cookies, timeout=10).json()
        assert len(report["workers"]) == 2
        assert dict(report["per_room"]) == {"team": 2}
        assert dict(report["per_user"]) == {"alice": 1, "bob": 1}
        assert dict(report["per_transport"]) == {"sockjs/xhr-streaming": 1, "websocket": 1}
        assert {c["worker"] for c in report["connections"]} == {w["worker"] for w in report["workers"]}
        anonymous = httpx.get(f"{one.url}/admin/operations/?format=json", timeout=10, follow_redirects=False)
        assert anonymous.status_code == 302  # staff only
    finally:
        for process in clients:
            process.kill()
            process.wait(timeout=10)


def test_deactivating_a_user_closes_their_sockets_on_every_worker(workers, team, tmp_path):
    _, bob, _ = team
    _, two = workers
    plan = {"url": f"{two.ws_url}/ws", "token": access_token_for(bob), "deadline_ms": 30000,
            "subscribe": [{"destination": "/topic/rooms.team"}], "expect": {"never": 1}}  # fmt: skip
    process = hold(plan, tmp_path / "b")
    bob.is_active = False
    bob.save()  # the admin's "active" checkbox does exactly this save
    result = finish_client(process, timeout=30)
    assert not result.get("timedOut")
    assert result["errors"] and result["errors"][0]["code"] == "account-disabled"
    assert result["closed"] is not None


def test_removing_a_member_ends_their_room_subscriptions_at_once(workers, team, tmp_path):
    alice, bob, _ = team
    one, two = workers
    process = hold({"url": f"{two.ws_url}/ws", "token": access_token_for(bob), "linger_ms": 1500,
                    "subscribe": [{"destination": "/user/queue/errors"}, {"destination": "/topic/rooms.team"}],
                    "expect": {"/user/queue/errors": 1}}, tmp_path / "b")  # fmt: skip
    auth = {"Authorization": f"Bearer {access_token_for(alice)}"}
    removed = httpx.request("DELETE", f"{one.url}/api/rooms/team/members/", json={"username": "bob"}, headers=auth,
                            timeout=10)  # fmt: skip
    assert removed.status_code == 204
    result = finish_client(process, timeout=30)
    assert result["received"]["/user/queue/errors"][0]["body"]["code"] == "removed"
    sent = httpx.post(f"{one.url}/api/rooms/team/messages/", json={"body": "after bob left"}, headers=auth, timeout=10)
    assert sent.status_code == 201
    assert "after bob left" not in json.dumps(result["received"].get("/topic/rooms.team", []))
    assert not result["errors"]  # the connection itself stayed up


def test_a_removed_member_cannot_post_on_the_connection_that_proved_membership(workers, team, make_user):
    """A room SEND trusts the membership its connection's live room subscription proved (no query per SEND);
    removing the member drops that subscription, so the next SEND is refused and nothing is stored."""
    from rest_framework_simplejwt.tokens import AccessToken

    from chat.models import Message
    from tests.live.raw_stomp import connect

    alice, bob, _ = team
    one, two = workers
    client = connect(two.url.replace("http", "ws"), str(AccessToken.for_user(bob)))
    errors = "/user/queue/errors"
    client.send("SUBSCRIBE", id="e", destination=errors)
    client.send("SUBSCRIBE", id="t", destination="/topic/rooms.team", receipt="subscribed")
    assert client.read_until(lambda f: f.get("receipt-id") == "subscribed", "RECEIPT") is not None
    client.send("SEND", b"while a member", destination="/app/rooms.team", receipt="before")
    assert client.read_until(lambda f: f.get("receipt-id") == "before", "RECEIPT") is not None
    auth = {"Authorization": f"Bearer {access_token_for(alice)}"}
    removed = httpx.request("DELETE", f"{one.url}/api/rooms/team/members/", json={"username": "bob"}, headers=auth,
                            timeout=10)  # fmt: skip
    assert removed.status_code == 204
    notice = client.read_until(lambda f: f.get("destination") == errors and b'"removed"' in f.body, "removal")
    assert notice is not None, client.frames
    client.send("SEND", b"after removal", destination="/app/rooms.team", receipt="after")
    refusal = client.read_until(lambda f: f.get("destination") == errors and b'"after"' in f.body, "refusal")
    assert refusal is not None, client.frames
    assert json.loads(refusal.body)["code"] == "not-found"
    assert not [f for f in client.frames if f.get("receipt-id") == "after"]
    assert list(Message.objects.filter(room__slug="team").values_list("body", flat=True)) == ["while a member"]
    client.close()


def _subscribed_on(worker, user):
    from tests.live.raw_stomp import connect

    client = connect(worker.ws_url, access_token_for(user))
    client.send("SUBSCRIBE", id="e", destination="/user/queue/errors")
    client.send("SUBSCRIBE", id="t", destination="/topic/rooms.team", receipt="subscribed")
    assert client.read_until(lambda f: f.get("receipt-id") == "subscribed", "RECEIPT") is not None, client.frames
    return client


def _notice(client, code: bytes):
    found = client.read_until(lambda f: f.get("destination") == "/user/queue/errors" and code in f.body, "notice")
    assert found is not None, client.frames
    return json.loads(found.body)


def test_a_membership_deleted_in_the_admin_ends_the_subscriptions_like_the_api(workers, team):
    from chat.models import Membership

    alice, bob, room = team
    one, two = workers
    client = _subscribed_on(two, bob)
    Membership.objects.get(room=room, user=bob).delete()  # the admin's membership inline deletes exactly so
    assert _notice(client, b'"removed"') == {
        "code": "removed", "detail": "you are no longer a member of team", "room": "team"
    }  # fmt: skip
    auth = {"Authorization": f"Bearer {access_token_for(alice)}"}
    sent = httpx.post(f"{one.url}/api/rooms/team/messages/", json={"body": "after"}, headers=auth, timeout=10)
    assert sent.status_code == 201
    client.send("SEND", b"still here?", destination="/app/rooms.team", receipt="mine")
    refusal = client.read_until(lambda f: b'"mine"' in f.body, "refusal")
    assert refusal is not None and json.loads(refusal.body)["code"] == "not-found", client.frames
    assert not [f for f in client.frames if f.get("destination") == "/topic/rooms.team" and b"after" in f.body]
    client.close()


def test_archiving_a_room_in_the_admin_ends_every_subscription_to_it_on_every_worker(workers, team):
    from django.utils import timezone

    from chat.models import Message

    alice, bob, room = team
    one, two = workers
    clients = [_subscribed_on(one, alice), _subscribed_on(two, bob)]
    room.archived = timezone.now()
    room.save()  # the admin's change form saves the room so
    for client in clients:
        assert _notice(client, b'"room-closed"') == {
            "code": "room-closed", "detail": "the room team was archived", "room": "team"
        }  # fmt: skip
    clients[0].send("SEND", b"into the archive", destination="/app/rooms.team", receipt="mine")
    refusal = clients[0].read_until(lambda f: f.get("destination") == "/user/queue/errors" and b'"mine"' in f.body,
                                    "refusal")  # fmt: skip
    assert refusal is not None, clients[0].frames
    assert not [f for f in clients[0].frames if f.get("receipt-id") == "mine"]
    assert not Message.objects.filter(room=room).exists()
    room.save()  # saving an already archived room orders nothing again
    clients[1].send("SUBSCRIBE", id="again", destination="/topic/rooms.team")
    error = clients[1].read_until(lambda f: f.command == "ERROR", "ERROR")
    assert error is not None and error.get("code") == "forbidden", clients[1].frames
    assert len([f for f in clients[0].frames if b'"room-closed"' in f.body]) == 1
    for client in clients:
        client.close()


def test_deleting_a_room_ends_every_subscription_to_it(workers, team):
    _, bob, room = team
    _, two = workers
    client = _subscribed_on(two, bob)
    room.delete()  # the admin's delete view deletes the room (and its memberships) so
    assert _notice(client, b'"room-closed"')["detail"] == "the room team was deleted"
    assert len([f for f in client.frames if f.get("destination") == "/user/queue/errors"]) == 1  # no "removed" too
    client.close()
