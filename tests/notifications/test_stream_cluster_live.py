"""SSE tickets and notification streams on a real local Redis Cluster, across two daphne workers: the
channel layer rides sharded pub/sub, a ticket bought on one worker opens a stream on the other exactly
once, and the shared cache (throttles, lockout) works on the cluster.
"""

from __future__ import annotations

import json
import secrets

import httpx
import pytest

from tests.conftest import TEST_PASSWORD, access_token_for
from tests.notifications.conftest import stream_url, ticket_for

pytestmark = pytest.mark.live


@pytest.fixture
def cluster_workers(daphne_factory, redis_cluster):
    env = {"REDIS_URL": redis_cluster.url, "REDIS_CLUSTER": "1", "STOMP_REDIS_PREFIX": f"n{secrets.token_hex(4)}:"}
    return daphne_factory(**env), daphne_factory(**env)


def test_a_ticket_from_one_worker_opens_one_stream_on_the_other_and_notifications_cross_shards(
    cluster_workers, sse, make_user
):
    holder, writer = cluster_workers
    alice, bob, carol = make_user("alice"), make_user("bob"), make_user("carol")
    # Logging in goes through the throttle and lockout counters: the cluster-aware cache on every worker.
    for server in (holder, writer):
        login = httpx.post(f"{server.url}/api/auth/token/", json={"username": "alice", "password": TEST_PASSWORD},
                           timeout=10)  # fmt: skip
        assert login.status_code == 200, login.text
    ticket = ticket_for(writer.url, bob)  # bought on one worker ...
    stream = sse.open(stream_url(holder.url, ticket=ticket))  # ... redeemed on the other
    assert stream.status == 200
    again = sse.open(stream_url(writer.url, ticket=ticket))
    assert again.status == 401 and again.json()["code"] == "ticket-rejected"  # once, across workers
    carols = sse.open(stream_url(writer.url, ticket=ticket_for(holder.url, carol)))
    assert carols.status == 200

    headers = {"Authorization": f"Bearer {access_token_for(alice)}"}
    room = httpx.post(f"{writer.url}/api/rooms/", json={"name": "Ops", "is_private": True}, headers=headers,
                      timeout=10).json()  # fmt: skip
    for name in ("bob", "carol"):
        assert httpx.post(f"{writer.url}/api/rooms/{room['slug']}/members/", json={"username": name},
                          headers=headers, timeout=10).status_code in (200, 201)  # fmt: skip
    httpx.post(f"{holder.url}/api/rooms/{room['slug']}/messages/", json={"body": "ping @bob @carol"},
               headers=headers, timeout=10).raise_for_status()  # fmt: skip
    # Each user's group is its own channel, so its own slot: bob's and carol's may sit on different shards.
    for each in (stream, carols):
        events = each.wait_events(2)
        assert [e.event for e in events] == ["room_invite", "mention"]
        assert json.loads(events[1].data)["payload"]["room"] == room["slug"]


def test_the_shared_cache_works_on_the_cluster(redis_cluster):
    from chatproject.cluster_cache import RedisClusterCache

    cache = RedisClusterCache(redis_cluster.url, {"KEY_PREFIX": f"k{secrets.token_hex(4)}"})
    keys = [f"throttle-{n}" for n in range(20)]  # spread over every shard
    cache.set_many({key: n for n, key in enumerate(keys)}, timeout=60)
    assert cache.get_many(keys) == {key: n for n, key in enumerate(keys)}
    assert cache.add("lockout", 0, timeout=60) is True
    assert cache.incr("lockout") == 1
    cache.delete_many(keys)
    assert cache.get_many(keys) == {}
    assert cache.get("lockout") == 1
