"""A Last-Event-ID replay on a real daphne: the SSE metrics count it and, with tracing on, it is an sse.replay span."""

from __future__ import annotations

import pytest

from notifications import services
from tests.conftest import wait_for
from tests.notifications.conftest import sse, stream_url, ticket_for  # noqa: F401 - sse is a fixture
from tests.observability.scrape import scrape, total

pytestmark = pytest.mark.live


def test_a_replay_is_counted_and_traced(daphne_factory, sse, make_user):  # noqa: F811 - the fixture
    server = daphne_factory(OTEL_TRACES_EXPORTER="console", OTEL_BSP_SCHEDULE_DELAY="100")
    bob = make_user("bob")
    old = [services.notification_create(recipient=bob, kind="announcement", payload={"i": i}) for i in range(3)]
    stream = sse.open(stream_url(server.url, ticket=ticket_for(server.url, bob), last_event_id=old[0].pk))
    stream.wait_ids([n.pk for n in old[1:]])

    samples = scrape(server.url)
    assert total(samples, "notifications_sse_streams_open") == 1
    assert total(samples, "notifications_sse_replays_total") == 1
    assert total(samples, "notifications_sse_replay_events_sum") == 2
    assert total(samples, "notifications_sse_events_sent_total") == 2
    assert total(samples, "notifications_tickets_total", outcome="issued") == 1
    assert total(samples, "notifications_tickets_total", outcome="redeemed") == 1
    wait_for(lambda: '"name": "sse.replay"' in server.log(), timeout=15, what="the sse.replay span")

    sse.close(stream)
    wait_for(lambda: total(scrape(server.url), "notifications_sse_streams_open") == 0, timeout=15, what="closed")
