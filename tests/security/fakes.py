"""A StompConnection over a recording fake transport and a fake authenticator: limits and fuzz tests, no server."""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone

from accounts.stomp_auth import JWTAuthenticator
from accounts.tokens import TokenRejected
from stompengine.broker import Broker
from stompengine.connection import StompConfig, StompConnection
from stompengine.realtime.limits import SendLimits
from stompengine.realtime.registry import DestinationRegistry
from stompengine.stomp.session import SessionLimits
from tests.stomp.fakes import Authenticated, FakeTransport, FakeUser, wire

USERS = {f"user{n}-token": FakeUser(1000 + n, f"user{n}") for n in range(10)}


async def authenticate(raw: str) -> Authenticated:
    user = USERS.get(raw)
    if user is None:
        raise TokenRejected("token-invalid", "Token is invalid")
    return Authenticated(user, timezone.now() + timedelta(minutes=5))


def config(*, send_limits: SendLimits | None = None, **limits) -> StompConfig:
    session = SessionLimits(heartbeat_send_ms=0, heartbeat_receive_ms=0, **limits)
    return StompConfig(limits=session, server_name="test/1", send_limits=send_limits or SendLimits())


def echo_registry() -> DestinationRegistry:
    """``/app/echo`` accepts anything (a SEND that reaches it gets its RECEIPT)."""
    registry = DestinationRegistry()

    @registry.app("/app/echo")
    async def echo(ctx) -> None:
        return None

    return registry


async def open_connection(
    *,
    token: str | None = "user0-token",
    cfg: StompConfig | None = None,
    broker=None,
    registry=None,
    transport: FakeTransport | None = None,
) -> tuple[StompConnection, FakeTransport]:
    """A connection that has sent CONNECT (and got CONNECTED, when ``token`` is valid)."""
    transport = transport or FakeTransport()
    connection = StompConnection(transport, config=cfg or config(), broker=broker or Broker(),
                                 registry=registry or echo_registry(),
                                 authenticator=JWTAuthenticator(authenticate))  # fmt: skip
    await connection.open()
    if token is not None:
        await connection.data_received(wire("CONNECT", accept_version="1.2", Authorization=f"Bearer {token}"))
        await transport.wait_for(lambda: transport.frames, "CONNECTED or ERROR")
    return connection, transport
