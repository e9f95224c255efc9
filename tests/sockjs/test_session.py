"""Session behaviour without a server: queueing, the one-receiver rule, heartbeats, close and reaping."""

from __future__ import annotations

import asyncio

import pytest

from sockjs import protocol
from sockjs.session import Attach, Session, SessionRegistry, State

FOREVER = 3600.0


class Recorder:
    """A handler that records calls and echoes messages back."""

    def __init__(self, session: Session, *, close_on_open: bool = False, fail_on: str | None = None) -> None:
        self.session = session
        self.events: list[str] = []
        self.close_on_open = close_on_open
        self.fail_on = fail_on

    async def on_open(self) -> None:
        self.events.append("open")
        if self.close_on_open:
            await self.session.close()

    async def on_message(self, text: str) -> None:
        self.events.append(f"message:{text}")
        if text == self.fail_on:
            raise RuntimeError("handler bug")
        await self.session.send(text)

    async def on_close(self) -> None:
        self.events.append("close")


def make(
    registry: SessionRegistry | None = None, *, queue_limit: int = 100, delay: float | None = FOREVER, **handler_kw
):
    kwargs = dict(
        transport="xhr-polling",
        scope={"type": "http"},
        handler_factory=lambda s: Recorder(s, **handler_kw),
        queue_limit=queue_limit,
        disconnect_delay=delay,
    )
    if registry is not None:
        return registry.create("sid", **kwargs)
    return Session(**kwargs)


async def settle() -> None:
    # Let handler tasks run; bounded, no timing assumptions beyond "tasks get scheduled".
    for _ in range(10):
        await asyncio.sleep(0)


async def test_first_frame_is_open_then_queued_messages_in_one_batch():
    session = make()
    receiver = object()
    assert session.attach(receiver) is Attach.ATTACHED
    assert await session.next_frame(FOREVER) == "o"
    await session.deliver(["a", "b"])
    assert await session.next_frame(FOREVER) == 'a["a","b"]'
    assert session.handler.events == ["open", "message:a", "message:b"]


async def test_heartbeat_when_nothing_happens():
    session = make()
    session.attach(object())
    assert await session.next_frame(FOREVER) == "o"
    assert await session.next_frame(0.01) == "h"


async def test_second_receiver_is_refused_while_the_first_is_attached():
    session = make()
    first, second = object(), object()
    assert session.attach(first) is Attach.ATTACHED
    assert session.attach(second) is Attach.REFUSED
    session.detach(first, aborted=False)
    assert session.attach(second) is Attach.ATTACHED


async def test_open_frame_comes_first_even_if_on_open_closes_at_once():
    session = make(close_on_open=True)
    session.attach(object())
    await settle()
    assert session.state is State.CLOSING
    assert await session.next_frame(FOREVER) == "o"
    assert await session.next_frame(FOREVER) == 'c[3000,"Go away!"]'


async def test_server_close_is_answered_to_every_later_receiver_until_reaped():
    registry = SessionRegistry()
    session = make(registry, close_on_open=True)
    first = object()
    session.attach(first)
    assert await session.next_frame(FOREVER) == "o"
    session.detach(first, aborted=False)
    await settle()
    for _ in range(2):
        receiver = object()
        assert session.attach(receiver) is Attach.ATTACHED
        assert await session.next_frame(FOREVER) == 'c[3000,"Go away!"]'
        session.detach(receiver, aborted=False)
    assert registry.get("sid") is session
    assert session.handler.events == ["open", "close"]


async def test_queued_messages_are_flushed_before_the_close_frame():
    session = make()
    session.attach(object())
    assert await session.next_frame(FOREVER) == "o"
    await session.send("last")
    await session.close(3001, "bye")
    assert await session.next_frame(FOREVER) == 'a["last"]'
    assert await session.next_frame(FOREVER) == 'c[3001,"bye"]'
    assert await session.send("too late") is False


async def test_abandoned_session_is_reaped_after_the_disconnect_delay():
    registry = SessionRegistry()
    session = make(registry, delay=0.01)
    receiver = object()
    session.attach(receiver)
    await session.next_frame(FOREVER)
    session.detach(receiver, aborted=False)
    assert registry.get("sid") is session
    for _ in range(200):  # bounded wait for the timer
        if session.is_closed:
            break
        await asyncio.sleep(0.01)
    assert session.is_closed
    assert registry.get("sid") is None
    await settle()
    assert session.handler.events[-1] == "close"


async def test_attaching_again_cancels_the_reaper():
    registry = SessionRegistry()
    session = make(registry, delay=0.01)
    first = object()
    session.attach(first)
    await session.next_frame(FOREVER)
    session.detach(first, aborted=False)
    second = object()
    session.attach(second)
    await asyncio.sleep(0.05)
    assert not session.is_closed


async def test_aborted_receiver_ends_the_session_at_once():
    registry = SessionRegistry()
    session = make(registry)
    receiver = object()
    session.attach(receiver)
    await session.next_frame(FOREVER)
    session.detach(receiver, aborted=True)
    assert session.is_closed
    assert registry.get("sid") is None
    await settle()
    assert session.handler.events == ["open", "close"]


async def test_slow_consumer_is_closed_when_the_queue_overflows():
    session = make(queue_limit=3)
    session.attach(object())
    await session.next_frame(FOREVER)
    assert await session.send_many(["1", "2", "3"]) is True
    assert await session.send("4") is False
    assert session.state is State.CLOSING
    assert session.queued == 0
    assert await session.next_frame(FOREVER) == protocol.close_frame(*protocol.SLOW_CONSUMER)


async def test_handler_failure_closes_the_session_with_internal_error():
    session = make(fail_on="boom")
    session.attach(object())
    await session.next_frame(FOREVER)
    await session.deliver(["boom", "ignored"])
    assert session.handler.events == ["open", "message:boom"]
    assert await session.next_frame(FOREVER) == 'c[1011,"Internal error"]'
    await settle()
    assert session.handler.events[-1] == "close"


async def test_on_close_runs_once_whatever_closes_the_session():
    registry = SessionRegistry()
    session = make(registry)
    receiver = object()
    session.attach(receiver)
    await session.next_frame(FOREVER)
    await session.close()
    session.detach(receiver, aborted=True)
    session.interrupt()
    await settle()
    assert session.handler.events.count("close") == 1


async def test_messages_wait_for_on_open_to_finish():
    order: list[str] = []
    gate = asyncio.Event()

    class SlowOpen:
        def __init__(self, session):
            pass

        async def on_open(self):
            await gate.wait()
            order.append("open")

        async def on_message(self, text):
            order.append(text)

        async def on_close(self):
            order.append("close")

    session = Session(transport="websocket", scope={}, handler_factory=SlowOpen, queue_limit=10, disconnect_delay=None)
    delivery = asyncio.ensure_future(session.deliver(["m"]))
    await settle()
    assert order == []
    gate.set()
    await delivery
    assert order == ["open", "m"]


@pytest.mark.parametrize("aborted", [True, False])
async def test_websocket_sessions_without_delay_end_when_detached(aborted):
    session = make(delay=None)
    receiver = object()
    session.attach(receiver)
    session.detach(receiver, aborted=aborted)
    assert session.is_closed
