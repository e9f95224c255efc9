"""A connection's way out: the bounded outbound queue, coalesced writes, and the unsent-bytes bound.

Frames are queued on ``Outbound``; one write per loop iteration joins what was queued meanwhile (up to
``coalesce_bytes``), which is what keeps fan-out cheap. The writes of every connection of an event loop
that has output in an iteration are done by one task (``WriteScheduler``): a fan-out queues frames on
hundreds of connections at once, and a task per connection and write was a large part of its cost.
Transport writes rarely wait (daphne's ``send`` never does, uvicorn's only under flow control); when
one does, the scheduler leaves that connection to the task that is waiting and starts another task
for everyone else, so one client that does not read never delays the others.

The bound: frames queued (``send_queue_limit``) and bytes not yet written to the socket
(``max_unsent_bytes``: the queue plus the transport's own backlog, when it has ``pending_bytes()``).
Past either, the backlog is dropped and the owner is told (``on_slow``: ERROR slow consumer, close).
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections import deque
from collections.abc import Callable
from typing import Protocol

logger = logging.getLogger(__name__)


class Transport(Protocol):
    """What a StompConnection writes to. Text-only transports (SockJS) decode the bytes as UTF-8.

    A transport that also has ``pending_bytes()`` (``BufferedTransport``) gets its backlog bounded end to end.
    """

    async def send(self, data: bytes) -> None:
        """Write bytes (one or more whole STOMP frames, or a heart-beat EOL) to the peer."""

    async def close(self, code: int) -> None:
        """Close the transport; called once, after everything queued was sent."""


class BufferedTransport(Transport, Protocol):
    """A transport that can tell how much it holds: ``StompConnection`` then bounds its bytes end to end.

    Optional (looked up with ``getattr``): after every write the connection adds ``pending_bytes()`` to the
    bytes in its own queue and ends a client past ``STOMP_MAX_UNSENT_BYTES`` with ERROR slow consumer; a
    replay counts as in flight until the transport has written its last byte (README "Security").
    """

    def pending_bytes(self) -> int:
        """Bytes accepted by ``send`` and not yet written to the socket; cheap, synchronous, never raises."""
        ...


class Outbound:
    """The frames of one connection on their way to its transport, bounded in count and in bytes."""

    __slots__ = (
        "_close_code", "_done", "_pending_bytes", "_scheduled", "_scheduler", "_transport", "_writer",
        "closing", "coalesce_bytes", "handed_bytes", "max_unsent_bytes", "on_slow", "on_written", "queue",
        "queued_bytes", "send_queue_limit", "session_id", "transport_closed", "transport_pending",
    )  # fmt: skip

    def __init__(
        self,
        transport: Transport,
        scheduler: WriteScheduler,
        *,
        send_queue_limit: int,
        max_unsent_bytes: int,
        coalesce_bytes: int,
        session_id: str = "",
    ) -> None:
        self._transport = transport
        self._scheduler = scheduler
        self.send_queue_limit = send_queue_limit
        self.max_unsent_bytes = max_unsent_bytes
        self.coalesce_bytes = coalesce_bytes
        self.session_id = session_id
        self.queue: list[bytes] = []  # a list: an empty deque costs ~600 bytes per idle connection
        # In bytes: in ``queue``; handed to the transport ever; the transport's own backlog as last read.
        self.queued_bytes = 0
        self.handed_bytes = 0
        self.transport_pending = 0
        self._pending_bytes: Callable[[], int] | None = getattr(transport, "pending_bytes", None)
        self.closing = False  # no more frames accepted for sending; close after the queue drains
        self.transport_closed = False
        self._close_code = 1000
        self._writer: asyncio.Task[None] | None = None  # the task writing now (the scheduler's, or our own)
        self._scheduled = False
        self._done: asyncio.Future[None] | None = None  # made only when someone waits for the close
        #: Told (with a reason) when the client does not read: the queue was dropped already.
        self.on_slow: Callable[[str], None] = _ignore
        #: Called after every write (the heart-beat clock counts it as sent data).
        self.on_written: Callable[[], None] | None = None

    # -- queueing ----------------------------------------------------------------------------------------
    def put_reply(self, data: bytes) -> None:
        """Queue protocol output (RECEIPT, ERROR, CONNECTED): never refused by the bound, but counted."""
        self.queue.append(data)
        self.queued_bytes += len(data)
        if not self.closing:  # closing: whoever closes (``close``) starts the last write
            self._ensure_writer()

    def put(self, data: bytes) -> None:
        """Queue a MESSAGE; a client past the bound is a slow consumer (``on_slow``) and the frame is dropped."""
        if len(self.queue) >= self.send_queue_limit:
            self.slow(f"more than {self.send_queue_limit} frames were waiting to be sent")
            return
        size = len(data)
        if self._over_bound(size):
            self.slow(f"more than {self.max_unsent_bytes} bytes were waiting to be sent")
            return
        self.queue.append(data)
        self.queued_bytes += size
        self._ensure_writer()

    def put_heartbeat(self) -> None:
        """An EOL, unless something else is about to be written anyway."""
        if not self.queue:
            self.queue.append(b"\n")
            self.queued_bytes += 1
            self._ensure_writer()

    def drop(self) -> None:
        """Forget everything queued (a slow consumer's backlog, a lost connection's)."""
        self.queue.clear()
        self.queued_bytes = 0

    def unsent_bytes(self) -> int:
        """Bytes queued here plus those the transport holds: re-reads the transport's figure."""
        if self._pending_bytes is not None:
            self.transport_pending = self._pending_bytes()
        return self.queued_bytes + self.transport_pending

    def _over_bound(self, size: int) -> bool:
        """Would ``size`` more bytes pass ``max_unsent_bytes``?"""
        limit = self.max_unsent_bytes
        if not limit or self.queued_bytes + self.transport_pending + size <= limit:
            return False
        return self.unsent_bytes() + size > limit  # the transport's figure is from the last write: re-read it

    def slow(self, detail: str) -> None:
        """The client does not read what it is sent: drop the backlog, tell the owner (ERROR, close)."""
        logger.warning("STOMP session %s: %s (%d frames, %d bytes in the transport), closing as a slow consumer",
                       self.session_id, detail, len(self.queue), self.transport_pending)  # fmt: skip
        self.drop()  # they would arrive hopelessly late; free the memory now
        self.on_slow(detail)

    # -- closing -----------------------------------------------------------------------------------------
    def close(self, code: int) -> None:
        """Write what is queued, then close the transport with ``code`` (once)."""
        self.closing = True
        self._close_code = code
        self._ensure_writer()

    def lost(self) -> None:
        """The peer is gone: drop the queue, stop a write that is waiting for it."""
        self.transport_closed = True
        self.closing = True
        self.drop()
        writer = self._writer
        if writer is not None and writer is not asyncio.current_task():
            self._scheduler.release(writer)  # others' writes go on in another task
            writer.cancel()
        self._finished()

    def closed(self) -> asyncio.Future[None]:
        """A future done once the transport was closed or lost (for ``asyncio.wait`` with a timeout)."""
        if self._done is None:
            self._done = asyncio.get_running_loop().create_future()
            if self.transport_closed:
                self._done.set_result(None)
        return self._done

    def _finished(self) -> None:
        if self._done is not None and not self._done.done():
            self._done.set_result(None)

    # -- writing -----------------------------------------------------------------------------------------
    def _ensure_writer(self) -> None:
        if self._writer is not None or self._scheduled or self.transport_closed:
            return
        if self.closing:
            # A task of its own, so that a shutdown can wait for the last frames and the close to be written.
            self._writer = asyncio.get_running_loop().create_task(self.write())
        else:
            self._scheduled = True
            self._scheduler.add(self)

    def _next_write(self) -> bytes:
        """The queued frames to write next, joined up to ``coalesce_bytes`` (always at least one)."""
        queue = self.queue
        limit = self.coalesce_bytes
        size = count = 0
        for data in queue:
            if count and size + len(data) > limit:
                break
            size += len(data)
            count += 1
        self.queued_bytes -= size
        self.handed_bytes += size
        if count == len(queue):
            self.queue = []
            return queue[0] if count == 1 else b"".join(queue)
        parts = queue[:count]
        del queue[:count]
        return parts[0] if count == 1 else b"".join(parts)

    async def write(self) -> None:
        """Write everything queued (then close, when closing); runs in the scheduler's task or its own."""
        self._scheduled = False
        if self._writer is None:
            self._writer = asyncio.current_task()
        elif self._writer is not asyncio.current_task():
            return  # a write of ours is waiting in another task: it writes what was queued meanwhile
        transport = self._transport
        try:
            while self.queue and not self.transport_closed:
                await transport.send(self._next_write())
                if self.on_written is not None:
                    self.on_written()
                limit = self.max_unsent_bytes
                if limit and self._pending_bytes is not None and self.unsent_bytes() > limit and not self.closing:
                    # daphne accepts every write at once: the backlog grows in its buffer, not in our queue.
                    self.slow(f"more than {limit} bytes were waiting to be sent")
            if self.closing and not self.transport_closed:
                self.transport_closed = True
                await transport.close(self._close_code)
                self._finished()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            logger.debug("STOMP session %s: transport write failed: %s", self.session_id, exc)
            self.transport_closed = True
            self.closing = True
            self.drop()
            self._finished()
        finally:
            self._writer = None


