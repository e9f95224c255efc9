"""The per-process sampler: event-loop lag, resident memory and every connection's send-queue depth.

One task per event loop, started by the ASGI wrapper (``operations.asgi``) on the first request. Sampling
the queues every ``METRICS_SAMPLE_INTERVAL`` seconds keeps the delivery path free of any metric work.
"""

from __future__ import annotations

import asyncio
import logging
import os
import resource

from operations import metrics

logger = logging.getLogger(__name__)
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
_started: set[asyncio.AbstractEventLoop] = set()


def resident_bytes() -> int:
    """This process's resident set size (Linux /proc; elsewhere the peak, from getrusage)."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def sample_once() -> None:
    """Record RSS and the send-queue depth of every live STOMP connection of this process."""
    from stompengine.realtime.tracking import tracker

    metrics.RSS.set(resident_bytes())
    observe = metrics.SEND_QUEUE_DEPTH.observe
    for connection in list(tracker.connections.values()):
        observe(connection.queue_depth)


async def run(interval: float) -> None:
    """Sample forever; the lag is how much later than asked each sleep returned."""
    loop = asyncio.get_running_loop()
    while True:
        asked = loop.time() + interval
        await asyncio.sleep(interval)
        metrics.LOOP_LAG.observe(max(0.0, loop.time() - asked))
        try:
            sample_once()
        except Exception:
            logger.exception("metrics sampling failed")


def ensure_started(interval: float) -> None:
    """Start the sampler on the running loop once (nothing when metrics are off)."""
    if not metrics.ENABLED or interval <= 0:
        return
    loop = asyncio.get_running_loop()
    if loop in _started:
        return
    _started.add(loop)
    task = loop.create_task(run(interval))
    task.add_done_callback(lambda _task: _started.discard(loop))
    sample_once()
