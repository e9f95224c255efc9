"""A connection's timers on a ManualClock: CONNECT timeout, heart-beats, token expiry, without sleeping.

No server and no wall-clock waits: time moves when the test calls ``clock.advance``; ``wait_for`` only
lets the connection's write task run (it polls what the fake transport recorded).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from stompengine.auth import AuthenticationFailed, Principal
from stompengine.broker import Broker
from stompengine.connection import ManualClock, StompConfig, StompConnection
from stompengine.realtime.registry import DestinationRegistry, SendContext
from stompengine.stomp.session import SessionLimits
from tests.stomp.fakes import FakeTransport, FakeUser, wire


class TokenTable:
    """An authenticator over a dict: ``passcode`` or ``authorization`` names a user; ``lifetime`` per token."""

    def __init__(self, lifetime: timedelta | None = timedelta(minutes=5)) -> None:
        self.users = {"alice": FakeUser(1, "alice"), "alice-2": FakeUser(1, "alice"), "bob": FakeUser(2, "bob")}
        self.lifetime = lifetime
        self.calls: list[dict[str, str]] = []

    async def authenticate(self, headers: Mapping[str, str], scope: Mapping[str, Any]) -> Principal:
        self.calls.append(dict(headers))
        token = headers.get("passcode") or (headers.get("authorization") or "").removeprefix("Bearer ")
        user = self.users.get(token)
        if user is None:
            raise AuthenticationFailed("token-invalid", "no such token")
        expires = None if self.lifetime is None else datetime.now(UTC) + self.lifetime
        return Principal(user=user, user_id=user.pk, expires_at=expires)


def config(**overrides: Any) -> StompConfig:
    limits = overrides.pop("limits", SessionLimits(heartbeat_send_ms=0, heartbeat_receive_ms=0))
    return StompConfig(limits=limits, server_name="test/1", **overrides)


async def open_on(clock: ManualClock, cfg: StompConfig, authenticator: TokenTable, registry=None):
    transport = FakeTransport()
    connection = StompConnection(transport, config=cfg, broker=Broker(), registry=registry or DestinationRegistry(),
                                 clock=clock, authenticator=authenticator)  # fmt: skip
    await connection.open()
    return connection, transport


async def test_connect_timeout_fires_when_the_clock_passes_it_and_not_before():
    clock = ManualClock()
    _connection, transport = await open_on(clock, config(connect_timeout=10.0), TokenTable())
    clock.advance(9.9)
    assert clock.pending() == 1 and transport.closed is None
    clock.advance(0.2)
    await transport.wait_for(lambda: transport.closed is not None, "close")
    assert transport.frames[-1].get("message") == "connect timeout"


async def test_connect_in_time_cancels_the_connect_timeout():
    clock = ManualClock()
    connection, transport = await open_on(clock, config(connect_timeout=10.0), TokenTable(lifetime=None))
    await connection.data_received(wire("CONNECT", accept_version="1.2", passcode="alice"))
    await transport.wait_for(lambda: transport.frames, "CONNECTED")
    clock.advance(3600)
    assert clock.pending() == 0
    assert transport.commands() == ["CONNECTED"] and transport.closed is None


async def test_server_heartbeats_go_out_on_the_clock_and_a_silent_client_times_out():
    clock = ManualClock()
    cfg = config(limits=SessionLimits(heartbeat_send_ms=1000, heartbeat_receive_ms=2000), heartbeat_grace=1.5)
    connection, transport = await open_on(clock, cfg, TokenTable())
    await connection.data_received(wire("CONNECT", accept_version="1.2", heart_beat="2000,1000", passcode="alice"))
    await transport.wait_for(lambda: transport.frames, "CONNECTED")
    assert transport.frames[0].get("heart-beat") == "1000,2000"
    clock.advance(1.0)
    await transport.wait_for(lambda: b"\n" in transport.writes, "a server heart-beat")
    assert transport.closed is None
    await connection.data_received(b"\n")  # the client beats once: its deadline moves
    clock.advance(2.5)
    assert transport.closed is None
    clock.advance(1.0)  # 3.5 s of silence > 2 s x grace 1.5
    await transport.wait_for(lambda: transport.closed is not None, "close")
    assert transport.frames[-1].get("message") == "heart-beat timeout"


async def test_token_expiry_closes_with_token_expired_at_the_principals_expiry():
    clock = ManualClock()
    connection, transport = await open_on(clock, config(), TokenTable(lifetime=timedelta(minutes=5)))
    await connection.data_received(wire("CONNECT", accept_version="1.2", passcode="alice"))
    await transport.wait_for(lambda: transport.frames, "CONNECTED")
    clock.advance(290)
    assert transport.closed is None
    clock.advance(20)
    await transport.wait_for(lambda: transport.closed is not None, "close at expiry")
    assert (transport.frames[-1].get("message"), transport.frames[-1].get("code")) == ("Unauthorized", "token-expired")


async def test_reauthentication_goes_through_the_authenticator_and_moves_the_expiry():
    clock = ManualClock()
    registry = DestinationRegistry()

    @registry.app("/app/refresh")
    async def refresh(ctx: SendContext) -> None:
        await ctx.reauthenticate({"passcode": ctx.text})

    authenticator = TokenTable(lifetime=timedelta(seconds=60))
    connection, transport = await open_on(clock, config(), authenticator, registry)
    await connection.data_received(wire("CONNECT", accept_version="1.2", passcode="alice"))
    clock.advance(50)
    authenticator.lifetime = timedelta(seconds=600)
    await connection.data_received(wire("SEND", b"alice-2", destination="/app/refresh", receipt="r"))
    await transport.wait_for(lambda: "RECEIPT" in transport.commands(), "refresh receipt")
    assert authenticator.calls[-1] == {"passcode": "alice-2"}
    clock.advance(100)  # past the first credential's expiry
    assert transport.closed is None
    await connection.data_received(wire("SEND", b"bob", destination="/app/refresh"))
    await transport.wait_for(lambda: transport.closed is not None, "close")
    assert transport.frames[-1].get("code") == "unauthorized"


async def test_a_refused_connect_carries_the_authenticators_code():
    clock = ManualClock()
    connection, transport = await open_on(clock, config(), TokenTable())
    await connection.data_received(wire("CONNECT", accept_version="1.2", passcode="mallory"))
    await transport.wait_for(lambda: transport.closed is not None, "close")
    error = transport.frames[-1]
    assert (error.command, error.get("message"), error.get("code")) == ("ERROR", "Unauthorized", "token-invalid")
    assert error.body == b"no such token"


def test_manual_clock_runs_due_timers_in_order_and_skips_cancelled_ones():
    clock = ManualClock(start=0.0)
    fired: list[str] = []
    clock.call_later(2.0, lambda: fired.append("b"))
    clock.call_later(1.0, lambda: fired.append("a"))
    clock.call_later(1.5, lambda: fired.append("x")).cancel()
    clock.advance(1.0)
    assert fired == ["a"] and clock.time() == 1.0
    clock.advance(5.0)
    assert fired == ["a", "b"] and clock.time() == 6.0 and clock.pending() == 0


@pytest.mark.parametrize("path", ["", None])
def test_no_authenticator_configured_refuses_every_connect(path):
    import asyncio

    from stompengine.auth import NoAuthenticator, load_authenticator

    authenticator = load_authenticator(path)
    assert isinstance(authenticator, NoAuthenticator)
    with pytest.raises(AuthenticationFailed):
        asyncio.run(authenticator.authenticate({}, {}))


def test_load_authenticator_instantiates_a_class_and_refuses_what_cannot_authenticate():
    from stompengine.auth import load_authenticator

    assert type(load_authenticator("accounts.stomp_auth.JWTAuthenticator")).__name__ == "JWTAuthenticator"
    with pytest.raises(TypeError, match="authenticate"):
        load_authenticator("datetime.timedelta")


def test_a_heartbeat_polled_at_its_own_deadline_is_due_despite_rounding():
    from stompengine.stomp.heartbeat import Beat, HeartbeatClock, HeartbeatTerms

    clock = HeartbeatClock(HeartbeatTerms(send_ms=20, receive_ms=40), grace=1.5, now=1000.0)
    deadline = clock.next_deadline()
    assert deadline is not None and clock.poll(deadline) is Beat.SEND  # 1000.0 + 0.02 - 1000.0 < 0.02
    clock.sent(deadline)
    clock.sent(clock.next_deadline() or 0.0)
    assert clock.poll(clock.next_deadline() or 0.0) is Beat.TIMEOUT


async def test_a_client_is_not_timed_out_while_its_connection_is_still_handling_an_earlier_frame():
    # A reconnect storm: a SUBSCRIBE's guard waits on a busy database longer than the heart-beat grace. The
    # client's heart-beats sit unread behind that frame; the connection must not call the client silent.
    clock = ManualClock()
    release = asyncio.Event()
    registry = DestinationRegistry()

    @registry.guard("/topic/slow")
    async def slow(ctx) -> None:
        await release.wait()

    cfg = config(limits=SessionLimits(heartbeat_send_ms=1000, heartbeat_receive_ms=2000), heartbeat_grace=1.5)
    connection, transport = await open_on(clock, cfg, TokenTable(), registry)
    await connection.data_received(wire("CONNECT", accept_version="1.2", heart_beat="2000,1000", passcode="alice"))
    await transport.wait_for(lambda: transport.frames, "CONNECTED")
    handling = asyncio.ensure_future(connection.data_received(wire("SUBSCRIBE", id="s", destination="/topic/slow",
                                                                   receipt="r")))  # fmt: skip
    await asyncio.sleep(0)
    clock.advance(10.0)  # far past 2 s x 1.5 of silence, but the SUBSCRIBE is still being handled
    assert transport.closed is None
    release.set()
    await handling
    await transport.wait_for(lambda: "RECEIPT" in transport.commands(), "the RECEIPT")
    clock.advance(3.5)  # now really silent
    await transport.wait_for(lambda: transport.closed is not None, "close")
    assert transport.frames[-1].get("message") == "heart-beat timeout"