def _ignore(_detail: str) -> None:
    return None


class WriteScheduler:
    """Writes the output of every connection of one event loop from one task per loop iteration.

    ``add`` is called when a connection's queue gets its first frame; the task is started on the first
    ``add`` of an iteration and writes each added connection's queue in turn. A write that has to wait
    (flow control) keeps its task: a watcher, run when that task yields, hands the connections still
    waiting to a new task.
    """

    __slots__ = ("_flusher", "_loop", "_pending", "_watching", "_writing")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._pending: deque[Outbound] = deque()
        self._flusher: asyncio.Task[None] | None = None  # the task taking connections from _pending
        self._writing: asyncio.Task[None] | None = None  # a flusher inside a transport write
        self._watching = False

    def add(self, outbound: Outbound) -> None:
        """Write this connection's queue in this iteration's flush."""
        self._pending.append(outbound)
        if self._flusher is None or self._writing is self._flusher:  # none, or it waits inside a write
            self._writing = None
            self._start()

    def release(self, task: asyncio.Task[None]) -> None:
        """``task`` is to be cancelled (its connection is gone): let another task write for the others."""
        if self._writing is task:
            self._writing = None
        if self._flusher is task:
            self._flusher = None
            if self._pending:
                self._start()

    def _start(self) -> None:
        # An empty context: the task writes for every connection, not for the one whose frame started it
        # (log records and traces would otherwise name that one).
        self._flusher = self._loop.create_task(self._flush(), context=contextvars.Context())

    def _watch(self) -> None:
        """Runs when the flusher yields: if it waits inside a write, the others get a task of their own."""
        self._watching = False
        flusher = self._flusher
        if flusher is not None and self._writing is flusher and self._pending:
            self._writing = None
            self._start()

    async def _flush(self) -> None:
        me = asyncio.current_task()
        pending = self._pending
        try:
            while pending and self._flusher is me:
                if not self._watching:
                    self._watching = True
                    self._loop.call_soon(self._watch)
                outbound = pending.popleft()
                self._writing = me
                try:
                    await outbound.write()
                except asyncio.CancelledError:
                    raise
                except Exception:
                    logger.exception("STOMP session %s: writer failed", outbound.session_id)
                if self._writing is me:
                    self._writing = None
        finally:
            if self._flusher is me:
                self._flusher = None
