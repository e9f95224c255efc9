"""The engine's settings: one frozen dataclass whose field defaults are THE defaults, read from Django once.

A project sets any of the flat Django settings below (``STOMP_MAX_FRAME_SIZE = 131072`` in its settings
module) and leaves the rest alone; the engine reads them only through ``stomp_settings()``, which builds
one ``StompSettings`` on first use and again after a test changes a setting (Django's
``setting_changed``). Each field's Django setting is ``STOMP_`` plus its name in capitals, except the two
the engine shares with the project (``REDIS_URL``, ``METRICS_ENABLED``). A value of the wrong type or
below its minimum raises ``ImproperlyConfigured`` naming the setting; the engine's AppConfig reads the
settings in ``ready()``, so such a value stops ``manage.py`` and the ASGI server at start-up.

This module imports nothing from Django at import time: the sans-IO core takes its defaults from here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any, NoReturn

if TYPE_CHECKING:
    from stompengine.realtime.limits import SendLimits
    from stompengine.stomp.session import SessionLimits

__all__ = ["DEFAULTS", "StompSettings", "setting_name", "stomp_settings"]

#: Which destinations clients may SEND to / SUBSCRIBE to (longest matching prefix decides; unmatched: refused).
DEFAULT_DESTINATION_RULES: tuple[tuple[str, str], ...] = (
    ("/topic/", "send subscribe"),
    ("/app/", "send"),
    ("/user/queue/", "subscribe"),
)


def _setting(default: Any, *, minimum: float | None = None, name: str | None = None) -> Any:
    """A field with its default, its lowest allowed value and (when not ``STOMP_<FIELD>``) its setting's name."""
    return dataclasses.field(default=default, metadata={"minimum": minimum, "setting": name})


@dataclass(frozen=True)
class StompSettings:
    """Every setting of the engine; ``StompSettings()`` is the engine with its defaults."""

    # Announced in CONNECTED's ``server`` header.
    server_name: str = _setting("stompengine/1.0")
    # Codec and session core (per connection).
    max_frame_size: int = _setting(64 * 1024, minimum=1024)
    max_headers: int = _setting(64, minimum=8)
    max_header_length: int = _setting(8 * 1024, minimum=256)
    max_subscriptions: int = _setting(256, minimum=1)
    max_transactions: int = _setting(16, minimum=1)
    max_transaction_frames: int = _setting(1000, minimum=1)
    # Bodies buffered in open transactions, all together: frames x transactions x frame size would be 1 GiB.
    max_transaction_bytes: int = _setting(1024 * 1024, minimum=1024)
    max_pending_acks: int = _setting(10_000, minimum=16)
    # What CONNECTED offers (ms the server can send, ms it wants) and the grace before a silent client is dropped.
    heartbeat_send_ms: int = _setting(10_000, minimum=0)
    heartbeat_receive_ms: int = _setting(10_000, minimum=0)
    heartbeat_grace: float = _setting(2.0, minimum=1.0)
    # Seconds a socket has to send an accepted CONNECT.
    connect_timeout: float = _setting(10.0, minimum=0.1)
    # Outbound: frames and bytes queued for one connection (past them: slow consumer), replays in flight.
    send_queue_limit: int = _setting(10_000, minimum=16)
    max_unsent_bytes: int = _setting(2 * 1024 * 1024, minimum=0)
    max_replays: int = _setting(4, minimum=0)
    replay_wait: float = _setting(30.0, minimum=0.1)
    coalesce_bytes: int = _setting(64 * 1024, minimum=0)
    # SENDs of one connection whose slow end (a write) may run while its next frames are read.
    send_pipeline: int = _setting(16, minimum=1)
    # Abuse limits (stompengine.realtime.limits); 0 turns one off.
    max_body_size: int = _setting(32 * 1024, minimum=0)
    max_connections_per_user: int = _setting(50, minimum=0)
    send_rate: float = _setting(500.0, minimum=0.0)
    send_burst: int = _setting(1000, minimum=1)
    send_abuse_limit: int = _setting(1000, minimum=0)
    subscribe_cost: float = _setting(5.0, minimum=0.0)
    user_send_rate: float = _setting(20.0, minimum=0.0)
    user_send_burst: int = _setting(100, minimum=1)
    user_budget_sync: float = _setting(1.0, minimum=0.05)
    # CONNECTs this process admits per second (and burst) before refusing with ERROR code:busy and a
    # retry-after: a reconnect storm is served at this pace instead of piling up on the credential check.
    connect_rate: float = _setting(500.0, minimum=0.0)
    connect_burst: int = _setting(1000, minimum=1)
    # Seconds a SEND in progress may take to finish on SIGTERM before every connection gets ERROR code:shutdown.
    shutdown_grace: float = _setting(5.0, minimum=0.1)
    # Cross-process: the Redis the broker and the per-user budgets use ("": one process), and its key prefix.
    redis_url: str = _setting("", name="REDIS_URL")
    redis_prefix: str = _setting("stomp:")
    # REDIS_URL names a node of a Redis Cluster: sharded pub/sub (SSUBSCRIBE/SPUBLISH on each channel's shard).
    # (The project sets STOMP_REDIS_CLUSTER from its REDIS_CLUSTER environment variable.)
    redis_cluster: bool = _setting(False)
    # Milliseconds the bus's PUBLISH writer waits, when it wakes to a short queue, for more messages to share
    # the write (0: none). Each batch costs a write and a reply here and a read in every subscribed process,
    # so messages a moment apart are cheaper together; a message's delivery waits at most this much longer.
    redis_publish_linger_ms: float = _setting(1.0, minimum=0.0)
    destination_rules: tuple[tuple[str, str], ...] = _setting(DEFAULT_DESTINATION_RULES)
    # Modules imported at start-up besides every installed app's ``stomp_destinations``.
    handler_modules: tuple[str, ...] = _setting(())
    # Dotted path of the object (or class) whose ``async authenticate(connect_headers, scope)`` returns the
    # principal of a CONNECT ("": none configured).
    authenticator: str = _setting("")
    # Prometheus metrics (stompengine.metrics); False: every hook is a no-op.
    metrics_enabled: bool = _setting(True, name="METRICS_ENABLED")

    def __post_init__(self) -> None:
        for spec in fields(self):
            object.__setattr__(self, spec.name, _checked(spec, getattr(self, spec.name)))

    @classmethod
    def from_django(cls) -> StompSettings:
        """Read the project's Django settings; a setting it does not define keeps its default."""
        from django.conf import settings

        given = {}
        for spec in fields(cls):
            name = setting_name(spec)
            if hasattr(settings, name):
                given[spec.name] = getattr(settings, name)
        return cls(**given)

    def session_limits(self) -> SessionLimits:
        """The per-connection limits of the sans-IO session core."""
        from stompengine.stomp.session import SessionLimits

        return SessionLimits(
            max_frame_size=self.max_frame_size,
            max_headers=self.max_headers,
            max_header_length=self.max_header_length,
            max_subscriptions=self.max_subscriptions,
            max_transactions=self.max_transactions,
            max_transaction_frames=self.max_transaction_frames,
            max_transaction_bytes=self.max_transaction_bytes,
            max_pending_acks=self.max_pending_acks,
            heartbeat_send_ms=self.heartbeat_send_ms,
            heartbeat_receive_ms=self.heartbeat_receive_ms,
        )

    def send_limits(self) -> SendLimits:
        """The abuse limits of one process (``stompengine.realtime.limits``)."""
        from stompengine.realtime.limits import SendLimits

        return SendLimits(
            max_body_size=self.max_body_size,
            max_connections_per_user=self.max_connections_per_user,
            send_rate=self.send_rate,
            send_burst=self.send_burst,
            abuse_limit=self.send_abuse_limit,
            subscribe_cost=self.subscribe_cost,
            user_send_rate=self.user_send_rate,
            user_send_burst=self.user_send_burst,
            user_budget_sync=self.user_budget_sync,
            connect_rate=self.connect_rate,
            connect_burst=self.connect_burst,
        )

    @property
    def websocket_max_message_size(self) -> int:
        """The WebSocket message limit the frame limit implies: room for SockJS's JSON escaping and a few frames."""
        return 2 * self.max_frame_size + 4096


