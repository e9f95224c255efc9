"""SockJS sessions: the outbound queue, the one-receiver rule, heartbeats, and reaping of abandoned sessions.

A session outlives the HTTP requests that carry it: a polling client opens a new request for every
batch of frames, so the session keeps queued messages between requests and is reaped when no request
has been attached for ``disconnect_delay`` seconds. Receivers *pull* frames with :meth:`Session.next_frame`,
which also yields a heartbeat when nothing happened for ``heartbeat_interval`` seconds.

Sessions live in the memory of one process (as in sockjs-node and Spring). Deployments with several
server processes must route the HTTP transports of one session to one process: sticky sessions on the
``/<server>/`` path segment or on the ``JSESSIONID`` cookie (``cookie_needed``). WebSocket sessions are
not shared and need nothing.

Handler calls (``on_open``, ``on_message``, ``on_close``) are serialised by a per-session lock, so a
handler never sees a message before ``on_open`` has finished or after ``on_close``.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Protocol

from sockjs import protocol
from sockjs.binding import Binding

logger = logging.getLogger(__name__)


class Handler(Protocol):
    """What an application provides per session, built by ``handler_factory(session)``.

    ``on_open`` runs once, before any ``on_message``; ``on_message`` gets every client message in
    order; ``on_close`` runs exactly once, when the session ends for any reason (client gone, reaped
    after the disconnect delay, closed by the server, slow consumer). Exceptions close the session
    with ``c[1011,"Internal error"]``.
    """

    async def on_open(self) -> None: ...

    async def on_message(self, text: str) -> None: ...

    async def on_close(self) -> None: ...


HandlerFactory = Callable[["Session"], Handler]


class State(enum.Enum):
    """Life cycle: NEW until the open frame is pulled, OPEN, CLOSING (close frame pending), CLOSED."""

    NEW = "new"
    OPEN = "open"
    CLOSING = "closing"
    CLOSED = "closed"


class Attach(enum.Enum):
    """What :meth:`Session.attach` decided for a new receiver."""

    ATTACHED = "attached"
    # Another receiver is attached: answer c[2010,...] and end the response.
    REFUSED = "refused"


class Session:
    """One SockJS session, shared by the consecutive requests (or the one WebSocket) that carry it."""

    def __init__(
        self,
        *,
        transport: str,
        scope: dict[str, Any],
        handler_factory: HandlerFactory,
        queue_limit: int,
        disconnect_delay: float | None,
        on_closed: Callable[[Session], None] | None = None,
        binding: Binding | None = None,
    ) -> None:
        self.transport = transport
        self.scope = scope
        # Who may use this session's URLs (HTTP transports; a WebSocket session is its socket).
        self.binding = binding
        self.state = State.NEW
        self._open_sent = False
        self._queue: list[str] = []
        self._queued_bytes = 0
        self._queue_limit = queue_limit
        self._disconnect_delay = disconnect_delay
        self._on_closed = on_closed
        self._close_frame: str | None = None
        self.close_code: int | None = None
        self.close_reason: str | None = None
        self._receiver: object | None = None
        # Set while no receiver is attached: a request refused with 2010 may wait on it (take-over).
        self._receiver_gone = asyncio.Event()
        self._receiver_gone.set()
        self._wakeup = asyncio.Event()
        self._reaper: asyncio.TimerHandle | None = None
        self._handler_lock = asyncio.Lock()
        # Set once on_open has returned: a task does not hold the lock before it first runs, so the
        # lock alone cannot keep an early message from overtaking on_open.
        self._opened = asyncio.Event()
        self._close_notified = False
        self._tasks: set[asyncio.Task[None]] = set()
        self.handler = handler_factory(self)
        self._run_handler(self.handler.on_open, first=True)

    def __repr__(self) -> str:
        return f"<Session {self.transport} {self.state.value}>"

    # --- The application's side --------------------------------------------------------------------

    async def send(self, text: str) -> bool:
        """Queue one message for the client; False (and nothing queued) once the session is closing."""
        return await self.send_many([text])

    async def send_many(self, texts: Iterable[str]) -> bool:
        """Queue messages in order; past the queue limit the session is closed as a slow consumer."""
        if self.state not in (State.NEW, State.OPEN):
            return False
        batch = list(texts)
        if len(self._queue) + len(batch) > self._queue_limit:
            logger.warning(
                "closing SockJS %s session: %d queued frames (slow consumer)", self.transport, len(self._queue)
            )
            # The queued messages would arrive after the client is already hopelessly behind; drop
            # them so the close frame reaches it at once and the memory is freed now.
            self._clear_queue()
            self._begin_close(*protocol.SLOW_CONSUMER)
            return False
        self._queue.extend(batch)
        self._queued_bytes += sum(_utf8_length(text) for text in batch)
        self._wakeup.set()
        return True

    async def close(self, code: int = protocol.GO_AWAY[0], reason: str = protocol.GO_AWAY[1]) -> None:
        """Close the session: queued messages, then ``c[code,"reason"]``, are delivered to the client."""
        self._begin_close(code, reason)

    # --- The transports' side ------------------------------------------------------------------------

    def attach(self, receiver: object) -> Attach:
        """A request (or WebSocket) wants to receive frames; at most one may at a time."""
        if self._receiver is not None and self._receiver is not receiver:
            return Attach.REFUSED
        self._receiver = receiver
        self._receiver_gone.clear()
        self._cancel_reaper()
        return Attach.ATTACHED

    @property
    def receiver(self) -> object | None:
        """The request (or WebSocket consumer) currently taking this session's frames, if any."""
        return self._receiver

    def detach(self, receiver: object, *, aborted: bool) -> None:
        """The receiver ended. A client that dropped the connection (``aborted``) ends the session now;
        otherwise the session waits ``disconnect_delay`` seconds for the client's next request."""
        if self._receiver is not receiver:
            return
        self._receiver = None
        self._receiver_gone.set()
        if aborted or self._disconnect_delay is None:
            self._expire()
        else:
            self._schedule_reaper()

    async def receiver_gone(self, grace: float) -> bool:
        """Wait up to ``grace`` seconds for the attached receiver to end; True once none is attached.

        A client that aborts a poll and polls again at once races its own disconnect: the new request
        may arrive before the server has seen the old one go.
        """
        if self._receiver is None:
            return True
        try:
            await asyncio.wait_for(self._receiver_gone.wait(), grace)
        except TimeoutError:
            return False
        return True

    async def next_frame(self, heartbeat_interval: float) -> str:
        """The next frame for the attached receiver: ``o``, a batch ``a[...]``, ``c[...]`` or ``h``."""
        if not self._open_sent:
            # Always first, even when on_open already closed the session: the client only trusts
            # a session URL that answered "o".
            self._open_sent = True
            if self.state is State.NEW:
                self.state = State.OPEN
            return protocol.OPEN_FRAME
        try:
            await asyncio.wait_for(self._wait_for_output(), heartbeat_interval)
        except TimeoutError:
            return protocol.HEARTBEAT_FRAME
        if self._queue:
            return protocol.message_frame(self._take_queue())
        assert self._close_frame is not None
        return self._close_frame

    async def next_messages(self) -> list[str] | None:
        """For unframed (raw WebSocket) receivers: the next batch of messages, or None once closing."""
        self._open_sent = True
        if self.state is State.NEW:
            self.state = State.OPEN
        await self._wait_for_output()
        if self._queue:
            return self._take_queue()
        return None

    async def deliver(self, messages: Iterable[str]) -> None:
        """Hand client messages to the handler, in order; returns when the handler has taken them."""
        await self._opened.wait()
        for text in messages:
            if self.state not in (State.NEW, State.OPEN):
                return
            async with self._handler_lock:
                if self.state not in (State.NEW, State.OPEN):
                    return
                try:
                    await self.handler.on_message(text)
                except Exception:
                    logger.exception("SockJS handler failed on a message; closing the session")
                    self._begin_close(*protocol.INTERNAL_ERROR)
                    return

    def interrupt(self) -> None:
        """The carrying connection is gone for good (a WebSocket closed): end the session now."""
        self._receiver = None
        self._receiver_gone.set()
        self._expire()

    @property
    def is_closed(self) -> bool:
        return self.state is State.CLOSED

    @property
    def queued(self) -> int:
        """How many messages wait for a receiver (for tests and diagnostics)."""
        return len(self._queue)

    @property
    def queued_bytes(self) -> int:
        """UTF-8 bytes of the messages no receiver has taken yet (what a client that stops polling costs)."""
        return self._queued_bytes

    # --- Internals -----------------------------------------------------------------------------------

    def _take_queue(self) -> list[str]:
        batch, self._queue = self._queue, []
        self._queued_bytes = 0
        return batch

    def _clear_queue(self) -> None:
        self._queue.clear()
        self._queued_bytes = 0

    async def _wait_for_output(self) -> None:
        while not self._queue and self._close_frame is None:
            self._wakeup.clear()
            await self._wakeup.wait()

    def _begin_close(self, code: int, reason: str) -> None:
        if self.state in (State.CLOSING, State.CLOSED):
            return
        self.state = State.CLOSING
        self.close_code = code
        self.close_reason = reason
        self._close_frame = protocol.close_frame(code, reason)
        self._wakeup.set()
        self._notify_closed()
        if self._receiver is None:
            # Nobody listening (e.g. between two polls): keep answering the close frame to new
            # requests until the disconnect delay passes, as the protocol asks.
            self._schedule_reaper()

    def _expire(self) -> None:
        self._cancel_reaper()
        if self.state is State.CLOSED:
            return
        self.state = State.CLOSED
        if self._close_frame is None:
            self.close_code, self.close_reason = protocol.CONNECTION_INTERRUPTED
            self._close_frame = protocol.close_frame(*protocol.CONNECTION_INTERRUPTED)
        self._clear_queue()
        self._wakeup.set()
        self._notify_closed()
        if self._on_closed is not None:
            self._on_closed(self)

    def _notify_closed(self) -> None:
        if self._close_notified:
            return
        self._close_notified = True
        self._run_handler(self.handler.on_close)

    def _schedule_reaper(self) -> None:
        self._cancel_reaper()
        if self._disconnect_delay is None:
            return
        self._reaper = asyncio.get_running_loop().call_later(self._disconnect_delay, self._reap)

    def _reap(self) -> None:
        self._reaper = None
        if self._receiver is None:
            logger.debug("reaping abandoned SockJS %s session", self.transport)
            self._expire()

    def _cancel_reaper(self) -> None:
        if self._reaper is not None:
            self._reaper.cancel()
            self._reaper = None

    def _run_handler(self, method: Callable[[], Awaitable[None]], *, first: bool = False) -> None:
        # on_open and on_close run as tasks: the open frame must not wait for a slow on_open, and
        # close paths are synchronous (timers). The event and the lock keep them ordered with on_message.
        async def run() -> None:
            if not first:
                await self._opened.wait()
            try:
                async with self._handler_lock:
                    await method()
            except Exception:
                logger.exception("SockJS handler %s failed", getattr(method, "__name__", method))
                self._begin_close(*protocol.INTERNAL_ERROR)  # a no-op once the session is closing
            finally:
                if first:
                    self._opened.set()

        task = asyncio.get_running_loop().create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def _utf8_length(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode("utf-8", errors="replace"))


