"""The chat writer's store in a process of its own (``CHAT_WRITER_PROCESS=1``).

The writer thread (chat/writer/writer.py) shares the server's GIL with the event loop: under load each of
its database waits ends in a wait for the loop to hand the GIL back, and a batch takes two to three times
what it takes alone (docs/performance.md). Here the batch's database work and its Python run in a child
process on another core, driven from the event loop itself: the loop writes a batch to a socket pair and
reads the answer in a protocol callback, so no thread of the server process touches the batch at all.

What crosses is lean: each write as its kind, the ids and names of its room and author and its own
fields (no model instance: pickling those cost more than the thread did), and back the ``UnitResult`` s
(JSON-shaped events, ids, refusals) with the batch's timings, recorded in the server's metrics.

One process per server process, started with the writer and again after it dies; a batch in flight when it
dies is answered ``write-failed`` ("not confirmed": it may have committed, and a retry with the same
``client_id`` stores nothing twice). It ignores SIGTERM and SIGINT (a stop signal sent to the whole group must
not cut a batch the draining server waits for) and ends when the server does: end of file on its socket.
"""

from __future__ import annotations

import asyncio
import atexit
import dataclasses
import logging
import multiprocessing
import pickle
import socket
import time
from collections import deque
from collections.abc import Sequence
from typing import Any

from chat.writer import events
from chat.writer.events import Write, WriteFailed
from chat.writer.store import UnitResult
from operations import metrics

logger = logging.getLogger(__name__)

_KINDS: dict[str, type] = {
    kind.__name__: kind
    for kind in (events.MessageWrite, events.MessageEditWrite, events.MessageDeleteWrite, events.ReactionWrite)
}
_HEADER = 4  # bytes: the length of the pickled frame that follows


def _frame(value: object) -> bytes:
    payload = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    return len(payload).to_bytes(_HEADER, "big") + payload


def lean(units: Sequence[Sequence[Write]]) -> list[list[tuple]]:
    """The batch as it crosses: per write (kind, room id, room slug, author id, author name, own fields)."""
    return [
        [
            (type(write).__name__, write.room.pk, write.room.slug, write.author.pk, write.author.get_username(),
             {f.name: getattr(write, f.name) for f in dataclasses.fields(write) if f.name not in ("room", "author")})
            for write in unit
        ]
        for unit in units
    ]  # fmt: skip


def rebuilt(units: list[list[tuple]]) -> list[tuple[Write, ...]]:
    """``lean``'s batch as writes again. The room and author are stand-ins with their id and name: the batch
    reads each room fresh under its lock and needs nothing else of the author."""
    from django.contrib.auth import get_user_model

    from chat.models import Room

    user = get_user_model()
    return [
        tuple(_KINDS[kind](room=Room(id=room_id, slug=slug), author=user(id=author_id, username=name), **rest)
              for kind, room_id, slug, author_id, name, rest in unit)
        for unit in units
    ]  # fmt: skip


def serve(sock: socket.socket) -> None:
    """The child's loop: a batch in, its results and timings out, until the server closes the socket."""
    from chat.writer.writer import _default_store

    metrics.defer_writer_phases()
    reader = sock.makefile("rb")
    while True:
        head = reader.read(_HEADER)
        if len(head) < _HEADER:
            return  # the server is gone
        units = rebuilt(pickle.loads(reader.read(int.from_bytes(head, "big"))))  # noqa: S301 - our own parent
        started = time.monotonic()
        try:
            reply: tuple[str, Any] = ("ok", _default_store(units))
        except Exception as exc:  # the database failed the batch: the server answers every unit
            logger.exception("a chat write batch of %d units failed in the writer process", len(units))
            reply = ("failed", f"{type(exc).__name__}: {exc}")
        sock.sendall(_frame((*reply, time.monotonic() - started, metrics.last_writer_phases())))


