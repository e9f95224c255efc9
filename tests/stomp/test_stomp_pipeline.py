"""Pipelined SENDs: a handler that returns a ``Completion`` lets the connection read its next frames while
the work runs; RECEIPTs and refusals still go out in frame order, and whatever needs the work finished
(another kind of frame, DISCONNECT, shutdown) waits for all of it. Over a fake transport, no server."""

from __future__ import annotations

import asyncio

import pytest

from stompengine.broker import Broker
from stompengine.realtime.registry import Completion, DestinationRegistry, Rejected
from tests.stomp.fakes import wire
from tests.stomp.test_stomp_connection import config, open_connection


@pytest.fixture
def registry():
    return DestinationRegistry()


@pytest.fixture
def broker():
    return Broker()


def pipelined_handler(registry):
    """``/app/w`` returns a Completion on a future the test settles; returns {body: future}."""
    futures: dict[bytes, asyncio.Future] = {}

    @registry.app("/app/w")
    async def write(ctx):
        futures[ctx.body] = asyncio.get_running_loop().create_future()
        return Completion(futures[ctx.body])

    return futures


def answers(transport) -> list[str]:
    out = []
    for frame in transport.frames:
        if frame.command == "RECEIPT":
            out.append(frame.get("receipt-id"))
        elif frame.command == "MESSAGE" and frame.get("destination") == "/user/queue/errors":
            out.append("refused " + frame.body.decode())
        elif frame.command == "ERROR":
            out.append("ERROR " + (frame.get("code") or frame.get("message")))
    return out


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_sends_are_read_ahead_and_answered_in_frame_order(broker, registry):
    futures = pipelined_handler(registry)
    connection, transport = await open_connection(broker, registry)
    await connection.data_received(wire("SUBSCRIBE", id="e", destination="/user/queue/errors"))
    await connection.data_received(b"".join(wire("SEND", b"%d" % i, destination="/app/w", receipt=f"r{i}")
                                            for i in (1, 2, 3)))  # fmt: skip
    assert list(futures) == [b"1", b"2", b"3"]  # all three handled while none of them is finished
    futures[b"3"].set_result(None)
    futures[b"2"].set_result(None)
    await settle()
    assert answers(transport) == []  # r1 is still being written: nothing may overtake it
    futures[b"1"].set_exception(Rejected("no such room", code="not-found"))
    await transport.wait_for(lambda: len(answers(transport)) == 3, "three answers")
    assert answers(transport)[1:] == ["r2", "r3"]
    assert answers(transport)[0].startswith("refused ") and '"receipt":"r1"' in answers(transport)[0]
    assert transport.closed is None  # a refusal keeps the connection


async def test_other_frames_and_disconnect_wait_for_outstanding_sends(broker, registry):
    futures = pipelined_handler(registry)
    connection, transport = await open_connection(broker, registry)
    processing = asyncio.ensure_future(connection.data_received(
        wire("SEND", b"1", destination="/app/w", receipt="r1")
        + wire("SUBSCRIBE", id="s", destination="/topic/x", receipt="sub")
        + wire("SEND", b"2", destination="/app/w", receipt="r2")
        + wire("DISCONNECT", receipt="bye")
    ))  # fmt: skip
    await settle()
    assert list(futures) == [b"1"] and answers(transport) == []  # SUBSCRIBE waits for the write before it
    futures[b"1"].set_result(None)
    await transport.wait_for(lambda: b"2" in futures, "the second SEND handled")
    assert answers(transport) == ["r1", "sub"]
    futures[b"2"].set_result(None)
    await asyncio.wait_for(processing, 5)
    await transport.wait_for(lambda: transport.closed is not None, "close")
    assert answers(transport) == ["r1", "sub", "r2", "bye"]


async def test_shutdown_answers_every_outstanding_send_before_its_error(broker, registry):
    futures = pipelined_handler(registry)
    connection, transport = await open_connection(broker, registry)
    await connection.data_received(wire("SEND", b"1", destination="/app/w", receipt="r1")
                                   + wire("SEND", b"2", destination="/app/w", receipt="r2"))  # fmt: skip
    stopping = asyncio.ensure_future(connection.shutdown(grace=5))
    await settle()
    assert answers(transport) == []
    futures[b"2"].set_result(None)
    futures[b"1"].set_result(None)
    await asyncio.wait_for(stopping, 5)
    await transport.wait_for(lambda: transport.closed is not None, "close")
    assert answers(transport) == ["r1", "r2", "ERROR shutdown"]


async def test_outstanding_sends_per_connection_are_bounded(broker, registry):
    futures = pipelined_handler(registry)
    connection, transport = await open_connection(broker, registry, cfg=config(send_pipeline=2))
    processing = asyncio.ensure_future(connection.data_received(
        b"".join(wire("SEND", b"%d" % i, destination="/app/w", receipt=f"r{i}") for i in (1, 2, 3, 4))
    ))  # fmt: skip
    await settle()
    assert list(futures) == [b"1", b"2"]  # the third waits until fewer than 2 are outstanding
    futures[b"1"].set_result(None)
    await transport.wait_for(lambda: b"3" in futures, "the third SEND handled")
    assert list(futures) == [b"1", b"2", b"3"]
    for key in (b"2", b"3"):
        futures[key].set_result(None)
    await transport.wait_for(lambda: b"4" in futures, "the fourth SEND handled")
    futures[b"4"].set_result(None)
    await asyncio.wait_for(processing, 5)
    await transport.wait_for(lambda: len(answers(transport)) == 4, "four receipts")
    assert answers(transport) == ["r1", "r2", "r3", "r4"]


async def test_a_receipt_answered_before_its_broadcast_shares_the_broadcasts_socket_write(broker, registry):
    # As the chat writer does after a commit: the SEND's future first, then the broadcast, in one step. The
    # client still reads the MESSAGE before the RECEIPT, and both arrive in one write, not two.
    futures = pipelined_handler(registry)
    connection, transport = await open_connection(broker, registry)
    await connection.data_received(wire("SUBSCRIBE", id="s", destination="/topic/x", receipt="sub"))
    await transport.wait_for(lambda: "RECEIPT" in transport.commands(), "the SUBSCRIBE's RECEIPT")
    await connection.data_received(wire("SEND", b"1", destination="/app/w", receipt="r1"))
    writes = len(transport.writes)
    futures[b"1"].set_result(None)
    broker.publish("/topic/x", "stored")
    await transport.wait_for(lambda: transport.commands()[-1:] == ["RECEIPT"], "the SEND's RECEIPT")
    assert transport.commands()[-2:] == ["MESSAGE", "RECEIPT"]
    assert len(transport.writes) == writes + 1
