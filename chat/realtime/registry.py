"""Application destinations (``/app/...`` handlers) and subscription guards, registered from Python.

An app registers both in its ``stomp_destinations`` module, imported once on the first STOMP connection
(like ``admin.py``; list extra modules in ``settings.STOMP_HANDLER_MODULES``)::

    # chat/stomp_destinations.py
    from chat.realtime import Denied, SendContext, SubscribeContext, app_destination, subscription_guard

    @app_destination("/app/rooms.{slug}")
    async def send_to_room(ctx: SendContext, slug: str) -> None:
        message = await database_sync_to_async(services.message_create)(room=..., author=ctx.user, body=ctx.text)
        # services publish to /topic/rooms.<slug> on commit

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
"""

from __future__ import annotations

import importlib
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from chat.realtime.connection import StompConnection

logger = logging.getLogger(__name__)

_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
_SEGMENT = r"[A-Za-z0-9_-]+"


class Denied(Exception):
    """Refuse a SEND or SUBSCRIBE: the client gets ERROR ``message`` (+ ``code`` header) and is disconnected."""

    def __init__(self, message: str = "Forbidden", detail: str = "", *, code: str | None = "forbidden") -> None:
        super().__init__(detail or message)
        self.message = message
        self.detail = detail or message
        self.code = code


@dataclass(frozen=True)
class SendContext:
    """A SEND to an application destination, as a handler sees it."""

    connection: StompConnection = field(repr=False)
    destination: str
    headers: tuple[tuple[str, str], ...]
    body: bytes
    #: The SEND's Authorization header (kept out of ``headers`` and of reprs; for /app/auth.refresh).
    authorization: str | None = field(default=None, repr=False)

    @property
    def user(self) -> Any:
        """The authenticated user (never anonymous)."""
        return self.connection.user

    @property
    def session_id(self) -> str:
        """The STOMP session id (CONNECTED's ``session`` header)."""
        return self.connection.session_id

    @property
    def text(self) -> str:
        """The body as UTF-8 text (Denied with ``message:invalid body`` when it is not)."""
        try:
            return self.body.decode("utf-8")
        except UnicodeDecodeError:
            raise Denied("invalid body", "the body is not valid UTF-8", code="invalid-body") from None

    def header(self, name: str, default: str | None = None) -> str | None:
        """The first value of a header of the SEND frame (credential headers are not included)."""
        for key, value in self.headers:
            if key == name:
                return value
        return default


@dataclass(frozen=True)
class SubscribeContext:
    """A SUBSCRIBE being authorised, as a guard sees it."""

    connection: StompConnection = field(repr=False)
    destination: str
    subscription_id: str
    headers: tuple[tuple[str, str], ...]

    @property
    def user(self) -> Any:
        """The authenticated user (never anonymous)."""
        return self.connection.user

    @property
    def session_id(self) -> str:
        """The STOMP session id."""
        return self.connection.session_id


AppHandler = Callable[..., Awaitable[None]]
Guard = Callable[..., Awaitable[bool | None]]


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
        self._guards: list[_Route] = []

    def register_app(self, template: str | re.Pattern[str], handler: AppHandler) -> None:
        """Route SENDs matching ``template`` to ``handler(ctx, **params)``; the first matching route wins."""
        self._handlers.append(_Route(compile_template(template), handler))

    def register_guard(self, template: str | re.Pattern[str], guard: Guard) -> None:
        """Consult ``guard(ctx, **params)`` before any SUBSCRIBE matching ``template``."""
        self._guards.append(_Route(compile_template(template), guard))

    def app(self, template: str | re.Pattern[str]) -> Callable[[AppHandler], AppHandler]:
        """Decorator form of ``register_app``."""

        def decorate(handler: AppHandler) -> AppHandler:
            self.register_app(template, handler)
            return handler

        return decorate

    def guard(self, template: str | re.Pattern[str]) -> Callable[[Guard], Guard]:
        """Decorator form of ``register_guard``."""

        def decorate(guard: Guard) -> Guard:
            self.register_guard(template, guard)
            return guard

        return decorate

    def resolve_app(self, destination: str) -> tuple[AppHandler, dict[str, str]] | None:
        """The handler and keyword arguments for a SEND destination, or None."""
        for route in self._handlers:
            match = route.pattern.fullmatch(destination)
            if match:
                return route.function, match.groupdict()
        return None

    def guards_for(self, destination: str) -> list[tuple[Guard, dict[str, str]]]:
        """Every guard whose template matches ``destination``, with its keyword arguments."""
        found = []
        for route in self._guards:
            match = route.pattern.fullmatch(destination)
            if match:
                found.append((route.function, match.groupdict()))
        return found

    def unregister(self, function: Callable[..., Any]) -> None:
        """Remove a handler or guard (tests)."""
        self._handlers = [r for r in self._handlers if r.function is not function]
        self._guards = [r for r in self._guards if r.function is not function]


#: The process-wide registry the STOMP connections consult.
destinations = DestinationRegistry()
app_destination = destinations.app
subscription_guard = destinations.guard

_discovered = False


def autodiscover() -> None:
    """Import every installed app's ``stomp_destinations`` and ``settings.STOMP_HANDLER_MODULES`` (once)."""
    global _discovered
    if _discovered:
        return
    from django.conf import settings
    from django.utils.module_loading import autodiscover_modules

    autodiscover_modules("stomp_destinations")
    for module in getattr(settings, "STOMP_HANDLER_MODULES", ()):
        importlib.import_module(module)
    _discovered = True
