"""Issue 16 items 2, 7 and 9: bytes in flight per connection, replays per connection, one user's budget.

In-process (a StompConnection over fake transports); the same limits against real daphne and uvicorn
processes are in tests/live/test_slow_consumer.py.
"""

from __future__ import annotations

import asyncio
import json

from stompengine.broker import Broker
from stompengine.realtime.limits import BudgetSync, SendLimits, UserSendBudget
from stompengine.realtime.registry import Replay
from tests.security.fakes import config, echo_registry, open_connection, wire
from tests.stomp.fakes import FakeTransport

ERRORS = "/user/queue/errors"


class BufferingTransport(FakeTransport):
    """Like daphne: every write is accepted at once and waits in the server's buffer until the peer reads."""

    def __init__(self) -> None:
        super().__init__()
        self.buffered = 0

    async def send(self, data: bytes) -> None:
        self.buffered += len(data)
        await super().send(data)

    def pending_bytes(self) -> int:
        return self.buffered

    def peer_reads_everything(self) -> None:
        self.buffered = 0


async def open_buffered(cfg, *, token="user0-token", broker=None, registry=None):
    buffered = BufferingTransport()
    connection, _transport = await open_connection(token=None, cfg=cfg, broker=broker, registry=registry,
                                                   transport=buffered)  # fmt: skip
    await connection.data_received(wire("CONNECT", accept_version="1.2", Authorization=f"Bearer {token}"))
    await buffered.wait_for(lambda: buffered.frames, "CONNECTED")
    return connection, buffered


def slow_consumer_error(transport) -> tuple[str | None, str | None]:
    errors = transport.errors()
    assert errors, f"no ERROR frame; got {transport.commands()[-5:]}"
    return errors[0].get("message"), errors[0].get("code")


# -- item 2: bytes in flight -----------------------------------------------------------------------------


async def test_a_client_whose_bytes_pile_up_in_the_servers_buffer_is_a_slow_consumer():
    broker = Broker()
    cfg = config(max_frame_size=1 << 20)
    cfg = type(cfg)(**{**cfg.__dict__, "max_unsent_bytes": 64 * 1024})
    connection, transport = await open_buffered(cfg, broker=broker)
    await connection.data_received(wire("SUBSCRIBE", id="s", destination="/topic/t", receipt="r"))
    await transport.wait_for(lambda: "RECEIPT" in transport.commands(), "RECEIPT")
    honest, honest_transport = await open_connection(token="user1-token", broker=broker)
    await honest.data_received(wire("SUBSCRIBE", id="s", destination="/topic/t", receipt="r"))
    await honest_transport.wait_for(lambda: "RECEIPT" in honest_transport.commands(), "honest RECEIPT")
    for _n in range(40):  # 40 x 4 kB: far fewer frames than STOMP_SEND_QUEUE_LIMIT, more bytes than the bound
        broker.publish_frame("/topic/t", "/topic/t", (), b"x" * 4096)
        await asyncio.sleep(0)
    await transport.wait_for(lambda: transport.closed is not None, "the slow consumer's close")
    assert slow_consumer_error(transport) == ("slow consumer", "slow-consumer")
    assert connection.queue_depth == 0  # the backlog was freed
    await honest_transport.wait_for(
        lambda: sum(f.command == "MESSAGE" for f in honest_transport.frames) == 40, "the honest client's messages"
    )
    assert honest_transport.closed is None


async def test_frames_waiting_in_the_connections_own_queue_count_in_bytes_too():
    broker = Broker()
    cfg = config(max_frame_size=1 << 20)
    cfg = type(cfg)(**{**cfg.__dict__, "max_unsent_bytes": 64 * 1024})
    connection, transport = await open_connection(cfg=cfg, broker=broker)
    await connection.data_received(wire("SUBSCRIBE", id="s", destination="/topic/t", receipt="r"))
    await transport.wait_for(lambda: "RECEIPT" in transport.commands(), "RECEIPT")
    transport.hold()  # like uvicorn under flow control: the write waits, frames stay in our queue
    for _n in range(40):
        broker.publish_frame("/topic/t", "/topic/t", (), b"x" * 4096)
        await asyncio.sleep(0)
    transport.release()
    await transport.wait_for(lambda: transport.closed is not None, "the slow consumer's close")
    assert slow_consumer_error(transport) == ("slow consumer", "slow-consumer")


