"""The per-process (per event loop) chat writer: a bounded queue, a collection window, one commit at a time.

Callers ``await writer.submit(unit)`` with the validated messages of one SEND (or of one whole STOMP
transaction), or take the batch's own future from ``submit_nowait`` (a STOMP SEND's ``Completion``). The
writer's task waits until the oldest waiting unit is ``window`` seconds old or
``batch_max`` messages wait, whichever comes first, stores up to ``batch_max`` messages in ONE
transaction in its worker thread, publishes what committed (``publish``, on the event loop), and each
caller resumes only after that publish. While the loop publishes a batch, the thread already stores the
next. Past ``queue_limit`` waiting messages a submit is refused at once (``WriterBusy``): never a wait
without end. A database failure fails every unit of the batch
(``WriteFailed``) and nothing of it is stored; the next batch starts afresh.

The worker thread is one per process, shared by every loop's writer: it is the process's one database
writer for chat messages (SQLite keeps a single writer; on PostgreSQL one thread keeps one connection).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from chat.exceptions import ChatError
from chat.writer.events import Write, WriteEvent, WriteFailed, WriterBusy
from chat.writer.store import UnitResult, messages_store
from operations import metrics

logger = logging.getLogger(__name__)

Store = Callable[[Sequence[Sequence[Write]]], list[UnitResult]]
#: Stores a batch elsewhere and answers on the loop (chat/writer/process.py's ``ProcessStore.submit``).
RemoteStore = Callable[[Sequence[Sequence[Write]]], "asyncio.Future[list[UnitResult]]"]
Publish = Callable[[Sequence[WriteEvent]], None]


Refuse = Callable[[ChatError], BaseException]


@dataclass
class _Pending:
    unit: tuple[Write, ...]
    future: asyncio.Future[tuple[WriteEvent, ...]]
    arrived: float
    #: What the future raises for a ``ChatError`` of this unit (``submit_nowait``'s ``refuse``).
    refuse: Refuse | None = None
    size: int = field(init=False)

    def __post_init__(self) -> None:
        self.size = len(self.unit)

    def fail(self, error: ChatError) -> None:
        """Answer with ``error`` (as ``refuse`` turns it), unless answered already."""
        if not self.future.done():
            self.future.set_exception(error if self.refuse is None else self.refuse(error))


def _default_store(units: Sequence[Sequence[Write]]) -> list[UnitResult]:
    """Run one batch in the writer thread, on a database connection kept open between batches.

    Whatever ``CONN_MAX_AGE`` says: the one writer thread reconnecting per batch would pay a handshake on
    PostgreSQL, and on SQLite closing the last connection checkpoints the WAL (tens of ms). A connection
    that failed is still dropped (``close_old_connections``), so the next batch starts on a fresh one.
    """
    from django.db import close_old_connections, connection

    close_old_connections()
    try:
        return messages_store(units=units)
    finally:
        if connection.connection is not None:
            connection.close_at = None  # never obsolete by age
        close_old_connections()


def _default_publish(events: Sequence[WriteEvent]) -> None:
    from chat.publishing import write_events_publish

    write_events_publish(events)


class ChatWriter:
    """Group commit for chat messages on one event loop (see the module docstring)."""

    def __init__(
        self,
        *,
        window: float,
        batch_max: int,
        queue_limit: int,
        store: Store = _default_store,
        publish: Publish = _default_publish,
        executor: ThreadPoolExecutor | None = None,
        remote: RemoteStore | None = None,
    ) -> None:
        self.window = window
        self.batch_max = max(1, batch_max)
        self.queue_limit = max(1, queue_limit)
        self._store = store
        self._publish = publish
        self._executor = executor
        self._remote = remote
        self._queue: deque[_Pending] = deque()
        self._waiting = 0  # messages in the queue
        self._wakeup: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self.batches = 0  # batches stored (operations, tests)

    @classmethod
    def from_settings(cls) -> ChatWriter:
        from django.conf import settings

        remote = None
        if settings.CHAT_WRITER_PROCESS:
            from chat.writer.process import ProcessStore

            process = ProcessStore()
            with contextlib.suppress(RuntimeError):  # no running loop here: the first batch starts it
                process.start()  # Django's start-up in the child overlaps what comes before the first batch
            remote = process.submit
        return cls(
            remote=remote,
            store=metrics.timed_store(_default_store),
            window=settings.CHAT_WRITE_WINDOW_MS / 1000,
            batch_max=settings.CHAT_WRITE_BATCH_MAX,
            queue_limit=settings.CHAT_WRITE_QUEUE_LIMIT,
        )

    @property
    def waiting(self) -> int:
        """Messages queued and not yet in a batch."""
        return self._waiting

    async def submit(self, unit: Sequence[Write]) -> tuple[WriteEvent, ...]:
        """Store ``unit`` (all or none) in the next batch; returns its events once committed and published.

        Raises ``WriterBusy`` at once when the queue is full, the unit's own ``ChatError`` when it was
        refused, ``WriteFailed`` when the database failed the batch.
        """
        unit = tuple(unit)
        if not unit:
            return ()
        # The batch runs on whether or not this caller is still waiting (a connection may drop meanwhile).
        return await asyncio.shield(self.submit_nowait(unit))

    def submit_nowait(
        self, unit: Sequence[Write], *, refuse: Refuse | None = None
    ) -> asyncio.Future[tuple[WriteEvent, ...]]:
        """Queue ``unit`` (not empty) for the next batch; returns the future ``submit`` awaits, answered alike.

        For a caller that finishes from a done callback (a STOMP SEND's ``Completion``): no task and no
        shield per SEND. Never cancel the future (the batch would still store the unit). ``refuse`` turns
        the unit's ``ChatError`` into what the future raises; ``WriterBusy`` is raised at once, as is.
        """
        unit = tuple(unit)
        if self._waiting and self._waiting + len(unit) > self.queue_limit:
            raise WriterBusy(f"the server is busy ({self._waiting} messages waiting to be stored): retry shortly")
        loop = asyncio.get_running_loop()
        pending = _Pending(unit, loop.create_future(), loop.time(), refuse)
        self._queue.append(pending)
        self._waiting += pending.size
        if self._task is None:
            self._wakeup = asyncio.Event()
            self._task = loop.create_task(self._run())
        elif self._waiting >= self.batch_max and self._wakeup is not None:
            self._wakeup.set()
        return pending.future

    async def _run(self) -> None:
        """The writer task: lives while there is something to store, then ends (no task left behind).

        Stores and publishes overlap: once a batch is stored, the next one (if due) starts in the thread
        before this one is answered and published on the loop, so the thread does not sit idle while the loop
        builds a batch's MESSAGEs. Batches still commit one at a time, in order, and are published in the
        order they committed (a batch is published before the next one's store is awaited).
        """
        loop = asyncio.get_running_loop()
        batch: list[_Pending] = []  # in the thread now
        stored: list[_Pending] = []  # being answered
        storing: asyncio.Future[list[UnitResult]] | None = None
        try:
            while self._queue or storing is not None:
                try:
                    if storing is None:
                        await self._window(loop)
                        batch = self._take()
                        storing = self._start(batch)
                    stored, batch = batch, []
                    results = await self._stored(stored, storing)
                    storing = None
                    if self._queue and self._due(loop):
                        batch = self._take()
                        storing = self._start(batch)
                    if results is not None:
                        self._answer(stored, results)
                    stored = []
                except BaseException as exc:
                    # Cancelled (the loop is closing) or a bug: a batch may or may not have committed, but no
                    # caller may be left waiting. A retry with the same client_id stores nothing twice.
                    # A bug leaves the batch in the thread to be awaited next; a cancellation ends the task.
                    cancelled = not isinstance(exc, Exception)
                    error = WriteFailed("the server could not confirm this message: resend it with its client_id")
                    for pending in [*stored, *batch] if cancelled else stored:
                        pending.fail(error)
                    stored = []
                    if cancelled:
                        raise
                    logger.exception("the chat writer failed answering a batch")  # the next batch goes on
        finally:
            self._task = None
            if self._queue:  # cancelled with work left (loop closing): nobody will answer these
                for pending in self._queue:
                    pending.fail(WriteFailed("the server stopped before storing this message"))
                self._queue.clear()
                self._waiting = 0

    def _due(self, loop: asyncio.AbstractEventLoop) -> bool:
        """Whether the oldest waiting unit's window is over or a full batch waits."""
        return self._waiting >= self.batch_max or self._queue[0].arrived + self.window <= loop.time()

    async def _window(self, loop: asyncio.AbstractEventLoop) -> None:
        """Wait until the oldest waiting unit is ``window`` old or ``batch_max`` messages wait."""
        wait = self._queue[0].arrived + self.window - loop.time()
        if wait > 0 and self._waiting < self.batch_max:
            assert self._wakeup is not None
            self._wakeup.clear()
            try:
                async with asyncio.timeout(wait):
                    await self._wakeup.wait()
            except TimeoutError:
                pass

    def _take(self) -> list[_Pending]:
        batch: list[_Pending] = []
        size = 0
        while self._queue and (not batch or size + self._queue[0].size <= self.batch_max):
            pending = self._queue.popleft()
            batch.append(pending)
            size += pending.size
        self._waiting -= size
        return batch

    def _start(self, batch: list[_Pending]) -> asyncio.Future[list[UnitResult]]:
        """Start storing ``batch`` in the writer thread (or the writer process: ``CHAT_WRITER_PROCESS``)."""
        loop = asyncio.get_running_loop()
        units = [pending.unit for pending in batch]
        if self._remote is not None:
            return self._remote(units)
        return loop.run_in_executor(self._executor or writer_executor(), self._store, units)

    async def _stored(
        self, batch: list[_Pending], storing: asyncio.Future[list[UnitResult]]
    ) -> list[UnitResult] | None:
        """The batch's results, or None when the database failed it (every unit refused, nothing stored)."""
        try:
            return await storing
        except Exception as exc:
            logger.error("a chat write batch of %d units failed: %s", len(batch), exc, exc_info=exc)
            # WriteFailed as is: the writer process says what it knows (e.g. "not confirmed", when it died).
            error = (
                exc
                if isinstance(exc, WriteFailed)
                else WriteFailed("the database failed while storing this message; nothing was stored: retry")
            )
            for pending in batch:
                pending.fail(error)
            return None

    def _answer(self, batch: list[_Pending], results: list[UnitResult]) -> None:
        """Answer a committed batch's callers, then publish it (on the loop)."""
        self.batches += 1
        # Answered first, yet still after the broadcast: a future's callbacks (and the tasks awaiting it) run
        # only after this step, so after the publish below. Queued ahead of the connections' write flush that
        # the publish starts, a SEND's RECEIPT joins its connection's queue before the flush: the MESSAGEs and
        # the RECEIPT leave in one socket write instead of two.
        for pending, result in zip(batch, results, strict=True):
            if result.error is not None:
                pending.fail(result.error)
            elif not pending.future.done():
                pending.future.set_result(result.events)
        events = [event for result in results if result.error is None for event in result.events]
        try:
            self._publish(events)
        except Exception:
            # Stored already: subscribers get them on resume (since-id), streams on replay.
            logger.exception("publishing a stored chat batch failed")


_executor: ThreadPoolExecutor | None = None
_executor_lock = threading.Lock()


def writer_executor() -> ThreadPoolExecutor:
    """The process's one chat-writer thread."""
    global _executor
    with _executor_lock:
        if _executor is None:
            _executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="chat-writer")
        return _executor


def get_writer() -> ChatWriter:
    """The writer attached to the running event loop's runtime (one per process in a server)."""
    from stompengine import runtime

    return runtime.current().attach("chat.writer", lambda _rt: ChatWriter.from_settings())


async def message_writes_submit(unit: Sequence[Write]) -> tuple[WriteEvent, ...]:
    """Submit to this loop's writer (for sync callers through ``async_to_sync``)."""
    return await get_writer().submit(unit)


__all__ = ["ChatError", "ChatWriter", "get_writer", "message_writes_submit", "writer_executor"]
