"""Application destinations (``/app/...`` handlers) and subscription guards, registered from Python.

An app registers both in its ``stomp_destinations`` module, imported at start-up by the engine's AppConfig
(like ``admin.py``; list extra modules in ``settings.STOMP_HANDLER_MODULES``)::

    # chat/stomp_destinations.py
    from stompengine import Denied, SendContext, SubscribeContext, app_destination, subscription_guard

    @app_destination("/app/rooms.{slug}")
    async def send_to_room(ctx: SendContext, slug: str) -> None:
        write = await database_sync_to_async(prepare)(slug, ctx.user, ctx.text)  # validate first
        await get_writer().submit([write])  # stored in a batch, published after its commit

    @subscription_guard("/topic/rooms.{slug}")
    async def members_only(ctx: SubscribeContext, slug: str) -> None:
        if not await database_sync_to_async(selectors.is_member)(user=ctx.user, slug=slug):
            raise Denied("Forbidden", f"you are not a member of room {slug}", code="forbidden")

Templates: ``{name}`` matches one segment of letters, digits, ``_`` and ``-`` (no ``.`` or ``/``) and is
passed to the function as a keyword argument; a compiled ``re.Pattern`` may be given instead (named
groups become keyword arguments; it must match the whole destination). A handler returning normally
means success (the RECEIPT, if asked for, goes out after it returns). Raising ``Denied`` sends an ERROR
with its message, detail and code and closes the connection, as STOMP requires after an ERROR; any
other exception is logged and sent as ``message:internal error``. Every guard matching a destination
must pass (return None or True); a guard returning False denies with a generic message.

Inside a STOMP transaction, a SEND whose destination has an ``@app_prepare(template)`` hook is not handled
on its own: at COMMIT every such SEND is prepared (validated) first, then all are committed together by
one call of their ``Prepared.commit`` (all stored or none); a refusal of any refuses the COMMIT.

A handler that has validated its SEND and only waits for slow work to finish (a write batch) may return
``Completion(awaitable)`` instead of awaiting it: the connection then parses and handles the next frames
while the work runs (at most ``STOMP_SEND_PIPELINE`` such SENDs per connection), and sends the RECEIPT,
or the refusal the awaitable raises, strictly in frame order. Anything that must see the work done
(another kind of frame, a refusal, DISCONNECT, shutdown) waits for every outstanding one first. A future
(such as the write batch's own) is cheapest: its RECEIPT needs no task at all.

Two more hooks run once a SUBSCRIBE is authorised and live in the broker:

- ``@subscription_replay(template)``: returns a ``Replay`` of messages this subscription gets before any
  live one (resume after ``since-id``, a presence snapshot). While it runs, live messages for the
  subscription are held back; afterwards they are released, and sequenced live messages at or below
  ``Replay.after_seq`` are dropped then and later, so the boundary between replay and live has no gap
  and no duplicate (even when a message in the replay is published late, by a slower process).
- ``@on_subscribe(template)`` / ``@on_unsubscribe(template)``: told when a subscription starts and when it
  ends (UNSUBSCRIBE, DISCONNECT, ERROR or a lost connection alike); presence is built on them.

And one for destinations published with a sequence (``seq``/``prev``):

- ``@sequence_repair(template)``: ``(after, until, **params)`` returns the stored messages numbered after
  ``after`` up to ``until``, each ``(seq, body, headers)``. A process whose subscribers wait for a number
  that never came through the bus (its publisher died between its commit and its publish) reads it here
  and delivers it in its place (``stompengine/broker/sequencer.py``).
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from stompengine.connection.handle import ConnectionHandle

logger = logging.getLogger(__name__)

_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
_SEGMENT = r"[A-Za-z0-9_-]+"


class Denied(Exception):
    """Refuse a SEND or SUBSCRIBE: the client gets ERROR ``message`` (+ ``code`` header) and is disconnected."""

    def __init__(
        self,
        message: str = "Forbidden",
        detail: str = "",
        *,
        code: str | None = "forbidden",
        headers: tuple[tuple[str, str], ...] = (),
    ) -> None:
        super().__init__(detail or message)
        self.message = message
        self.detail = detail or message
        self.code = code
        self.headers = headers  # extra ERROR headers (``retry-after`` of a busy CONNECT)


def first_header(headers: tuple[tuple[str, str], ...], name: str, default: str | None = None) -> str | None:
    """The first value of ``name`` (STOMP: a repeated header's first value wins)."""
    for key, value in headers:
        if key == name:
            return value
    return default


class Rejected(Exception):
    """Refuse one SEND without ending the connection: no RECEIPT, and an error on ``/user/queue/errors``.

    For mistakes of the user rather than of the client (an empty message, a room they left): the
    client keeps its connection and learns what happened from the error queue, which carries the
    ``receipt`` id of the refused frame so that it can be matched.
    """

    def __init__(self, detail: str, *, code: str = "invalid", **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.code = code
        self.extra = extra


class _Context:
    """What both contexts offer: who is connected, the frame's headers, a message to this session."""

    connection: ConnectionHandle
    headers: tuple[tuple[str, str], ...]

    @property
    def user(self) -> Any:
        """The authenticated user (never anonymous)."""
        return self.connection.user

    @property
    def session_id(self) -> str:
        """The STOMP session id (CONNECTED's ``session`` header)."""
        return self.connection.session_id

    def header(self, name: str, default: str | None = None) -> str | None:
        """The first value of a header of the frame (credential headers are not included)."""
        return first_header(self.headers, name, default)

    def notify(self, destination: str, body: Any) -> bool:
        """A MESSAGE to this session's own subscriptions to ``destination``; False when it has none."""
        return self.connection.notify(destination, body)


@dataclass(frozen=True)
class SendContext(_Context):
    """A SEND to an application destination, as a handler sees it (``connection``: a ``ConnectionHandle``)."""

    connection: ConnectionHandle = field(repr=False)
    destination: str
    headers: tuple[tuple[str, str], ...]
    body: bytes
    #: The SEND's Authorization header (kept out of ``headers`` and of reprs; for /app/auth.refresh).
    authorization: str | None = field(default=None, repr=False)
    #: The SEND's receipt id (its RECEIPT goes out when the handler succeeds), or None.
    receipt: str | None = None

    @property
    def text(self) -> str:
        """The body as UTF-8 text (Denied with ``message:invalid body`` when it is not)."""
        try:
            return self.body.decode("utf-8")
        except UnicodeDecodeError:
            raise Denied("invalid body", "the body is not valid UTF-8", code="invalid-body") from None

    async def reauthenticate(self, headers: Mapping[str, str]) -> None:
        """Re-authenticate this connection with fresh credentials (see ``ConnectionHandle.reauthenticate``)."""
        await self.connection.reauthenticate(headers)


@dataclass(frozen=True)
class SubscribeContext(_Context):
    """A SUBSCRIBE being authorised, as a guard sees it (``connection``: a ``ConnectionHandle``)."""

    connection: ConnectionHandle = field(repr=False)
    destination: str
    subscription_id: str
    headers: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Replay:
    """Messages one subscription receives before its live ones, each ``(body, headers)``.

    ``after_seq``: the replay covered every message of the destination's sequence up to this number
    (``Publication.seq``), so live ones at or below it are dropped, whenever they arrive; 0 drops none.
    """

    messages: Sequence[tuple[Any, Mapping[str, str]]] = ()
    after_seq: int = 0


@dataclass(frozen=True)
class Prepared:
    """A SEND inside a STOMP transaction, validated and ready to commit with the others (all or none).

    ``@app_prepare`` hooks return one (or raise ``Rejected``/``Denied``: then nothing of the transaction
    is committed); on COMMIT the connection hands every ``item`` with the same ``commit`` to one call of
    it, which stores them all or none (raising ``Rejected`` for none).
    """

    item: Any
    commit: Callable[[Sequence[Any]], Awaitable[None]]


@dataclass(frozen=True)
class Completion:
    """What an ``/app`` handler returns to finish its SEND later (see the module docstring): a task or a
    future whose work runs whether or not the connection still waits for it (nobody cancels it)."""

    task: asyncio.Future[Any]


AppHandler = Callable[..., Awaitable[Completion | None]]
Guard = Callable[..., Awaitable[bool | None]]
Replayer = Callable[..., Awaitable[Replay | None]]
Preparer = Callable[..., Awaitable[Prepared]]
#: ``on_subscribe`` hooks get ``(SubscribeContext, **params)``; ``on_unsubscribe`` hooks get
#: ``(ConnectionHandle, destination, **params)``.
Watcher = Callable[..., Awaitable[None]]
Repairer = Callable[..., Awaitable[Sequence[tuple[int, Any, Mapping[str, str]]]]]


def compile_template(template: str | re.Pattern[str]) -> re.Pattern[str]:
    """Compile ``/app/rooms.{slug}`` (or pass a regular expression through)."""
    if isinstance(template, re.Pattern):
        return template
    parts: list[str] = []
    last = 0
    for match in _PLACEHOLDER.finditer(template):
        parts.append(re.escape(template[last : match.start()]))
        parts.append(f"(?P<{match[1]}>{_SEGMENT})")
        last = match.end()
    parts.append(re.escape(template[last:]))
    return re.compile("".join(parts))


@dataclass(frozen=True)
class _Route:
    pattern: re.Pattern[str]
    function: Callable[..., Awaitable[Any]]


class DestinationRegistry:
    """Routes for ``/app`` SENDs and the guards consulted on SUBSCRIBE."""

    def __init__(self) -> None:
        self._handlers: list[_Route] = []
        self._preparers: list[_Route] = []
        self._guards: list[_Route] = []
        self._replayers: list[_Route] = []
        self._subscribed: list[_Route] = []
        self._unsubscribed: list[_Route] = []
        self._repairers: list[_Route] = []

    def register_app(self, template: str | re.Pattern[str], handler: AppHandler) -> None:
        """Route SENDs matching ``template`` to ``handler(ctx, **params)``; the first matching route wins."""
        self._handlers.append(_Route(compile_template(template), handler))

    def register_prepare(self, template: str | re.Pattern[str], preparer: Preparer) -> None:
        """In a STOMP transaction, SENDs matching ``template`` are prepared by ``preparer(ctx, **params)`` and
        committed together on COMMIT instead of being handled one by one."""
        self._preparers.append(_Route(compile_template(template), preparer))

    def register_guard(self, template: str | re.Pattern[str], guard: Guard) -> None:
        """Consult ``guard(ctx, **params)`` before any SUBSCRIBE matching ``template``."""
        self._guards.append(_Route(compile_template(template), guard))

    def register_replay(self, template: str | re.Pattern[str], replayer: Replayer) -> None:
        """Ask ``replayer(ctx, **params)`` for a Replay whenever a SUBSCRIBE matching ``template`` goes live."""
        self._replayers.append(_Route(compile_template(template), replayer))

    def register_subscribed(self, template: str | re.Pattern[str], watcher: Watcher) -> None:
        """Call ``watcher(ctx, **params)`` once a subscription matching ``template`` is live."""
        self._subscribed.append(_Route(compile_template(template), watcher))

    def register_unsubscribed(self, template: str | re.Pattern[str], watcher: Watcher) -> None:
        """Call ``watcher(handle, destination, **params)`` when such a subscription ends, however it ends
        (``handle``: the connection's ``ConnectionHandle``)."""
        self._unsubscribed.append(_Route(compile_template(template), watcher))

    def register_repair(self, template: str | re.Pattern[str], repairer: Repairer) -> None:
        """Read missing numbers of a sequenced destination matching ``template`` with
        ``repairer(after, until, **params)`` (the first matching route wins)."""
        self._repairers.append(_Route(compile_template(template), repairer))

    def app(self, template: str | re.Pattern[str]) -> Callable[[AppHandler], AppHandler]:
        """Decorator form of ``register_app``."""

        def decorate(handler: AppHandler) -> AppHandler:
            self.register_app(template, handler)
            return handler

        return decorate

    def prepare(self, template: str | re.Pattern[str]) -> Callable[[Preparer], Preparer]:
        """Decorator form of ``register_prepare``."""
        return self._decorator(self.register_prepare, template)

    def guard(self, template: str | re.Pattern[str]) -> Callable[[Guard], Guard]:
        """Decorator form of ``register_guard``."""

        def decorate(guard: Guard) -> Guard:
            self.register_guard(template, guard)
            return guard

        return decorate

    def replay(self, template: str | re.Pattern[str]) -> Callable[[Replayer], Replayer]:
        """Decorator form of ``register_replay``."""
        return self._decorator(self.register_replay, template)

    def subscribed(self, template: str | re.Pattern[str]) -> Callable[[Watcher], Watcher]:
        """Decorator form of ``register_subscribed``."""
        return self._decorator(self.register_subscribed, template)

    def unsubscribed(self, template: str | re.Pattern[str]) -> Callable[[Watcher], Watcher]:
        """Decorator form of ``register_unsubscribed``."""
        return self._decorator(self.register_unsubscribed, template)

    def repair(self, template: str | re.Pattern[str]) -> Callable[[Repairer], Repairer]:
        """Decorator form of ``register_repair``."""
        return self._decorator(self.register_repair, template)

    @staticmethod
    def _decorator(register: Callable[[Any, Any], None], template: str | re.Pattern[str]) -> Callable[[Any], Any]:
        def decorate(function: Any) -> Any:
            register(template, function)
            return function

        return decorate

    def resolve_app(self, destination: str) -> tuple[AppHandler, dict[str, str]] | None:
        """The handler and keyword arguments for a SEND destination, or None."""
        for route in self._handlers:
            match = route.pattern.fullmatch(destination)
            if match:
                return route.function, match.groupdict()
        return None

    def resolve_prepare(self, destination: str) -> tuple[Preparer, dict[str, str]] | None:
        """The prepare hook and keyword arguments for a SEND destination inside a transaction, or None."""
        found = self._matching(self._preparers, destination)
        return found[0] if found else None

    def guards_for(self, destination: str) -> list[tuple[Guard, dict[str, str]]]:
        """Every guard whose template matches ``destination``, with its keyword arguments."""
        return self._matching(self._guards, destination)

    def replayers_for(self, destination: str) -> list[tuple[Replayer, dict[str, str]]]:
        """Every replay hook for ``destination``."""
        return self._matching(self._replayers, destination)

    def subscribed_for(self, destination: str) -> list[tuple[Watcher, dict[str, str]]]:
        """Every on_subscribe hook for ``destination``."""
        return self._matching(self._subscribed, destination)

    def unsubscribed_for(self, destination: str) -> list[tuple[Watcher, dict[str, str]]]:
        """Every on_unsubscribe hook for ``destination``."""
        return self._matching(self._unsubscribed, destination)

    async def stored(self, destination: str, after: int, until: int) -> Sequence[tuple[int, Any, Mapping[str, str]]]:
        """The broker's ``gap_fill``: what the destination's repair hook finds (nothing without one)."""
        found = self._matching(self._repairers, destination)
        if not found:
            return ()
        repairer: Repairer = found[0][0]
        return await repairer(after, until, **found[0][1])

    @staticmethod
    def _matching(routes: list[_Route], destination: str) -> list[tuple[Any, dict[str, str]]]:
        found = []
        for route in routes:
            match = route.pattern.fullmatch(destination)
            if match:
                found.append((route.function, match.groupdict()))
        return found

    def unregister(self, function: Callable[..., Any]) -> None:
        """Remove a handler or guard (tests)."""
        for name in ("_handlers", "_preparers", "_guards", "_replayers", "_subscribed", "_unsubscribed",
                     "_repairers"):  # fmt: skip
            setattr(self, name, [r for r in getattr(self, name) if r.function is not function])


#: The process-wide registry the STOMP connections consult.
destinations = DestinationRegistry()
app_destination = destinations.app
app_prepare = destinations.prepare
subscription_guard = destinations.guard
subscription_replay = destinations.replay
on_subscribe = destinations.subscribed
on_unsubscribe = destinations.unsubscribed
sequence_repair = destinations.repair

_discovered = False


def autodiscover() -> None:
    """Import every installed app's ``stomp_destinations`` and ``settings.STOMP_HANDLER_MODULES`` (once).

    The engine's AppConfig calls it in ``ready()``, so a module that fails to import stops the process at
    start-up; an import error propagates as it is.
    """
    global _discovered
    if _discovered:
        return
    from django.utils.module_loading import autodiscover_modules

    from stompengine.conf import stomp_settings

    autodiscover_modules("stomp_destinations")
    for module in stomp_settings().handler_modules:
        importlib.import_module(module)
    _discovered = True
