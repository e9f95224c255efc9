"""Presence under real daphne processes (and redis-server): debounced join/leave (issue 16 item 9) and
leases that let the counts of a dead worker expire (item 15)."""

from __future__ import annotations

import json
import time

import pytest
import redis
from websockets.sync.client import connect

from chat import services
from tests.conftest import access_token_for, wait_for

pytestmark = pytest.mark.live
ROOM = "/topic/rooms.lobby"
PRESENCE = f"{ROOM}.presence"


class Stomp:
    """A blocking STOMP 1.2 client over a raw WebSocket (the websockets library), for presence tests."""

    def __init__(self, server, user) -> None:
        self.ws = connect(f"{server.ws_url}/ws", subprotocols=["v12.stomp"], open_timeout=10)
        self.buffer = b""
        self.frames: list[tuple[str, dict[str, str], str]] = []
        self.send("CONNECT", **{"accept-version": "1.2", "host": "x", "heart-beat": "0,0",
                                "Authorization": f"Bearer {access_token_for(user)}"})  # fmt: skip
        assert self.until(lambda f: f[0] in ("CONNECTED", "ERROR"))[0] == "CONNECTED", self.frames

    def send(self, command: str, body: str = "", **headers: str) -> None:
        lines = [command, *(f"{k}:{v}" for k, v in headers.items())]
        self.ws.send(("\n".join(lines) + "\n\n" + body + "\0").encode())

    def until(self, predicate, *, timeout: float = 15.0) -> tuple[str, dict[str, str], str]:
        deadline = time.monotonic() + timeout
        index = 0
        while True:
            while index < len(self.frames):
                if predicate(self.frames[index]):
                    return self.frames[index]
                index += 1
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"timed out; frames: {self.frames[-10:]}"
            data = self.ws.recv(timeout=remaining)
            self.buffer += data if isinstance(data, bytes) else data.encode()
            *complete, self.buffer = self.buffer.split(b"\0")
            for raw in complete:
                text = raw.decode().lstrip("\r\n")
                if not text:
                    continue  # a heart-beat
                head, _, body = text.partition("\n\n")
                command, *lines = head.split("\n")
                headers = dict(line.split(":", 1) for line in lines)
                self.frames.append((command, headers, body))

    def subscribe(self, destination: str, sub_id: str) -> None:
        self.send("SUBSCRIBE", id=sub_id, destination=destination, receipt=f"r-{sub_id}")
        self.until(lambda f: f[0] == "RECEIPT" and f[1].get("receipt-id") == f"r-{sub_id}")

    def presence_events(self) -> list[dict]:
        return [json.loads(f[2]) for f in self.frames if f[0] == "MESSAGE" and f[1].get("destination") == PRESENCE]

    def close(self) -> None:
        self.ws.close()


@pytest.fixture
def lobby(make_user):
    alice = make_user("alice")
    return services.room_create(creator=alice, name="Lobby", slug="lobby")


def test_subscribe_unsubscribe_pairs_send_a_bystander_one_join_and_a_real_leave_still_arrives(
    daphne_factory, lobby, make_user
):
    server = daphne_factory()
    carol, bob, dave = make_user("carol"), make_user("bob"), make_user("dave")
    bystander = Stomp(server, carol)
    bystander.subscribe(PRESENCE, "p")
    attacker = Stomp(server, bob)
    for i in range(20):
        attacker.send("SUBSCRIBE", id=f"s{i}", destination=ROOM)
        attacker.send("UNSUBSCRIBE", id=f"s{i}")
    attacker.subscribe(ROOM, "last")  # ends subscribed: nothing is left waiting out the window
    marker = Stomp(server, dave)
    marker.subscribe(ROOM, "d")
    bystander.until(lambda f: f[0] == "MESSAGE" and json.loads(f[2]).get("user") == "dave")
    events = bystander.presence_events()
    assert events[0]["type"] == "snapshot"
    assert events[1:] == [{"type": "join", "user": "bob"}, {"type": "join", "user": "dave"}]
    # A real leave still arrives (after the debounce window).
    attacker.close()
    bystander.until(lambda f: f[0] == "MESSAGE" and json.loads(f[2]) == {"type": "leave", "user": "bob"})
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

    on_dying = Stomp(dying, ann)
    on_dying.subscribe(ROOM, "a")
    on_living = Stomp(living, ben)
    on_living.subscribe(ROOM, "b")
    watcher = Stomp(living, carol)
    watcher.subscribe(PRESENCE, "p")
    assert online() == {"ann", "ben"}
    dying.kill()  # SIGKILL: no chance to decrement anything
    wait_for(lambda: online() == {"ben"}, timeout=20, what="the dead worker's user to go offline")
    watcher.until(lambda f: f[0] == "MESSAGE" and json.loads(f[2]) == {"type": "leave", "user": "ann"})
    # The live worker renews its lease: its user stays online over several leases.
    deadline = time.monotonic() + 5 * lease
    while time.monotonic() < deadline:
        assert online() == {"ben"}
        time.sleep(lease / 5)
    for client in (on_living, watcher):
        client.close()
    on_dying.ws.close()