async def test_a_client_that_caught_up_since_the_last_write_is_not_cut_off():
    broker = Broker()
    cfg = config(max_frame_size=1 << 20)
    cfg = type(cfg)(**{**cfg.__dict__, "max_unsent_bytes": 64 * 1024})
    connection, transport = await open_buffered(cfg, broker=broker)
    await connection.data_received(wire("SUBSCRIBE", id="s", destination="/topic/t", receipt="r"))
    await transport.wait_for(lambda: "RECEIPT" in transport.commands(), "RECEIPT")
    for _n in range(12):  # 48 kB into the server's buffer: under the bound
        broker.publish_frame("/topic/t", "/topic/t", (), b"x" * 4096)
        await asyncio.sleep(0)
    await transport.wait_for(lambda: transport.buffered > 40_000, "the writes")
    transport.peer_reads_everything()
    for _n in range(6):  # 24 kB queued in one go: over the bound only with the stale 48 kB
        broker.publish_frame("/topic/t", "/topic/t", (), b"x" * 4096)
    await transport.wait_for(lambda: sum(f.command == "MESSAGE" for f in transport.frames) == 18, "all messages")
    assert transport.closed is None and not transport.errors()


def replay_registry(size: int, count: int):
    registry = echo_registry()

    @registry.replay("/topic/history.{name}")
    async def history(ctx, name):
        return Replay(messages=[({"n": n, "pad": "x" * size}, {}) for n in range(count)])

    return registry


async def test_a_subscribe_beyond_the_concurrent_replays_waits_and_an_unread_one_ends_as_slow_consumer():
    cfg = config()
    cfg = type(cfg)(**{**cfg.__dict__, "max_replays": 2, "replay_wait": 0.5, "max_unsent_bytes": 10 << 20})
    connection, transport = await open_buffered(cfg, registry=replay_registry(100, 20))
    for n in range(3):
        await connection.data_received(
            wire("SUBSCRIBE", id=f"h{n}", destination=f"/topic/history.{n}", receipt=f"r{n}")
        )
    await transport.wait_for(lambda: transport.closed is not None, "the close of a client that never reads")
    receipts = [f.get("receipt-id") for f in transport.frames if f.command == "RECEIPT"]
    assert receipts == ["r0", "r1"]  # the third replay never started
    assert slow_consumer_error(transport) == ("slow consumer", "slow-consumer")


async def test_a_waiting_replay_goes_ahead_once_the_client_has_read_the_earlier_ones():
    cfg = config()
    cfg = type(cfg)(**{**cfg.__dict__, "max_replays": 2, "replay_wait": 5.0, "max_unsent_bytes": 10 << 20})
    connection, transport = await open_buffered(cfg, registry=replay_registry(100, 20))
    task = asyncio.ensure_future(
        connection.data_received(
            wire("SUBSCRIBE", id="h0", destination="/topic/history.0", receipt="r0")
            + wire("SUBSCRIBE", id="h1", destination="/topic/history.1", receipt="r1")
            + wire("SUBSCRIBE", id="h2", destination="/topic/history.2", receipt="r2")
        )
    )
    await transport.wait_for(lambda: "r1" in [f.get("receipt-id") for f in transport.frames], "two replays")
    assert "r2" not in [f.get("receipt-id") for f in transport.frames]
    transport.peer_reads_everything()
    await asyncio.wait_for(task, 5.0)
    receipts = [f.get("receipt-id") for f in transport.frames if f.command == "RECEIPT"]
    assert receipts == ["r0", "r1", "r2"]
    assert sum(f.command == "MESSAGE" for f in transport.frames) == 60
    assert transport.closed is None


# -- item 9: SUBSCRIBE / UNSUBSCRIBE count against the budget ----------------------------------------------


async def test_a_subscribe_unsubscribe_flood_is_refused_then_disconnected():
    limits = SendLimits(send_rate=1.0, send_burst=20, abuse_limit=50, subscribe_cost=1.0)
    connection, transport = await open_connection(cfg=config(send_limits=limits))
    await connection.data_received(wire("SUBSCRIBE", id="errors", destination=ERRORS, receipt="errors"))
    for n in range(400):
        await connection.data_received(wire("SUBSCRIBE", id=f"s{n}", destination="/topic/flood", receipt=f"s{n}"))
        await connection.data_received(wire("UNSUBSCRIBE", id=f"s{n}", receipt=f"u{n}"))
        if transport.closed is not None:
            break
    await transport.wait_for(lambda: transport.closed is not None, "the disconnect")
    refusals = [json.loads(f.body) for f in transport.queue_errors()]
    assert refusals and refusals[0]["code"] == "rate-limited" and refusals[0]["receipt"]
    receipts = [f.get("receipt-id") for f in transport.frames if f.command == "RECEIPT"]
    assert len(receipts) < 40  # the burst, not 800


async def test_an_unsubscribe_flood_that_ends_the_connection_leaves_no_subscription_behind():
    limits = SendLimits(send_rate=0.001, send_burst=10, abuse_limit=3, subscribe_cost=1.0)
    broker = Broker()
    connection, transport = await open_connection(cfg=config(send_limits=limits), broker=broker)
    for n in range(10):
        await connection.data_received(wire("SUBSCRIBE", id=f"s{n}", destination=f"/topic/t{n}"))
    for n in range(10):
        await connection.data_received(wire("UNSUBSCRIBE", id=f"s{n}"))
    await transport.wait_for(lambda: transport.closed is not None, "the disconnect")
    assert slow_consumer_error(transport) == ("rate limit exceeded", "rate-limited")
    assert [key for key in broker.local.keys() if broker.local.count(key)] == []  # noqa: SIM118 - a method


