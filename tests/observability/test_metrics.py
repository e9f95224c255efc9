"""A known sequence of STOMP frames (over a fake transport) moves each metric by exactly what it should."""

from __future__ import annotations

import asyncio

import pytest
from prometheus_client import REGISTRY

from operations import metrics, sampler
from stompengine.broker import Broker
from stompengine.realtime.registry import DestinationRegistry
from stompengine.realtime.tracking import tracker
from tests.stomp.fakes import wire
from tests.stomp.test_stomp_connection import config, open_connection


class Sample:
    """Reads a sample now; ``delta()`` is how much it moved since."""

    def __init__(self, name: str, **labels: str) -> None:
        self.name, self.labels = name, labels
        self.before = self.read()

    def read(self) -> float:
        return REGISTRY.get_sample_value(self.name, self.labels) or 0.0

    def delta(self) -> float:
        return self.read() - self.before


@pytest.fixture
def registry():
    return DestinationRegistry()


@pytest.fixture
def broker():
    return Broker()


def test_metrics_are_on_by_default():
    assert metrics.ENABLED


async def test_connect_subscribe_send_with_receipt_counts_frames_deliveries_and_latency(broker, registry):
    connects = Sample("chat_stomp_connects_total", outcome="accepted")
    open_ws = Sample("chat_connections_open", transport="websocket")
    frames_in = {c: Sample("chat_stomp_frames_received_total", command=c) for c in ("CONNECT", "SUBSCRIBE", "SEND")}
    frames_out = {c: Sample("chat_stomp_frames_sent_total", command=c) for c in ("CONNECTED", "RECEIPT", "MESSAGE")}
    deliveries = Sample("chat_stomp_deliveries_total")
    latency_count = Sample("chat_stomp_send_receipt_seconds_count")

    a, ta = await open_connection(broker, registry)
    b, tb = await open_connection(broker, registry, token="bob-token")
    assert open_ws.delta() == 2
    for connection in (a, b):
        await connection.data_received(wire("SUBSCRIBE", id="s", destination="/topic/x"))
    for n in range(3):
        await a.data_received(wire("SEND", f"m{n}".encode(), destination="/topic/x", receipt=f"r{n}"))
    await ta.wait_for(lambda: ta.commands().count("RECEIPT") == 3 and ta.commands().count("MESSAGE") == 3, "a")
    await tb.wait_for(lambda: tb.commands().count("MESSAGE") == 3, "b")

    assert connects.delta() == 2
    assert {c: s.delta() for c, s in frames_in.items()} == {"CONNECT": 2, "SUBSCRIBE": 2, "SEND": 3}
    # 3 publications x 2 subscribers, counted once per publication.
    assert deliveries.delta() == 6
    assert {c: s.delta() for c, s in frames_out.items()} == {"CONNECTED": 2, "RECEIPT": 3, "MESSAGE": 6}
    assert latency_count.delta() == 3

    await a.connection_lost()
    await b.connection_lost()
    assert open_ws.delta() == 0


async def test_refused_connects_are_counted_by_their_error_code(broker, registry):
    expired = Sample("chat_stomp_connects_total", outcome="token-expired")
    invalid = Sample("chat_stomp_connects_total", outcome="token-invalid")
    accepted = Sample("chat_stomp_connects_total", outcome="accepted")
    errors_out = Sample("chat_stomp_frames_sent_total", command="ERROR")
    for passcode in ("expired", "nobody", "expired"):
        connection, transport = await open_connection(broker, registry, token=None)
        await connection.data_received(wire("CONNECT", accept_version="1.2", passcode=passcode))
        await transport.wait_for(lambda t=transport: t.closed is not None, "close")
    assert (expired.delta(), invalid.delta(), accepted.delta()) == (2, 1, 0)
    assert errors_out.delta() == 3


async def test_a_slow_consumer_disconnect_is_counted(broker, registry):
    slow_consumers = Sample("chat_stomp_slow_consumer_disconnects_total")
    connection, transport = await open_connection(broker, registry, cfg=config(send_queue_limit=5))
    await connection.data_received(wire("SUBSCRIBE", id="1", destination="/topic/x"))
    transport.hold()
    for n in range(10):
        broker.publish("/topic/x", f"m{n}")
    transport.release()
    await transport.wait_for(lambda: transport.closed is not None, "the slow consumer to be closed")
    assert slow_consumers.delta() == 1


async def test_a_heartbeat_timeout_is_counted(broker, registry):
    from stompengine.stomp.session import SessionLimits

    timeouts = Sample("chat_stomp_heartbeat_timeouts_total")
    cfg = config(limits=SessionLimits(heartbeat_send_ms=20, heartbeat_receive_ms=40), heartbeat_grace=1.5)
    connection, transport = await open_connection(broker, registry, token=None, cfg=cfg)
    await connection.data_received(wire("CONNECT", accept_version="1.2", heart_beat="40,20", passcode="alice-token"))
    await transport.wait_for(lambda: transport.closed is not None, "close after missing heart-beats")
    assert transport.frames[-1].get("message") == "heart-beat timeout"
    assert timeouts.delta() == 1


