"""The write scheduler: every connection's output leaves from one task per loop turn, and a write that has
to wait (a client that does not read, flow control) never holds up the other connections' writes."""

from __future__ import annotations

import asyncio

from stompengine.broker import Broker
from stompengine.realtime.registry import DestinationRegistry
from tests.security.fakes import config, open_connection, wire


async def subscribed(broker: Broker, token: str):
    connection, transport = await open_connection(token=token, cfg=config(), broker=broker,
                                                  registry=DestinationRegistry())  # fmt: skip
    await connection.data_received(wire("SUBSCRIBE", id="1", destination="/topic/x", receipt="s"))
    await transport.wait_for(lambda: "RECEIPT" in transport.commands(), "subscribe receipt")
    return connection, transport


async def test_a_write_that_waits_does_not_hold_up_the_other_connections():
    broker = Broker()
    stuck_connection, stuck = await subscribed(broker, "user0-token")
    others = [await subscribed(broker, f"user{n}-token") for n in range(1, 4)]
    stuck.hold()  # this client stops reading: its write waits
    for n in range(3):
        broker.publish("/topic/x", f"m{n}")
        for _connection, transport in others:
            await transport.wait_for(lambda t=transport, n=n: t.commands().count("MESSAGE") == n + 1, f"m{n}")
    assert "MESSAGE" not in stuck.commands()
    stuck.release()
    await stuck.wait_for(lambda: stuck.commands().count("MESSAGE") == 3, "the held messages")
    assert [f.body for f in stuck.frames if f.command == "MESSAGE"] == [b"m0", b"m1", b"m2"]
    await stuck_connection.connection_lost()


async def test_losing_a_connection_whose_write_waits_stops_that_write_only():
    broker = Broker()
    gone, gone_transport = await subscribed(broker, "user0-token")
    _other, other = await subscribed(broker, "user1-token")
    gone_transport.hold()
    broker.publish("/topic/x", "first")
    await other.wait_for(lambda: "MESSAGE" in other.commands(), "first")
    await gone.connection_lost()
    await asyncio.sleep(0)
    broker.publish("/topic/x", "second")
    await other.wait_for(lambda: other.commands().count("MESSAGE") == 2, "second")
    assert "MESSAGE" not in gone_transport.commands()
