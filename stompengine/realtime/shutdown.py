"""Graceful shutdown under daphne: every STOMP connection ends with ERROR ``code:shutdown`` and a close frame.

Daphne stops on SIGTERM by cancelling every application from a Twisted "before shutdown" trigger, but
that trigger raises (``KeyError: 'application_instance'``, daphne 4.2) as soon as any HTTP connection
that never reached the application is still listed, and then nothing is cancelled: sockets are dropped
(clients see 1006) and a database write in progress can hang the exit, because its after-commit
broadcast waits for an event loop that has stopped. This module adds our own trigger, registered at
import of the ASGI application (before daphne registers its own), which shuts the connections of this
process down itself and makes Twisted wait for that (bounded by ``STOMP_SHUTDOWN_GRACE``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from typing import Any

from stompengine import signals
from stompengine.conf import stomp_settings
from stompengine.realtime.tracking import ConnectionTracker

logger = logging.getLogger(__name__)
_installed = False


def install_daphne_shutdown_hook() -> None:
    """Register the shutdown trigger when running under Twisted (daphne, runserver); idempotent."""
    global _installed
    if _installed or "twisted.internet.reactor" not in sys.modules:
        return  # another ASGI server: it closes WebSockets itself (uvicorn sends 1012 and waits)
    from twisted.internet import reactor

    reactor.addSystemEventTrigger("before", "shutdown", _before_shutdown)  # type: ignore[arg-type]
    _installed = True


async def shutdown_connections(grace: float) -> int:
    """Shut down every live STOMP connection of this process concurrently; returns how many there were."""
    from stompengine.connection.subscriptions import background as _background
    from stompengine.realtime.tracking import tracker

    connections = list(tracker.connections.values())
    if connections:
        tasks = [asyncio.ensure_future(connection.shutdown(grace=grace)) for connection in connections]
        await asyncio.wait(tasks, timeout=grace + 1.0)
    # The unsubscribe hooks the closes started (presence "leave" in Redis) finish before the loop stops.
    hooks = [task for task in _background if not task.done()]
    if hooks:
        await asyncio.wait(hooks, timeout=grace)
    # The project's deferred work (presence leaves waiting out their debounce window) is done now.
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(grace):
            await signals.connections_closed.asend(sender=ConnectionTracker)
    return len(connections)


def _before_shutdown() -> Any:
    from twisted.internet import defer

    # Receivers mark the process as draining (readiness 503) while the listening socket stays open.
    signals.shutting_down.send(sender=ConnectionTracker)

    async def run() -> None:
        count = await shutdown_connections(stomp_settings().shutdown_grace)
        if count:
            logger.info("shutdown: closed %d STOMP connections with ERROR code:shutdown", count)
        signals.shut_down.send(sender=ConnectionTracker)

    try:
        return defer.Deferred.fromFuture(asyncio.ensure_future(run()))
    except RuntimeError:  # no event loop: nothing can be connected
        return None