async def test_a_refused_subscribe_is_reported_and_not_made():
    limits = SendLimits(send_rate=0.001, send_burst=3, abuse_limit=100, subscribe_cost=1.0)
    connection, transport = await open_connection(cfg=config(send_limits=limits))
    await connection.data_received(wire("SUBSCRIBE", id="errors", destination=ERRORS, receipt="errors"))
    for n in range(3):
        await connection.data_received(wire("SUBSCRIBE", id=f"s{n}", destination=f"/topic/t{n}", receipt=f"s{n}"))
    await transport.wait_for(lambda: transport.queue_errors(), "the refusal")
    assert json.loads(transport.queue_errors()[0].body)["receipt"] == "s2"
    assert "/topic/t2" not in connection.subscribed_destinations()
    assert transport.closed is None


# -- item 7: one user's budget across connections ----------------------------------------------------------


async def test_one_users_sends_share_one_budget_across_connections():
    limits = SendLimits(send_rate=1000, send_burst=1000, user_send_rate=0.001, user_send_burst=4, subscribe_cost=0)
    cfg = config(send_limits=limits)
    connections = [await open_connection(token="user7-token", cfg=cfg) for _ in range(3)]
    for connection, _ in connections:
        await connection.data_received(wire("SUBSCRIBE", id="errors", destination=ERRORS, receipt="errors"))
    for n in range(2):
        for i, (connection, _) in enumerate(connections):
            await connection.data_received(wire("SEND", b"hi", destination="/app/echo", receipt=f"{i}-{n}"))
    for _, transport in connections:
        await transport.wait_for(lambda t=transport: len([f for f in t.frames if f.command == "RECEIPT"]) + len(
            t.queue_errors()) == 3, "answers")  # fmt: skip
    sent = sum(f.command == "RECEIPT" and f.get("receipt-id") != "errors" for _, t in connections for f in t.frames)
    refused = [json.loads(f.body)["code"] for _, t in connections for f in t.queue_errors()]
    assert sent == 4 and refused == ["rate-limited", "rate-limited"]
    # Another user has their own budget.
    other, other_transport = await open_connection(token="user8-token", cfg=cfg)
    await other.data_received(wire("SEND", b"hi", destination="/app/echo", receipt="o"))
    await other_transport.wait_for(lambda: "RECEIPT" in other_transport.commands(), "the other user's RECEIPT")
    for connection, _ in [*connections, (other, None)]:
        await connection.connection_lost()


def test_user_budget_refills_at_its_rate():
    budget = UserSendBudget()
    limits = SendLimits(user_send_rate=2.0, user_send_burst=2)
    assert budget.take(1, limits, 0.0, 2)
    assert not budget.take(1, limits, 0.0, 1)
    assert budget.take(1, limits, 0.5, 1)
    assert budget.take_spent() == {1: 3}
    assert budget.take_spent() == {}


async def test_budget_sync_charges_each_process_with_what_the_others_spent(redis_server):
    import redis.asyncio as aioredis

    limits = SendLimits(user_send_rate=0.001, user_send_burst=100)
    url = f"redis://127.0.0.1:{redis_server.port}/0"
    clients = [aioredis.from_url(url), aioredis.from_url(url)]
    budgets = [UserSendBudget(), UserSendBudget()]
    syncs = [BudgetSync(b, c, prefix="test-budget:", interval=1.0) for b, c in zip(budgets, clients, strict=True)]
    try:
        assert budgets[0].take(42, limits, 0.0, 10) and budgets[1].take(42, limits, 0.0, 1)
        for sync in syncs:  # first round: each learns the total so far
            await sync.reconcile(0.0)
        assert budgets[0].take(42, limits, 0.0, 30)
        assert budgets[1].take(42, limits, 0.0, 5)
        await syncs[0].reconcile(0.0)
        await syncs[1].reconcile(0.0)
        # Each bucket is charged with what the other spent since the first round (0 learned 1's first SEND
        # now, and learns 1's 5 in the next round; 1 learned 0's 30).
        assert round(budgets[0].tokens(42)) == 100 - 10 - 30 - 1
        assert round(budgets[1].tokens(42)) == 100 - 1 - 5 - 30
        await syncs[0].reconcile(0.0)
        assert round(budgets[0].tokens(42)) == 100 - 10 - 30 - 1 - 5
        assert not budgets[1].take(42, limits, 0.0, 70)  # the other process's spending counts here
    finally:
        for client in clients:
            await client.aclose()
