"""The runtime of one event loop: its broker (the bus), STOMP configuration, limits and attached project parts.

Everything real-time in a process hangs off one ``Runtime``: the broker with its Redis bridge (the only
cross-process mechanism: one subscriber and one command connection per Redis node), the configuration
read from settings, and whatever the project attaches (presence, the chat writer, the operations
listener) with ``attach``. Code that has a connection reaches it as ``connection.runtime``; code that
starts from a bare ASGI scope (daphne gives no start-up hook) asks ``current()``, the one accessor, which
builds the runtime of the running loop on first use. Tests build their own and ``install`` it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any, TypeVar

from stompengine.broker.broker import Broker
from stompengine.conf import stomp_settings
from stompengine.realtime.registry import destinations

logger = logging.getLogger(__name__)

T = TypeVar("T")
FLUSH_ON_CLOSE = 5.0  # seconds a closing runtime waits for Redis to take what was published


class Runtime:
    """One event loop's broker, configuration and attachments; ``close()`` stops them in reverse order."""

    def __init__(
        self,
        *,
        redis_url: str | None = None,
        redis_prefix: str = "stomp:",
        redis_cluster: bool = False,
        redis_linger: float = 0.0,
        broker: Broker | None = None,
        config: Any = None,
    ) -> None:
        """``broker``/``config``: parts a test built itself (default: a new broker, settings read on first use)."""
        self.broker = broker or Broker(
            redis_url=redis_url or None,
            redis_prefix=redis_prefix,
            redis_cluster=redis_cluster,
            redis_linger=redis_linger,
            gap_fill=destinations.stored,
        )
        self._config: Any = config
        self._limits: Any = None
        self._attached: dict[str, Any] = {}
        self.closed = False

    @classmethod
    def from_settings(cls) -> Runtime:
        """A runtime on ``settings.REDIS_URL`` (none: one process, local broker only)."""
        conf = stomp_settings()
        return cls(
            redis_url=conf.redis_url or None,
            redis_prefix=conf.redis_prefix,
            redis_cluster=conf.redis_cluster,
            redis_linger=conf.redis_publish_linger_ms / 1000,
        )

    @property
    def config(self) -> Any:
        """The ``StompConfig`` built from settings on first use (``forget_settings`` reads them again)."""
        if self._config is None:
            from stompengine.connection.config import StompConfig

            self._config = StompConfig.from_settings()
        return self._config

    @property
    def limits(self) -> Any:
        """The ``SendLimits`` built from settings on first use."""
        if self._limits is None:
            from stompengine.realtime.limits import SendLimits

            self._limits = SendLimits.from_settings()
        return self._limits

    def forget_settings(self) -> None:
        """Read the settings again on next use (tests that change STOMP_* settings)."""
        self._config = None
        self._limits = None

    @property
    def commands(self) -> Any:
        """The bus's Redis command connection (a ``redis.asyncio.Redis``), None without Redis.

        Presence, the readiness probe and the per-user budget use it instead of opening clients of their own.
        """
        bridge = self.broker.bridge
        return bridge.commands if bridge is not None else None

    def attach(self, name: str, factory: Callable[[Runtime], T]) -> T:
        """The part called ``name`` of this runtime, built by ``factory(runtime)`` the first time.

        A part with an ``async close()`` (or ``stop()``) is closed with the runtime, last attached first.
        """
        found = self._attached.get(name)
        if found is None:
            found = self._attached[name] = factory(self)
        return found

    def attached(self, name: str) -> Any:
        """The part called ``name`` if it was attached, else None."""
        return self._attached.get(name)

    async def close(self) -> None:
        """Close the attached parts, then the broker (waiting a little for Redis to take what was published)."""
        if self.closed:
            return
        self.closed = True
        for name, part in reversed(list(self._attached.items())):
            stop = getattr(part, "close", None) or getattr(part, "stop", None)
            if stop is None:
                if isinstance(part, asyncio.Task):
                    part.cancel()
                continue
            try:
                result = stop()
                if asyncio.iscoroutine(result):
                    await result
            except Exception:
                logger.exception("closing the runtime part %s failed", name)
        self._attached.clear()
        bridge = self.broker.bridge
        if bridge is not None:
            try:
                async with asyncio.timeout(FLUSH_ON_CLOSE):
                    await bridge.flush()
            except TimeoutError:
                logger.warning("Redis did not take the published messages within %.0f s; they may be lost",
                               FLUSH_ON_CLOSE)  # fmt: skip
        await self.broker.close()


_runtimes: dict[asyncio.AbstractEventLoop, Runtime] = {}


def current() -> Runtime:
    """The runtime of the running event loop, built from settings on first use (the one accessor)."""
    loop = asyncio.get_running_loop()
    found = _runtimes.get(loop)
    if found is None or found.closed:
        for stale in [known for known in _runtimes if known.is_closed()]:
            del _runtimes[stale]
        found = install(Runtime.from_settings())
        _close_with(loop, found)
    return found


def _close_with(loop: asyncio.AbstractEventLoop, built: Runtime) -> None:
    """Close a runtime built on demand when its loop closes (async_to_sync's temporary loops): its Redis
    connections are closed then, not left to the garbage collector."""
    original = loop.close

    def close() -> None:
        if _runtimes.get(loop) is built:
            del _runtimes[loop]
        if not built.closed and not loop.is_running() and not loop.is_closed():
            try:
                loop.run_until_complete(built.close())
            except Exception:
                logger.debug("closing the runtime of a closing event loop failed", exc_info=True)
        original()

    loop.close = close  # type: ignore[method-assign]


def existing() -> Runtime | None:
    """The running loop's runtime if it has one (never builds one)."""
    with contextlib.suppress(RuntimeError):
        return _runtimes.get(asyncio.get_running_loop())
    return None


def install(runtime: Runtime) -> Runtime:
    """Make ``runtime`` the running loop's (server start-up; tests that build their own)."""
    _runtimes[asyncio.get_running_loop()] = runtime
    return runtime


async def uninstall() -> None:
    """Close and forget the running loop's runtime (tests; a temporary loop before it ends)."""
    found = _runtimes.pop(asyncio.get_running_loop(), None)
    if found is not None:
        await found.close()