async def test_the_sampler_observes_each_connections_send_queue_and_the_process(broker, registry):
    depth_count = Sample("chat_stomp_send_queue_depth_count")
    deep = Sample("chat_stomp_send_queue_depth_bucket", le="5.0")
    connection, transport = await open_connection(broker, registry, cfg=config(send_queue_limit=100))
    await connection.data_received(wire("SUBSCRIBE", id="1", destination="/topic/x"))
    transport.hold()
    for n in range(8):
        broker.publish("/topic/x", f"m{n}")
    live = len(tracker.connections)
    sampler.sample_once()
    transport.release()
    assert depth_count.delta() == live
    assert deep.delta() == live - 1  # every other connection is idle: only this one has more than 5 waiting
    assert REGISTRY.get_sample_value("chat_process_resident_memory_bytes") > 1_000_000
    await connection.connection_lost()


async def test_event_loop_lag_is_observed_by_the_running_sampler():
    lag_count = Sample("chat_event_loop_lag_seconds_count")
    task = asyncio.ensure_future(sampler.run(0.01))
    try:
        for _ in range(200):
            if lag_count.delta() >= 2:
                break
            await asyncio.sleep(0.01)
    finally:
        task.cancel()
    assert lag_count.delta() >= 2


def test_frames_out_counts_only_known_commands_at_frame_starts():
    receipts = Sample("chat_stomp_frames_sent_total", command="RECEIPT")
    errors = Sample("chat_stomp_frames_sent_total", command="ERROR")
    chunk = b"RECEIPT\nreceipt-id:1\n\n\x00\nRECEIPT\nreceipt-id:2\n\n\x00ERROR\nmessage:x\n\nRECEIPT\n in a body\x00\n"
    metrics.frames_out(chunk)
    assert (receipts.delta(), errors.delta()) == (2, 1)


def test_writer_store_wrapper_records_batch_size_commit_time_and_failures():
    size_sum = Sample("chat_writer_batch_units_sum")
    commits = Sample("chat_writer_commit_seconds_count")
    failures = Sample("chat_writer_batch_failures_total")
    assert metrics.timed_store(lambda units: ["ok"] * len(units))([[1], [2], [3]]) == ["ok"] * 3

    def broken(units):
        raise RuntimeError("database gone")

    with pytest.raises(RuntimeError):
        metrics.timed_store(broken)([[1]])
    assert (size_sum.delta(), commits.delta(), failures.delta()) == (4, 2, 1)


@pytest.mark.django_db(transaction=True)
def test_a_stored_batch_records_its_three_phases(make_user):
    from chat import services
    from chat.writer.store import messages_store

    alice = make_user("alice")
    room = services.room_create(creator=alice, name="Phases", slug="phases", is_private=False)
    phases = {phase: Sample("chat_writer_phase_seconds_count", phase=phase) for phase in ("lock", "build", "commit")}
    units = [(services.message_prepare(room=room, author=alice, body=f"m{i}", client_id=f"c{i}"),) for i in range(3)]
    assert all(result.error is None for result in messages_store(units=units))
    assert {phase: sample.delta() for phase, sample in phases.items()} == {"lock": 1, "build": 1, "commit": 1}


def test_no_label_carries_a_user_or_a_room():
    bounded = {"transport", "command", "outcome", "generation", "phase"}  # generation: 0, 1 or 2
    for family in REGISTRY.collect():
        if family.name.startswith(("chat_", "notifications_")):
            for sample in family.samples:
                assert set(sample.labels) - {"le"} <= bounded, (family.name, sample.labels)


@pytest.mark.django_db
def test_notifications_and_stream_tickets_are_counted(make_user):
    from notifications.models import Notification
    from notifications.services import notification_create
    from notifications.tickets import stream_identity_resolve, stream_ticket_issue

    created = Sample("notifications_created_total")
    issued = Sample("notifications_tickets_total", outcome="issued")
    redeemed = Sample("notifications_tickets_total", outcome="redeemed")
    rejected = Sample("notifications_tickets_total", outcome="rejected")
    alice = make_user("alice")
    notification_create(recipient=alice, kind=Notification.Kind.values[0], payload={"text": "hi"})
    ticket = stream_ticket_issue(user=alice)
    stream_identity_resolve(ticket=ticket, bearer=None, session_key=None)
    with pytest.raises(Exception, match="ticket"):
        stream_identity_resolve(ticket=ticket, bearer=None, session_key=None)  # single use
    assert (created.delta(), issued.delta(), redeemed.delta(), rejected.delta()) == (1, 1, 1, 1)


@pytest.mark.filterwarnings("ignore:coroutine '_before_shutdown.<locals>.run' was never awaited")
def test_the_sigterm_hook_turns_readiness_false_and_flags_the_worker_as_draining():
    from operations import readiness
    from stompengine.realtime import shutdown

    try:
        shutdown._before_shutdown()  # no running event loop here: nothing to close, the flag still flips
        assert readiness.draining()
        assert REGISTRY.get_sample_value("chat_worker_draining") == 1
    finally:
        readiness._draining = False
        metrics.DRAINING.set(0)


def test_garbage_collections_are_timed_by_generation():
    import gc

    metrics.gc_pauses_observed()
    metrics.gc_pauses_observed()  # idempotent: one callback, one observation per collection
    full = Sample("chat_gc_pause_seconds_count", generation="2")
    young = Sample("chat_gc_pause_seconds_count", generation="0")
    gc.collect()
    gc.collect(0)
    assert full.delta() == 1
    assert young.delta() >= 1  # an allocation may trigger one more young collection meanwhile
