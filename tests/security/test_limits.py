"""Every abuse limit of the STOMP endpoint, one test each: the offender gets a clear error, others are unaffected."""

from __future__ import annotations

import json

import pytest

from stompengine.broker import Broker
from stompengine.realtime.limits import SendGate, SendLimits, TokenBucket, UserConnections, user_connections
from stompengine.realtime.registry import Denied, Rejected
from tests.security.fakes import config, open_connection, wire

ERRORS = "/user/queue/errors"


async def subscribe_errors(connection, transport) -> None:
    await connection.data_received(wire("SUBSCRIBE", id="errors", destination=ERRORS, receipt="sub"))
    await transport.wait_for(lambda: "RECEIPT" in transport.commands(), "the subscription's RECEIPT")


def queue_error_codes(transport) -> list[str]:
    return [json.loads(f.body)["code"] for f in transport.queue_errors()]


# -- the pure pieces ------------------------------------------------------------------------------------


def test_token_bucket_allows_a_burst_then_refills_at_the_rate():
    bucket = TokenBucket(rate=10, burst=5, now=0.0)
    assert [bucket.take(0.0) for _ in range(6)] == [True] * 5 + [False]
    assert bucket.take(0.1)  # 0.1 s at 10/s is one token
    assert not bucket.take(0.1)
    assert [bucket.take(100.0) for _ in range(6)] == [True] * 5 + [False]  # never more than the burst


def test_send_gate_refuses_excess_then_denies_persistent_abuse():
    gate = SendGate(SendLimits(send_rate=10, send_burst=2, abuse_limit=5), now=0.0)
    gate.admit([b"a"], 0.0)
    gate.admit([b"b"], 0.0)
    for _ in range(4):
        with pytest.raises(Rejected) as refused:
            gate.admit([b"c"], 0.0)
        assert refused.value.code == "rate-limited"
    with pytest.raises(Denied) as denied:
        gate.admit([b"d"], 0.0)
    assert denied.value.code == "rate-limited"


def test_send_gate_strikes_drain_so_a_client_slightly_over_the_rate_is_only_throttled():
    gate = SendGate(SendLimits(send_rate=10, send_burst=1, abuse_limit=5), now=0.0)
    refused = 0
    for step in range(150):  # 15 per second for 10 seconds: one and a half times the rate
        try:
            gate.admit([b"x"], step / 15)
        except Rejected:
            refused += 1
    assert 40 <= refused <= 80  # a third to a half refused (float rounding), never disconnected (no Denied)


def test_user_connections_counts_per_user_and_releases():
    counts = UserConnections()
    assert counts.acquire(1, 2) and counts.acquire(1, 2)
    assert not counts.acquire(1, 2)
    assert counts.acquire(2, 2)
    counts.release(1)
    assert counts.count(1) == 1 and counts.acquire(1, 2)
    assert counts.acquire(3, 0) and counts.acquire(3, 0)  # 0: unlimited


# -- through a connection ----------------------------------------------------------------------------------


async def test_max_frame_size_is_an_error_and_closes():
    connection, transport = await open_connection(cfg=config(max_frame_size=2048))
    await connection.data_received(wire("SEND", b"x" * 4096, destination="/app/echo"))
    await transport.wait_for(lambda: transport.closed is not None, "close")
    assert transport.errors()[0].get("message") == "frame too large"


async def test_max_headers_is_an_error_and_closes():
    connection, transport = await open_connection(cfg=config(max_headers=8))
    headers = {f"h{n}": "v" for n in range(20)}
    await connection.data_received(wire("SEND", b"x", destination="/app/echo", **headers))
    await transport.wait_for(lambda: transport.closed is not None, "close")
    assert transport.errors()[0].get("message") == "too many headers"


async def test_max_header_length_is_an_error_and_closes():
    connection, transport = await open_connection(cfg=config(max_header_length=256))
    await connection.data_received(wire("SEND", b"x", destination="/app/echo", big="v" * 1000))
    await transport.wait_for(lambda: transport.closed is not None, "close")
    assert transport.errors()[0].get("message") == "header too long"


async def test_max_subscriptions_is_an_error_and_closes():
    connection, transport = await open_connection(cfg=config(max_subscriptions=3))
    for n in range(4):
        await connection.data_received(wire("SUBSCRIBE", id=f"s{n}", destination=f"/topic/t{n}"))
    await transport.wait_for(lambda: transport.closed is not None, "close")
    assert transport.errors()[0].get("message") == "too many subscriptions"


async def test_body_over_the_limit_is_refused_on_the_error_queue_and_the_connection_stays():
    connection, transport = await open_connection(cfg=config(send_limits=SendLimits(max_body_size=100)))
    await subscribe_errors(connection, transport)
    await connection.data_received(wire("SEND", b"x" * 101, destination="/app/echo", receipt="big"))
    await connection.data_received(wire("SEND", b"x" * 100, destination="/app/echo", receipt="ok"))
    await transport.wait_for(lambda: "ok" in [f.get("receipt-id") for f in transport.frames], "the second RECEIPT")
    assert queue_error_codes(transport) == ["too-large"]
    assert json.loads(transport.queue_errors()[0].body)["receipt"] == "big"
    assert "big" not in [f.get("receipt-id") for f in transport.frames]
    assert transport.closed is None and not transport.errors()


