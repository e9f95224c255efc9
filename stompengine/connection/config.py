"""What a connection needs from settings (``StompConfig``), read once per process."""

from __future__ import annotations

from dataclasses import dataclass, field

from stompengine.auth import Authenticator, NoAuthenticator, load_authenticator
from stompengine.broker.destinations import DestinationPolicy
from stompengine.conf import StompSettings, stomp_settings
from stompengine.realtime.limits import SendLimits, UserSendBudget, default_limits, user_send_budget
from stompengine.stomp.session import SessionLimits

_DEFAULTS = StompSettings()  # the engine's defaults live in stompengine.conf only


@dataclass(frozen=True)
class StompConfig:
    """Everything a connection needs from settings, read once per runtime."""

    limits: SessionLimits = field(default_factory=_DEFAULTS.session_limits)
    server_name: str = _DEFAULTS.server_name
    heartbeat_grace: float = _DEFAULTS.heartbeat_grace
    connect_timeout: float = _DEFAULTS.connect_timeout
    send_queue_limit: int = _DEFAULTS.send_queue_limit
    max_unsent_bytes: int = _DEFAULTS.max_unsent_bytes
    max_replays: int = _DEFAULTS.max_replays
    replay_wait: float = _DEFAULTS.replay_wait
    coalesce_bytes: int = _DEFAULTS.coalesce_bytes
    # SENDs of one connection whose slow end (a write) may run while later frames are read.
    send_pipeline: int = _DEFAULTS.send_pipeline
    send_limits: SendLimits = field(default_factory=_DEFAULTS.send_limits)
    # Shared by every connection with this config (settings: the process's, reconciled through Redis).
    user_budget: UserSendBudget = field(default_factory=UserSendBudget)
    policy: DestinationPolicy = field(default_factory=lambda: DestinationPolicy.from_rules(_DEFAULTS.destination_rules))
    #: Checks CONNECT credentials (settings.STOMP_AUTHENTICATOR); the default refuses everyone.
    authenticator: Authenticator = field(default_factory=NoAuthenticator)

    @classmethod
    def from_settings(cls) -> StompConfig:
        """Build from the STOMP_* settings (``stompengine.conf``)."""
        conf = stomp_settings()
        return cls(
            limits=conf.session_limits(),
            server_name=conf.server_name,
            heartbeat_grace=conf.heartbeat_grace,
            connect_timeout=conf.connect_timeout,
            send_queue_limit=conf.send_queue_limit,
            max_unsent_bytes=conf.max_unsent_bytes,
            max_replays=conf.max_replays,
            replay_wait=conf.replay_wait,
            coalesce_bytes=conf.coalesce_bytes,
            send_pipeline=conf.send_pipeline,
            policy=DestinationPolicy.from_rules(conf.destination_rules),
            send_limits=default_limits(),
            user_budget=user_send_budget,
            authenticator=load_authenticator(conf.authenticator or None),
        )


def default_config() -> StompConfig:
    """The StompConfig of the running loop's runtime (built from settings on first use)."""
    from stompengine import runtime as runtimes

    config: StompConfig = runtimes.current().config
    return config


def reset_config() -> None:
    """Read the settings again on next use (tests that change STOMP_* settings)."""
    from stompengine import runtime as runtimes

    found = runtimes.existing()
    if found is not None:
        found.forget_settings()
