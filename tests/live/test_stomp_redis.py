"""Cross-process fan-out through Redis: two daphne processes, one Redis subscription per destination per process."""

from __future__ import annotations

import time

import pytest
import redis
from rest_framework_simplejwt.tokens import AccessToken
from test_stomp_clients import stomp_py_connection

from tests.conftest import wait_for

pytestmark = pytest.mark.live


def token_for(user) -> str:
    return str(AccessToken.for_user(user))


def connected(server, user, **kwargs):
    connection, events = stomp_py_connection(server, **kwargs)
    connection.connect(passcode=token_for(user), wait=True)
    events.next("connected")
    return connection, events


def test_messages_cross_processes_through_redis_in_order(daphne_factory, redis_server, make_user, settings):
    url = f"redis://127.0.0.1:{redis_server.port}/0"
    prefix = f"stomp-test-{time.monotonic_ns()}:"
    one = daphne_factory(REDIS_URL=url, STOMP_REDIS_PREFIX=prefix)
    two = daphne_factory(REDIS_URL=url, STOMP_REDIS_PREFIX=prefix)
    alice, bob = make_user("alice"), make_user("bob")

    subscribers = []
    for server in (one, one, two):
        connection, events = connected(server, alice)
        connection.subscribe("/topic/shared", id="1", headers={"receipt": "s"})
        events.next("receipt")
        connection.subscribe("/user/queue/inbox", id="2", headers={"receipt": "s2"})
        events.next("receipt")
        subscribers.append((connection, events))

    client = redis.Redis(port=redis_server.port)
    counts = dict(client.pubsub_numsub(f"{prefix}/topic/shared"))
    assert counts[f"{prefix}/topic/shared".encode()] == 2  # one per process, not one per connection

    sender, _ = connected(two, bob)
    for n in range(20):
        sender.send("/topic/shared", f"m{n}")
    for _, events in subscribers:
        bodies = [events.next("message")[1] for _ in range(20)]
        assert bodies == [f"m{n}" for n in range(20)]  # per-destination order, no loss, no duplicates

    # From sync code in a process with no subscribers (here: the test itself, like a management command),
    # a user destination reaches every session of that user, whichever process holds it.
    from stompengine.broker import publish_sync

    settings.REDIS_URL = url
    settings.STOMP_REDIS_PREFIX = prefix
    publish_sync("/queue/inbox", {"to": "alice"}, user_id=alice.pk)
    publish_sync("/queue/inbox", {"to": "bob"}, user_id=bob.pk)
    for _, events in subscribers:
        headers, body = events.next("message")
        assert (headers["destination"], body) == ("/user/queue/inbox", '{"to":"alice"}')
    sender.disconnect()
    for connection, _ in subscribers:
        connection.disconnect()

    def unsubscribed() -> bool:
        return dict(client.pubsub_numsub(f"{prefix}/topic/shared"))[f"{prefix}/topic/shared".encode()] == 0

    wait_for(unsubscribed, timeout=10, what="both processes to drop their Redis subscription")
    client.close()
