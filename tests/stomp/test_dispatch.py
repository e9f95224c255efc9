"""The one ``dispatch`` override (stompengine.dispatch) and the upstream Channels behaviour it relies on.

If a Channels upgrade changes what these tests pin (every message reaches ``dispatch``, the base class hops
to a thread per message to close old database connections, ``database_sync_to_async`` does that itself,
the handler names), the override must be looked at again: these tests fail first.
"""

from __future__ import annotations

import asyncio
import inspect
from typing import Any

import pytest
from channels import consumer as channels_consumer
from channels import db as channels_db
from channels.consumer import AsyncConsumer, get_handler_name
from channels.exceptions import StopConsumer
from channels.generic.http import AsyncHttpConsumer
from channels.generic.websocket import AsyncWebsocketConsumer

from notifications.stream import NotificationStreamConsumer
from sockjs import consumers as sockjs_consumers
from stompengine.consumers import StompWebSocketConsumer
from stompengine.dispatch import DirectDispatchMixin

NO_LAYER = "__test_dispatch_has_no_channel_layer__"


class Recorder(AsyncConsumer):
    """Upstream's receive loop and dispatch, with handlers that record what they were given."""

    channel_layer_alias = NO_LAYER

    def __init__(self) -> None:
        self.seen: list[str] = []
        self.dispatched: list[str] = []

    async def dispatch(self, message: dict[str, Any]) -> None:
        self.dispatched.append(message["type"])
        await super().dispatch(message)

    async def test_ping(self, message: dict[str, Any]) -> None:
        self.seen.append(message["type"])

    async def test_stop(self, message: dict[str, Any]) -> None:
        raise StopConsumer


class Direct(DirectDispatchMixin, Recorder):
    pass


async def run(consumer: AsyncConsumer, *types: str) -> None:
    queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    for kind in types:
        queue.put_nowait({"type": kind})

    async def send(message: dict[str, Any]) -> None:
        raise AssertionError("nothing is sent")

    async with asyncio.timeout(5):
        await consumer({"type": "test"}, queue.get, send)


async def test_upstream_receive_loop_passes_every_message_through_dispatch(monkeypatch):
    async def no_database() -> None:  # the hop itself is pinned below; this test needs no database
        return None

    monkeypatch.setattr(channels_consumer, "aclose_old_connections", no_database)
    recorder = Recorder()
    await run(recorder, "test.ping", "test.ping", "test.stop")
    assert recorder.dispatched == ["test.ping", "test.ping", "test.stop"]
    assert recorder.seen == ["test.ping", "test.ping"]


async def test_upstream_dispatch_hops_to_a_thread_per_message_to_close_old_connections(monkeypatch):
    order: list[str] = []

    async def hop() -> None:
        order.append("aclose_old_connections")

    monkeypatch.setattr(channels_consumer, "aclose_old_connections", hop)
    recorder = Recorder()
    recorder.test_ping = lambda message: _record(order, message)  # type: ignore[method-assign]
    await AsyncConsumer.dispatch(recorder, {"type": "test.ping"})
    # What the override skips: if upstream stops doing this, the override can go.
    assert order == ["aclose_old_connections", "test.ping"]


async def _record(order: list[str], message: dict[str, Any]) -> None:
    order.append(message["type"])


def test_database_sync_to_async_closes_old_connections_itself(monkeypatch):
    calls: list[str] = []
    monkeypatch.setattr(channels_db, "close_old_connections", lambda: calls.append("close"))

    def work() -> str:
        calls.append("work")
        return "done"

    assert asyncio.run(channels_db.database_sync_to_async(work)()) == "done"
    assert calls == ["close", "work", "close"]


def test_upstream_handler_names():
    assert get_handler_name({"type": "websocket.receive"}) == "websocket_receive"
    assert get_handler_name({"type": "http.request"}) == "http_request"
    with pytest.raises(ValueError, match="leading underscore"):
        get_handler_name({"type": "._private"})
    with pytest.raises(ValueError, match="no 'type'"):
        get_handler_name({})
    for name in ("websocket_connect", "websocket_receive", "websocket_disconnect"):
        assert inspect.iscoroutinefunction(getattr(AsyncWebsocketConsumer, name))
    for name in ("http_request", "http_disconnect"):
        assert inspect.iscoroutinefunction(getattr(AsyncHttpConsumer, name))


async def test_the_override_calls_the_handler_with_no_thread_hop(monkeypatch):
    async def forbidden() -> None:
        raise AssertionError("the override must not hop to a thread")

    monkeypatch.setattr(channels_consumer, "aclose_old_connections", forbidden)
    direct = Direct()
    await run(direct, "test.ping", "test.stop")
    assert direct.seen == ["test.ping"]


async def test_the_override_refuses_an_unknown_type():
    with pytest.raises(ValueError, match=r"no handler for message type 'test\.unknown'"):
        await DirectDispatchMixin.dispatch(Direct(), {"type": "test.unknown"})


@pytest.mark.parametrize(
    "consumer",
    [
        StompWebSocketConsumer,
        sockjs_consumers._HttpConsumer,
        sockjs_consumers._WebsocketConsumer,
        NotificationStreamConsumer,
    ],
)
def test_every_consumer_that_skips_the_hop_uses_the_one_override(consumer):
    assert consumer.dispatch is DirectDispatchMixin.dispatch
    mro = consumer.__mro__
    assert mro.index(DirectDispatchMixin) < mro.index(AsyncConsumer)


def test_no_other_dispatch_override_in_the_engine_sockjs_or_notifications():
    from pathlib import Path

    import notifications
    import sockjs
    import stompengine

    roots = [Path(package.__file__).parent for package in (stompengine, sockjs, notifications)]
    found = sorted(
        str(path.relative_to(root.parent))
        for root in roots
        for path in root.rglob("*.py")
        if "def dispatch(" in path.read_text()
    )
    assert found == ["stompengine/dispatch.py"]