def setting_name(spec: dataclasses.Field[Any]) -> str:
    """The Django setting behind a field of ``StompSettings``."""
    return spec.metadata.get("setting") or f"STOMP_{spec.name.upper()}"


def _checked(spec: dataclasses.Field[Any], value: Any) -> Any:
    """``value`` in the field's type (sequences frozen to tuples), or ImproperlyConfigured naming the setting."""
    default: Any = spec.default  # every field has one (dataclasses types it as possibly MISSING)
    kind, name, minimum = type(default), setting_name(spec), spec.metadata.get("minimum")
    if kind is bool:
        ok = isinstance(value, bool)
    elif kind is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif kind is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif kind is str:
        ok = isinstance(value, str)
    else:  # a tuple: of strings (modules) or of (prefix, permissions) pairs (rules)
        ok = isinstance(value, Sequence) and not isinstance(value, str)
        if ok:
            value = tuple(tuple(item) if isinstance(item, list | tuple) else item for item in value)
    if not ok:
        _refuse(f"{name}={value!r} is not a {kind.__name__}")
    if minimum is not None and value < minimum:
        _refuse(f"{name}={value} is below its minimum of {minimum}")
    return value


def _refuse(message: str) -> NoReturn:
    from django.core.exceptions import ImproperlyConfigured

    raise ImproperlyConfigured(message)


#: The engine's defaults, for code that needs one without Django (the sans-IO core, tests).
DEFAULTS = StompSettings()
_current: StompSettings | None = None


def stomp_settings() -> StompSettings:
    """The engine's settings, read from Django once (and again after ``setting_changed``)."""
    global _current
    current = _current
    if current is None:
        from django.core.signals import setting_changed

        setting_changed.connect(_forget, dispatch_uid="stompengine.conf")
        current = _current = StompSettings.from_django()
    return current


def _forget(*, setting: str, **kwargs: Any) -> None:
    """A test changed a setting: read them all again on next use."""
    global _current
    if setting in _NAMES:
        _current = None


_NAMES = frozenset(setting_name(spec) for spec in fields(StompSettings))
