"""Presence under real daphne processes (and redis-server): debounced join/leave (issue 16 item 9) and
leases that let the counts of a dead worker expire (item 15)."""

from __future__ import annotations

import json
import time

import pytest
import redis

from chat import services
from tests.conftest import access_token_for, wait_for
from tests.reliability.live_stomp import LiveStomp

pytestmark = pytest.mark.live
ROOM = "/topic/rooms.lobby"
PRESENCE = f"{ROOM}.presence"


def joined(server, user) -> LiveStomp:
    return LiveStomp.connect(f"{server.ws_url}/ws", access_token_for(user))


def subscribe(client: LiveStomp, destination: str, sub_id: str) -> None:
    client.send("SUBSCRIBE", id=sub_id, destination=destination, receipt=f"r-{sub_id}")
    client.receipt(f"r-{sub_id}")


def presence_event(client: LiveStomp, wanted) -> None:
    """Wait for a presence event for which ``wanted(event)`` holds."""
    client.until(lambda f: f.command == "MESSAGE" and f.get("destination") == PRESENCE and wanted(json.loads(f.body)),
                 "a presence event", 15)  # fmt: skip


def presence_events(client: LiveStomp) -> list[dict]:
    return [json.loads(f.body) for f in client.messages(PRESENCE)]


@pytest.fixture
def lobby(make_user):
    alice = make_user("alice")
    return services.room_create(creator=alice, name="Lobby", slug="lobby")


def test_subscribe_unsubscribe_pairs_send_a_bystander_one_join_and_a_real_leave_still_arrives(
    daphne_factory, lobby, make_user
):
    server = daphne_factory()
    carol, bob, dave = make_user("carol"), make_user("bob"), make_user("dave")
    bystander = joined(server, carol)
    subscribe(bystander, PRESENCE, "p")
    attacker = joined(server, bob)
    for i in range(20):
        attacker.send("SUBSCRIBE", id=f"s{i}", destination=ROOM)
        attacker.send("UNSUBSCRIBE", id=f"s{i}")
    subscribe(attacker, ROOM, "last")  # ends subscribed: nothing is left waiting out the window
    marker = joined(server, dave)
    subscribe(marker, ROOM, "d")
    presence_event(bystander, lambda event: event.get("user") == "dave")
    events = presence_events(bystander)
    assert events[0]["type"] == "snapshot"
    assert events[1:] == [{"type": "join", "user": "bob"}, {"type": "join", "user": "dave"}]
    # A real leave still arrives (after the debounce window).
    attacker.close()
    presence_event(bystander, lambda event: event == {"type": "leave", "user": "bob"})
    for client in (bystander, marker):
        client.close()


def test_a_dead_workers_presence_expires_after_its_lease_and_a_live_workers_stays(
    daphne_factory, redis_server, lobby, make_user
):
    url = f"redis://127.0.0.1:{redis_server.port}/0"
    lease = 1.0
    dying = daphne_factory(REDIS_URL=url, CHAT_PRESENCE_LEASE=str(lease), STOMP_REDIS_PREFIX="lease-test:")
    living = daphne_factory(REDIS_URL=url, CHAT_PRESENCE_LEASE=str(lease), STOMP_REDIS_PREFIX="lease-test:")
    ann, ben, carol = make_user("ann"), make_user("ben"), make_user("carol")
    store = redis.Redis.from_url(url)

    def online() -> set[str]:
        return {k.decode() for k, v in store.hgetall("lease-test:presence:lobby").items() if int(v) > 0}

    on_dying = joined(dying, ann)
    subscribe(on_dying, ROOM, "a")
    on_living = joined(living, ben)
    subscribe(on_living, ROOM, "b")
    watcher = joined(living, carol)
    subscribe(watcher, PRESENCE, "p")
    assert online() == {"ann", "ben"}
    dying.kill()  # SIGKILL: no chance to decrement anything
    wait_for(lambda: online() == {"ben"}, timeout=20, what="the dead worker's user to go offline")
    presence_event(watcher, lambda event: event == {"type": "leave", "user": "ann"})
    # The live worker renews its lease: its user stays online over several leases.
    deadline = time.monotonic() + 5 * lease
    while time.monotonic() < deadline:
        assert online() == {"ben"}
        time.sleep(lease / 5)
    for client in (on_living, watcher):
        client.close()
    on_dying.close()