class _Answers(asyncio.Protocol):
    """The server's end of the socket: frames in, each answering the oldest batch sent."""

    def __init__(self, owner: ProcessStore) -> None:
        self.owner = owner
        self.buffer = bytearray()

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while len(self.buffer) >= _HEADER:
            size = int.from_bytes(self.buffer[:_HEADER], "big")
            if len(self.buffer) < _HEADER + size:
                return
            payload = bytes(self.buffer[_HEADER : _HEADER + size])
            del self.buffer[: _HEADER + size]
            self.owner.answered(pickle.loads(payload))  # noqa: S301 - our own child

    def connection_lost(self, exc: Exception | None) -> None:
        self.owner.lost(exc)


class ProcessStore:
    """The server side: ``submit(units)`` returns a future of the batch's ``UnitResult`` s (the writer keeps one
    batch in the child at a time; answers come back in the order batches went)."""

    def __init__(self) -> None:
        self._transport: asyncio.Transport | None = None
        self._process: multiprocessing.process.BaseProcess | None = None
        self._starting: asyncio.Future[None] | None = None
        # The batches in the child, oldest first: (their future, their units, when they went).
        self._waiting: deque[tuple[asyncio.Future[list[UnitResult]], int, float]] = deque()

    def start(self) -> asyncio.Future[None]:
        """Start the child now (the writer does when it is created, on its event loop) rather than with the
        first batch."""
        if self._starting is None:
            self._starting = asyncio.get_running_loop().create_task(self._start())
        return self._starting

    async def _start(self) -> None:
        from chatproject.writer_child import main

        context = multiprocessing.get_context("spawn")  # never fork a process with an event loop and threads
        mine, theirs = socket.socketpair()
        process = context.Process(target=main, args=(theirs,), daemon=True, name="chat-writer")
        try:
            process.start()
        finally:
            theirs.close()
        self._process = process
        # At the server's exit, before multiprocessing joins its children: the end of file ends the child.
        atexit.register(mine.close)
        loop = asyncio.get_running_loop()
        self._transport, _ = await loop.create_connection(lambda: _Answers(self), sock=mine)
        logger.info("chat writer process %s started", process.pid)

    def submit(self, units: Sequence[Sequence[Write]]) -> asyncio.Future[list[UnitResult]]:
        return asyncio.ensure_future(self._submit(lean(units), len(units)))

    async def _submit(self, units: list[list[tuple]], size: int) -> list[UnitResult]:
        """``size``: the batch's units, for the metrics."""
        try:
            await self.start()
        except Exception:
            self._starting = None
            raise
        if self._transport is None:  # it died between the start and now
            self._starting = None
            raise WriteFailed("the chat writer process is restarting: retry shortly")
        future: asyncio.Future[list[UnitResult]] = asyncio.get_running_loop().create_future()
        self._waiting.append((future, size, metrics.now()))
        self._transport.write(_frame(units))
        return await future

    def answered(self, reply: tuple[str, Any, float, tuple[float, float, float] | None]) -> None:
        status, value, seconds, phases = reply
        future, size, _sent = self._waiting.popleft()
        metrics.writer_batch(size, seconds, failed=status != "ok")
        if phases is not None and status == "ok":
            metrics.writer_phases(*phases)
        if future.done():
            return
        if status == "ok":
            future.set_result(value)
        else:
            future.set_exception(RuntimeError(value))

    def lost(self, exc: Exception | None) -> None:
        """The child ended (killed, crashed): what it held is unconfirmed; the next batch starts a new one."""
        logger.error("the chat writer process %s ended (%s); the next batch starts a new one",
                     self._process.pid if self._process else None, exc)  # fmt: skip
        self._transport = None
        self._starting = None
        self._process = None
        while self._waiting:
            future, size, sent = self._waiting.popleft()
            metrics.writer_batch(size, metrics.now() - sent, failed=True)
            if not future.done():
                future.set_exception(
                    WriteFailed("the server could not confirm this message: resend it with its client_id")
                )
