"""The engine tells the project about connections and shutdown through signals, never by importing it."""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace

from stompengine import signals
from stompengine.realtime import shutdown
from stompengine.realtime.tracking import ConnectionTracker, tracker


async def test_an_added_connection_is_announced_with_connection_opened():
    seen = []

    def receiver(sender, connection, **kwargs):
        seen.append((sender, connection.session_id))

    signals.connection_opened.connect(receiver)
    tracker = ConnectionTracker()
    connection = SimpleNamespace(session_id="s1", _transport=None)
    try:
        tracker.add(connection)
    finally:
        signals.connection_opened.disconnect(receiver)
        tracker.discard(connection)
    assert seen == [(ConnectionTracker, "s1")]


async def test_connections_closed_awaits_async_receivers():
    flushed = asyncio.Event()

    async def flush(sender, **kwargs):
        await asyncio.sleep(0.01)
        flushed.set()

    signals.connections_closed.connect(flush)
    try:
        # Connections earlier tests of this process left in the tracker are shut down too.
        left = len(tracker.connections)
        assert await shutdown.shutdown_connections(grace=1.0) == left
    finally:
        signals.connections_closed.disconnect(flush)
    assert flushed.is_set()


async def test_a_slow_receiver_is_cut_off_at_the_grace():
    async def stuck(sender, **kwargs):
        await asyncio.sleep(30)

    signals.connections_closed.connect(stuck)
    started = time.monotonic()
    try:
        await shutdown.shutdown_connections(grace=0.2)
    finally:
        signals.connections_closed.disconnect(stuck)
    assert time.monotonic() - started < 5
