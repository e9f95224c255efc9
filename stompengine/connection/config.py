"""What a connection needs from settings (``StompConfig``), read once per process."""

from __future__ import annotations

from dataclasses import dataclass, field

from stompengine.auth import Authenticator, NoAuthenticator, load_authenticator
from stompengine.broker.destinations import DestinationPolicy
from stompengine.realtime.limits import SendLimits, UserSendBudget, default_limits, user_send_budget
from stompengine.stomp.session import SessionLimits


@dataclass(frozen=True)
class StompConfig:
    """Everything a connection needs from settings, read once per process."""

    limits: SessionLimits = field(default_factory=SessionLimits)
    server_name: str = "chatproject/1.0"
    heartbeat_grace: float = 2.0
    connect_timeout: float = 10.0
    send_queue_limit: int = 10_000
    max_unsent_bytes: int = 2 * 1024 * 1024
    max_replays: int = 4
    replay_wait: float = 30.0
    coalesce_bytes: int = 64 * 1024
    send_pipeline: int = 16  # SENDs of one connection whose slow end (a write) may run while later frames are read
    send_limits: SendLimits = field(default_factory=SendLimits)
    # Shared by every connection with this config (settings: the process's, reconciled through Redis).
    user_budget: UserSendBudget = field(default_factory=UserSendBudget)
    policy: DestinationPolicy = field(
        default_factory=lambda: DestinationPolicy.from_rules(
            [("/topic/", "send subscribe"), ("/topic/rooms.", "subscribe"), ("/app/", "send"),
             ("/user/queue/", "subscribe")]
        )
    )  # fmt: skip
    #: Checks CONNECT credentials (settings.STOMP_AUTHENTICATOR); the default refuses everyone.
    authenticator: Authenticator = field(default_factory=NoAuthenticator)

    @classmethod
    def from_settings(cls) -> StompConfig:
        """Build from the STOMP_* settings."""
        from django.conf import settings

        return cls(
            limits=SessionLimits(
                max_frame_size=settings.STOMP_MAX_FRAME_SIZE,
                max_headers=settings.STOMP_MAX_HEADERS,
                max_header_length=settings.STOMP_MAX_HEADER_LENGTH,
                max_subscriptions=settings.STOMP_MAX_SUBSCRIPTIONS,
                max_transactions=settings.STOMP_MAX_TRANSACTIONS,
                max_transaction_frames=settings.STOMP_MAX_TRANSACTION_FRAMES,
                max_transaction_bytes=settings.STOMP_MAX_TRANSACTION_BYTES,
                max_pending_acks=settings.STOMP_MAX_PENDING_ACKS,
                heartbeat_send_ms=settings.STOMP_HEARTBEAT_SEND_MS,
                heartbeat_receive_ms=settings.STOMP_HEARTBEAT_RECEIVE_MS,
            ),
            server_name=settings.STOMP_SERVER_NAME,
            heartbeat_grace=settings.STOMP_HEARTBEAT_GRACE,
            connect_timeout=settings.STOMP_CONNECT_TIMEOUT,
            send_queue_limit=settings.STOMP_SEND_QUEUE_LIMIT,
            max_unsent_bytes=settings.STOMP_MAX_UNSENT_BYTES,
            max_replays=settings.STOMP_MAX_REPLAYS,
            replay_wait=settings.STOMP_REPLAY_WAIT,
            coalesce_bytes=settings.STOMP_COALESCE_BYTES,
            send_pipeline=settings.STOMP_SEND_PIPELINE,
            policy=DestinationPolicy.from_rules(settings.STOMP_DESTINATION_RULES),
            send_limits=default_limits(),
            user_budget=user_send_budget,
            authenticator=load_authenticator(getattr(settings, "STOMP_AUTHENTICATOR", None)),
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