class SessionRegistry:
    """The sessions of one endpoint's HTTP transports, by session id (in-process, see module doc)."""

    def __init__(self) -> None:
        self._sessions: dict[str, Session] = {}
        # The binding of a session that ended, kept for its disconnect delay: the id stays its client's,
        # so that nobody else can open a session under it while the client is reconnecting (take-over).
        self._ended: dict[str, Binding] = {}

    def get(self, session_id: str) -> Session | None:
        return self._sessions.get(session_id)

    def create(self, session_id: str, **kwargs: Any) -> Session:
        """A new session under ``session_id``; it removes itself from the registry when it closes."""

        def forget(session: Session) -> None:
            if self._sessions.get(session_id) is session:
                del self._sessions[session_id]
                binding = kwargs.get("binding")
                delay = kwargs.get("disconnect_delay")
                if binding is not None and delay:
                    with contextlib.suppress(RuntimeError):  # no loop: process shutdown, nothing to keep
                        loop = asyncio.get_running_loop()
                        self._ended[session_id] = binding
                        loop.call_later(delay, self._forget_ended, session_id, binding)

        session = Session(on_closed=forget, **kwargs)
        self._sessions[session_id] = session
        return session

    def ended_binding(self, session_id: str) -> Binding | None:
        """The binding of the session that last ended under ``session_id`` within its disconnect delay."""
        return self._ended.get(session_id)

    def _forget_ended(self, session_id: str, binding: Binding) -> None:
        if self._ended.get(session_id) is binding:
            del self._ended[session_id]

    def __len__(self) -> int:
        return len(self._sessions)

    def close_all(self) -> None:
        """Close every session now (process shutdown)."""
        for session in list(self._sessions.values()):
            session.interrupt()