async def test_body_limit_applies_to_the_sends_of_a_transaction():
    connection, transport = await open_connection(cfg=config(send_limits=SendLimits(max_body_size=100)))
    await subscribe_errors(connection, transport)
    await connection.data_received(
        wire("BEGIN", transaction="t") + wire("SEND", b"x" * 500, destination="/app/echo", transaction="t")
        + wire("COMMIT", transaction="t", receipt="commit")
    )  # fmt: skip
    await transport.wait_for(lambda: transport.queue_errors(), "the refusal")
    assert queue_error_codes(transport) == ["too-large"]
    assert "commit" not in [f.get("receipt-id") for f in transport.frames]


async def test_bodies_buffered_in_open_transactions_are_bounded_in_bytes():
    connection, transport = await open_connection(cfg=config(max_transaction_bytes=4096))
    frames = wire("BEGIN", transaction="a") + wire("BEGIN", transaction="b")
    for n in range(3):  # 3 x 1500 bytes over two transactions: the third goes past 4096
        frames += wire("SEND", b"x" * 1500, destination="/app/echo", transaction="ab"[n % 2])
    await connection.data_received(frames)
    await transport.wait_for(lambda: transport.closed is not None, "close")
    error = transport.errors()[0]
    assert error.get("message") == "transaction too large" and b"4096 bytes" in error.body


async def test_committed_and_aborted_transactions_free_their_bytes():
    connection, transport = await open_connection(cfg=config(max_transaction_bytes=4096))
    for n in range(5):  # 5 x 3000 bytes, one transaction at a time: always under the bound
        end = "COMMIT" if n % 2 else "ABORT"
        await connection.data_received(
            wire("BEGIN", transaction=f"t{n}") + wire("SEND", b"x" * 3000, destination="/app/echo", transaction=f"t{n}")
            + wire(end, transaction=f"t{n}", receipt=f"r{n}")
        )  # fmt: skip
    await transport.wait_for(lambda: "r4" in [f.get("receipt-id") for f in transport.frames], "the last RECEIPT")
    assert not transport.errors()


async def test_sends_beyond_the_rate_are_refused_first_then_persistent_abuse_disconnects():
    limits = SendLimits(send_rate=0.001, send_burst=3, abuse_limit=5, subscribe_cost=0)  # SENDs only here
    broker = Broker()
    connection, transport = await open_connection(cfg=config(send_limits=limits), broker=broker)
    bystander, bystander_transport = await open_connection(token="user1-token", broker=broker)
    await subscribe_errors(connection, transport)
    for n in range(3):
        await connection.data_received(wire("SEND", b"hi", destination="/app/echo", receipt=f"ok-{n}"))
    await connection.data_received(wire("SEND", b"hi", destination="/app/echo", receipt="over"))
    await transport.wait_for(lambda: transport.queue_errors(), "the first refusal")
    assert queue_error_codes(transport) == ["rate-limited"]
    assert transport.closed is None  # refused, not disconnected
    for n in range(10):
        await connection.data_received(wire("SEND", b"hi", destination="/app/echo", receipt=f"abuse-{n}"))
    await transport.wait_for(lambda: transport.closed is not None, "the disconnect")
    error = transport.errors()[0]
    assert (error.get("message"), error.get("code")) == ("rate limit exceeded", "rate-limited")
    receipts = [f.get("receipt-id") for f in transport.frames if f.command == "RECEIPT"]
    assert receipts == ["sub", "ok-0", "ok-1", "ok-2"]  # nothing refused was acknowledged
    # Another connection is unaffected.
    await bystander.data_received(wire("SEND", b"hi", destination="/app/echo", receipt="b"))
    await bystander_transport.wait_for(lambda: "RECEIPT" in bystander_transport.commands(), "bystander RECEIPT")
    assert bystander_transport.closed is None


async def test_connections_beyond_the_per_user_limit_are_refused_and_a_slot_frees_on_close():
    limits = SendLimits(max_connections_per_user=2)
    token = "user5-token"
    first, _ = await open_connection(token=token, cfg=config(send_limits=limits))
    second, _ = await open_connection(token=token, cfg=config(send_limits=limits))
    third, third_transport = await open_connection(token=token, cfg=config(send_limits=limits))
    assert third_transport.commands()[0] == "ERROR"
    error = third_transport.errors()[0]
    assert (error.get("message"), error.get("code")) == ("too many connections", "too-many-connections")
    other, other_transport = await open_connection(token="user6-token", cfg=config(send_limits=limits))
    assert other_transport.commands() == ["CONNECTED"]  # another user is not affected
    await first.connection_lost()
    fourth, fourth_transport = await open_connection(token=token, cfg=config(send_limits=limits))
    assert fourth_transport.commands() == ["CONNECTED"]
    for connection in (second, third, other, fourth):
        await connection.connection_lost()
    assert user_connections.count(1005) == 0 and user_connections.count(1006) == 0


def test_settings_defaults_are_documented_and_generous():
    from django.conf import settings

    from stompengine.conf import stomp_settings

    # The engine's settings (STOMP_*) have their defaults in stompengine.conf, read through stomp_settings().
    stomp = stomp_settings()
    assert stomp.max_body_size <= stomp.max_frame_size
    # A chat message of the longest allowed length fits, even in 4-byte characters with JSON around it.
    assert stomp.max_body_size >= settings.CHAT_MESSAGE_MAX_LENGTH * 4 + 200
    assert SendLimits.from_settings() == SendLimits()
