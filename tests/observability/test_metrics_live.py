"""Two daphne workers sharing PROMETHEUS_MULTIPROC_DIR and a Redis: /metrics sums both, /readyz/ follows Redis."""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import redis_restart, wait_for
from tests.observability.scrape import chat_across, scrape, total

pytestmark = pytest.mark.live


def ready(url: str) -> tuple[int, dict]:
    response = httpx.get(f"{url}/readyz/", timeout=5)
    return response.status_code, response.json()


@pytest.fixture
def two_workers(daphne_factory, redis_server, tmp_path):
    url = f"redis://127.0.0.1:{redis_server.port}/0"
    env = {"REDIS_URL": url, "STOMP_REDIS_PREFIX": f"ops-{tmp_path.name}:", "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    return daphne_factory(**env), daphne_factory(**env)


def test_metrics_of_both_workers_are_summed_in_one_scrape(two_workers, make_user):
    one, two = two_workers
    here, there = chat_across(one, two, make_user("alice"), make_user("bob"), "/topic/ops")
    try:
        assert here.read_until(lambda f: f.get("receipt-id") == "r4", "the last receipt") is not None

        for worker in (one, two):  # either worker answers for both
            samples = scrape(worker.url)
            assert total(samples, "chat_connections_open", transport="websocket") == 2
            assert total(samples, "chat_stomp_connects_total", outcome="accepted") == 2
            assert total(samples, "chat_stomp_frames_received_total", command="SEND") == 5
            assert total(samples, "chat_stomp_deliveries_total") == 10  # 5 messages x 1 subscriber per worker
            assert total(samples, "chat_stomp_send_receipt_seconds_count") == 5
            assert total(samples, "chat_redis_published_messages_total") >= 5
    finally:
        here.close()
        there.close()
    wait_for(lambda: total(scrape(one.url), "chat_connections_open") == 0, timeout=10, what="closed connections")


def test_readiness_is_false_while_redis_is_down_and_true_again_after(two_workers, redis_server):
    one, two = two_workers
    for worker in (one, two):
        status, body = ready(worker.url)
        assert status == 200 and body["ready"] is True, body
        assert set(body["checks"]) == {"database", "redis", "shutdown"}
        assert httpx.get(f"{worker.url}/healthz/", timeout=5).status_code == 200
    redis_server.kill()
    try:
        for worker in (one, two):
            status, body = ready(worker.url)
            assert status == 503 and body["ready"] is False, body
            assert body["checks"]["redis"]["ok"] is False and body["checks"]["database"]["ok"] is True
            # Liveness does not depend on Redis: restarting the worker would not bring Redis back.
            assert httpx.get(f"{worker.url}/healthz/", timeout=5).status_code == 200
    finally:
        redis_restart(redis_server)
    for worker in (one, two):
        wait_for(lambda w=worker: ready(w.url)[0] == 200, timeout=15, what=f"{worker.port} ready again")


def test_chat_redis_up_is_1_on_an_idle_worker_0_while_a_subscribed_one_lost_redis_and_1_again_after(
    daphne_factory, redis_server, make_user, tmp_path
):
    # Per worker (no shared directory), as Prometheus scrapes them: the ChatRedisGone alert reads min over these.
    env = {"REDIS_URL": f"redis://127.0.0.1:{redis_server.port}/0", "STOMP_REDIS_PREFIX": f"up-{tmp_path.name}:"}
    one, two = daphne_factory(**env), daphne_factory(**env)
    for worker in (one, two):  # ready, no client yet: its broker has nothing to lose
        assert total(scrape(worker.url), "chat_redis_up") == 1
    here, there = chat_across(one, two, make_user("alice"), make_user("bob"), "/topic/up")
    try:
        redis_server.kill()
        try:
            for worker in (one, two):
                wait_for(lambda w=worker: total(scrape(w.url), "chat_redis_up") == 0, timeout=15, what="up 0")
        finally:
            redis_restart(redis_server)
        for worker in (one, two):
            wait_for(lambda w=worker: total(scrape(w.url), "chat_redis_up") == 1, timeout=30, what="up 1 again")
            assert total(scrape(worker.url), "chat_redis_reconnects_total") >= 1
    finally:
        here.close()
        there.close()


def test_a_production_worker_answers_probes_and_scrapes_on_its_loopback_address(daphne_factory, tmp_path):
    # As deploy/env.example: public host names only, HTTPS redirect on. Prometheus and a load balancer's
    # probe still call http://127.0.0.1:<port>/ with that Host; Django alone would answer 400 or 301.
    static_root = tmp_path / "static"
    static_root.mkdir()
    (static_root / "staticfiles.json").write_text('{"paths": {}, "version": "1.1"}')
    server = daphne_factory(DEBUG="0", SECRET_KEY="s" * 50, ALLOWED_HOSTS="www.example.com,api.example.com",
                            SECURE_SSL_REDIRECT="1", STATIC_ROOT=str(static_root))  # fmt: skip
    assert httpx.get(f"{server.url}/healthz/", timeout=5).json() == {"status": "ok"}
    ready = httpx.get(f"{server.url}/readyz/", timeout=5)
    assert ready.status_code == 200 and ready.json()["ready"] is True
    scraped = httpx.get(f"{server.url}/metrics", timeout=5)
    assert scraped.status_code == 200 and "chat_stomp_deliveries_total" in scraped.text
    assert scraped.headers["content-type"].startswith("text/plain; version=0.0.4")
    assert httpx.post(f"{server.url}/readyz/", timeout=5).status_code == 405
    assert httpx.get(f"{server.url}/api/me/", timeout=5).status_code in (301, 400)  # the rest is Django's as before
