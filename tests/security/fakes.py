"""A StompConnection over a recording fake transport and a fake authenticator: limits and fuzz tests, no server."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from django.utils import timezone

from accounts.tokens import TokenRejected
from chat.broker import Broker
from chat.realtime.connection import StompConfig, StompConnection
from chat.realtime.limits import SendLimits
from chat.realtime.registry import DestinationRegistry
from chat.stomp.codec import FrameParser, encode
from chat.stomp.frames import Frame
from chat.stomp.session import SessionLimits
from tests.stomp.fakes import Authenticated, FakeUser

WAIT = 5.0  # upper bound for anything awaited here


class FakeTransport:
    """Records writes as parsed frames; never blocks."""

    def __init__(self) -> None:
        self.frames: list[Frame] = []
        self.closed: int | None = None
        self._parser = FrameParser(max_frame_size=1 << 24)

    async def send(self, data: bytes) -> None:
        self.frames += self._parser.feed(data)

    async def close(self, code: int) -> None:
        self.closed = code

    async def wait_for(self, predicate, what: str) -> None:
        async def poll():
            while not predicate():  # noqa: ASYNC110 - polls what the fake recorded, bounded by WAIT
                await asyncio.sleep(0.005)

        try:
            await asyncio.wait_for(poll(), WAIT)
        except TimeoutError:
            raise AssertionError(f"timed out waiting for {what}; frames: {self.frames}") from None

    def commands(self) -> list[str]:
        return [f.command for f in self.frames]

    def errors(self) -> list[Frame]:
        return [f for f in self.frames if f.command == "ERROR"]

    def queue_errors(self) -> list[Frame]:
        return [f for f in self.frames if f.command == "MESSAGE" and f.get("destination") == "/user/queue/errors"]


USERS = {f"user{n}-token": FakeUser(1000 + n, f"user{n}") for n in range(10)}


async def authenticate(raw: str) -> Authenticated:
    user = USERS.get(raw)
    if user is None:
        raise TokenRejected("token-invalid", "Token is invalid")
    return Authenticated(user, timezone.now() + timedelta(minutes=5))


def config(*, send_limits: SendLimits | None = None, **limits) -> StompConfig:
    session = SessionLimits(heartbeat_send_ms=0, heartbeat_receive_ms=0, **limits)
    return StompConfig(limits=session, server_name="test/1", send_limits=send_limits or SendLimits())


def wire(command: str, body: bytes = b"", **headers: str) -> bytes:
    return encode(Frame(command, tuple((k.replace("_", "-"), v) for k, v in headers.items()), body))


def echo_registry() -> DestinationRegistry:
    """``/app/echo`` accepts anything (a SEND that reaches it gets its RECEIPT)."""
    registry = DestinationRegistry()

    @registry.app("/app/echo")
    async def echo(ctx) -> None:
        return None

    return registry


async def open_connection(
    *, token: str | None = "user0-token", cfg: StompConfig | None = None, broker=None, registry=None
) -> tuple[StompConnection, FakeTransport]:
    """A connection that has sent CONNECT (and got CONNECTED, when ``token`` is valid)."""
    transport = FakeTransport()
    connection = StompConnection(transport, config=cfg or config(), broker=broker or Broker(),
                                 registry=registry or echo_registry(), authenticate=authenticate)  # fmt: skip
    await connection.open()
    if token is not None:
        await connection.data_received(wire("CONNECT", accept_version="1.2", Authorization=f"Bearer {token}"))
        await transport.wait_for(lambda: transport.frames, "CONNECTED or ERROR")
    return connection, transport
