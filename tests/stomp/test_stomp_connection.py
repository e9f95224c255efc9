"""StompConnection over a fake transport: queueing, coalescing, slow consumers, timers, token expiry, routing."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from django.conf import settings
from django.utils import timezone

from accounts.stomp_auth import JWTAuthenticator
from accounts.tokens import TokenRejected
from stompengine.broker import Broker
from stompengine.broker.destinations import DestinationPolicy
from stompengine.connection import ManualClock, StompConfig, StompConnection
from stompengine.realtime.registry import Denied, DestinationRegistry, Replay
from stompengine.stomp.codec import FrameParser
from stompengine.stomp.frames import Frame
from stompengine.stomp.session import SessionLimits, State
from tests.stomp.fakes import WAIT, Authenticated, FakeTransport, FakeUser, wire

TOKENS = {"alice-token": FakeUser(1, "alice"), "bob-token": FakeUser(2, "bob")}


def make_authenticator(lifetime: timedelta = timedelta(minutes=5)):
    async def authenticate(raw: str) -> Authenticated:
        if raw == "expired":
            raise TokenRejected("token-expired", "Token is expired")
        user = TOKENS.get(raw)
        if user is None:
            raise TokenRejected("token-invalid", "Token is invalid")
        return Authenticated(user, timezone.now() + lifetime)

    return authenticate


def config(**overrides) -> StompConfig:
    limits = overrides.pop("limits", SessionLimits(heartbeat_send_ms=0, heartbeat_receive_ms=0))
    # The project's rules (room topics are the server's to publish), not the engine's bare defaults.
    overrides.setdefault("policy", DestinationPolicy.from_rules(settings.STOMP_DESTINATION_RULES))
    return StompConfig(limits=limits, server_name="test/1", **overrides)


@pytest.fixture
def registry():
    return DestinationRegistry()


@pytest.fixture
def broker():
    return Broker()


async def open_connection(broker, registry, *, token="alice-token", cfg=None, lifetime=timedelta(minutes=5),
                          clock=None):  # fmt: skip
    transport = FakeTransport()
    connection = StompConnection(transport, config=cfg or config(), broker=broker, registry=registry, clock=clock,
                                 authenticator=JWTAuthenticator(make_authenticator(lifetime)))  # fmt: skip
    await connection.open()
    if token is not None:
        await connection.data_received(wire("CONNECT", accept_version="1.2", Authorization=f"Bearer {token}"))
        await transport.wait_for(lambda: transport.frames, "CONNECTED")
        assert transport.frames[0].command == "CONNECTED", transport.frames
    return connection, transport


async def test_connect_sends_connected_with_user_name(broker, registry):
    connection, transport = await open_connection(broker, registry)
    connected = transport.frames[0]
    assert connected.get("user-name") == "alice"
    assert connected.get("session") == connection.session_id
    assert connection.state is State.CONNECTED


async def test_rejected_token_gets_error_with_code_then_close(broker, registry):
    connection, transport = await open_connection(broker, registry, token=None)
    await connection.data_received(wire("CONNECT", accept_version="1.2", passcode="expired"))
    await transport.wait_for(lambda: transport.closed is not None, "close")
    [error] = transport.frames
    assert (error.command, error.get("message"), error.get("code")) == ("ERROR", "Unauthorized", "token-expired")
    assert error.body == b"Token is expired"


async def test_non_bearer_authorization_is_token_invalid(broker, registry):
    connection, transport = await open_connection(broker, registry, token=None)
    await connection.data_received(wire("CONNECT", accept_version="1.2", Authorization="Basic abc"))
    await transport.wait_for(lambda: transport.closed is not None, "close")
    assert transport.frames[0].get("code") == "token-invalid"


async def test_connect_without_any_token_is_unauthorized(broker, registry):
    connection, transport = await open_connection(broker, registry, token=None)
    await connection.data_received(wire("CONNECT", accept_version="1.2"))
    await transport.wait_for(lambda: transport.closed is not None, "close")
    assert transport.frames[0].get("code") == "unauthorized"


async def test_handshake_bearer_authenticates_a_connect_without_token(broker, registry):
    transport = FakeTransport()
    scope = {"handshake_auth": Authenticated(FakeUser(3, "carol"), timezone.now() + timedelta(minutes=1))}
    connection = StompConnection(transport, scope=scope, config=config(), broker=broker, registry=registry,
                                 authenticator=JWTAuthenticator(make_authenticator()))  # fmt: skip
    await connection.data_received(wire("CONNECT", accept_version="1.2"))
    await transport.wait_for(lambda: transport.frames, "CONNECTED")
    assert transport.frames[0].get("user-name") == "carol"


async def test_publish_is_encoded_once_and_spliced_per_subscriber(broker, registry):
    a, ta = await open_connection(broker, registry)
    b, tb = await open_connection(broker, registry, token="bob-token")
    await a.data_received(wire("SUBSCRIBE", id="s-a", destination="/topic/x"))
    await b.data_received(wire("SUBSCRIBE", id="s-b", destination="/topic/x", ack="client-individual"))
    await a.data_received(wire("SEND", b"hello", destination="/topic/x", custom="1", receipt="r"))
    await ta.wait_for(lambda: ta.commands().count("MESSAGE") == 1 and "RECEIPT" in ta.commands(), "a's message")
    await tb.wait_for(lambda: tb.commands().count("MESSAGE") == 1, "b's message")
    ma = next(f for f in ta.frames if f.command == "MESSAGE")
    mb = next(f for f in tb.frames if f.command == "MESSAGE")
    assert ma.get("subscription") == "s-a" and ma.get("ack") is None
    assert mb.get("subscription") == "s-b" and mb.get("ack") == "1"
    assert ma.get("message-id") == mb.get("message-id")
    assert ma.body == mb.body == b"hello"
    assert ma.get("custom") == "1"
    assert ma.get("destination") == "/topic/x"


async def test_queued_frames_are_coalesced_into_fewer_writes(broker, registry):
    connection, transport = await open_connection(broker, registry)
    await connection.data_received(wire("SUBSCRIBE", id="1", destination="/topic/x"))
    await transport.wait_for(lambda: True, "nothing")
    writes_before = len(transport.writes)
    transport.hold()
    for n in range(50):
        broker.publish("/topic/x", f"m{n}")
    transport.release()
    await transport.wait_for(lambda: transport.commands().count("MESSAGE") == 50, "50 messages")
    assert len(transport.writes) - writes_before < 50
    assert [f.body for f in transport.frames if f.command == "MESSAGE"] == [f"m{n}".encode() for n in range(50)]


async def test_slow_consumer_gets_error_and_is_closed_without_affecting_others(broker, registry):
    cfg = config(send_queue_limit=20)
    slow, slow_t = await open_connection(broker, registry, cfg=cfg)
    fast, fast_t = await open_connection(broker, registry, cfg=cfg, token="bob-token")
    for connection in (slow, fast):
        await connection.data_received(wire("SUBSCRIBE", id="1", destination="/topic/x"))
    slow_t.hold()
    for n in range(30):
        broker.publish("/topic/x", f"m{n}")
        await asyncio.sleep(0)  # let the fast connection's writer run
    slow_t.release()
    await slow_t.wait_for(lambda: slow_t.closed is not None, "the slow consumer to be closed")
    assert slow_t.frames[-1].get("message") == "slow consumer"
    await fast_t.wait_for(lambda: fast_t.commands().count("MESSAGE") == 30, "all messages on the fast one")
    assert broker.local.count("/topic/x") == 1


async def test_policy_forbids_sending_to_room_topics(broker, registry):
    connection, transport = await open_connection(broker, registry)
    await connection.data_received(wire("SEND", b"x", destination="/topic/rooms.lobby", receipt="r"))
    await transport.wait_for(lambda: transport.closed is not None, "close")
    error = transport.frames[-1]
    assert (error.get("message"), error.get("code"), error.get("receipt-id")) == ("Forbidden", "forbidden", "r")


async def test_unlisted_destination_is_forbidden(broker, registry):
    connection, transport = await open_connection(broker, registry)
    await connection.data_received(wire("SUBSCRIBE", id="1", destination="/queue/secret"))
    await transport.wait_for(lambda: transport.closed is not None, "close")
    assert transport.frames[-1].get("message") == "Forbidden"


async def test_invalid_destination_name_is_an_error(broker, registry):
    connection, transport = await open_connection(broker, registry)
    await connection.data_received(wire("SUBSCRIBE", id="1", destination="/topic/a b"))
    await transport.wait_for(lambda: transport.closed is not None, "close")
    assert transport.frames[-1].get("message") == "invalid destination"


async def test_app_handler_gets_params_and_receipt_follows_it(broker, registry):
    calls = []

    @registry.app("/app/rooms.{slug}")
    async def handler(ctx, slug):
        calls.append((ctx.user.username, slug, ctx.text, ctx.header("x")))
        broker.publish(f"/topic/rooms.{slug}", ctx.text.upper())

    connection, transport = await open_connection(broker, registry)
    await connection.data_received(wire("SUBSCRIBE", id="1", destination="/topic/rooms.lobby"))
    await connection.data_received(wire("SEND", b"hi", destination="/app/rooms.lobby", x="y", receipt="r"))
    await transport.wait_for(lambda: "RECEIPT" in transport.commands(), "receipt")
    assert calls == [("alice", "lobby", "hi", "y")]
    assert transport.commands()[-2:] == ["MESSAGE", "RECEIPT"]
    assert transport.frames[-2].body == b"HI"


async def test_app_destination_without_handler_is_an_error(broker, registry):
    connection, transport = await open_connection(broker, registry)
    await connection.data_received(wire("SEND", b"hi", destination="/app/nothing"))
    await transport.wait_for(lambda: transport.closed is not None, "close")
    assert transport.frames[-1].get("code") == "not-found"


async def test_handler_denial_and_crash_become_errors(broker, registry):
    @registry.app("/app/deny")
    async def deny(ctx):
        raise Denied("Forbidden", "not you", code="forbidden")

    @registry.app("/app/crash")
    async def crash(ctx):
        raise RuntimeError("boom")

    connection, transport = await open_connection(broker, registry)
    await connection.data_received(wire("SEND", destination="/app/deny"))
    await transport.wait_for(lambda: transport.closed is not None, "close")
    assert transport.frames[-1].body == b"not you"
    connection, transport = await open_connection(broker, registry)
    await connection.data_received(wire("SEND", destination="/app/crash"))
    await transport.wait_for(lambda: transport.closed is not None, "close")
    assert transport.frames[-1].get("message") == "internal error"


async def test_subscription_guard_can_refuse(broker, registry):
    @registry.guard("/topic/rooms.{slug}")
    async def members_only(ctx, slug):
        return slug == "open"

    connection, transport = await open_connection(broker, registry)
    await connection.data_received(wire("SUBSCRIBE", id="1", destination="/topic/rooms.open", receipt="ok"))
    await transport.wait_for(lambda: "RECEIPT" in transport.commands(), "receipt")
    await connection.data_received(wire("SUBSCRIBE", id="2", destination="/topic/rooms.closed", receipt="no"))
    await transport.wait_for(lambda: transport.closed is not None, "close")
    error = transport.frames[-1]
    assert (error.get("message"), error.get("receipt-id")) == ("Forbidden", "no")
    assert broker.local.count("/topic/rooms.open") == 0  # the closed connection detached everything


async def test_user_destinations_reach_every_session_of_that_user_only(broker, registry):
    a1, t1 = await open_connection(broker, registry)
    a2, t2 = await open_connection(broker, registry)
    b, tb = await open_connection(broker, registry, token="bob-token")
    for connection in (a1, a2, b):
        await connection.data_received(wire("SUBSCRIBE", id="u", destination="/user/queue/notes"))
    broker.publish_to_user(1, "/queue/notes", {"n": 1})
    for transport in (t1, t2):
        await transport.wait_for(lambda t=transport: "MESSAGE" in t.commands(), "user message")
        message = transport.frames[-1]
        assert message.get("destination") == "/user/queue/notes"
        assert message.get("content-type") == "application/json"
        assert message.body == b'{"n":1}'
    assert "MESSAGE" not in tb.commands()


async def test_transactions_deliver_on_commit_and_drop_on_abort(broker, registry):
    connection, transport = await open_connection(broker, registry)
    await connection.data_received(wire("SUBSCRIBE", id="1", destination="/topic/t"))
    await connection.data_received(
        wire("BEGIN", transaction="a") + wire("SEND", b"dropped", destination="/topic/t", transaction="a")
        + wire("ABORT", transaction="a")
        + wire("BEGIN", transaction="c") + wire("SEND", b"kept", destination="/topic/t", transaction="c")
    )  # fmt: skip
    assert "MESSAGE" not in transport.commands()
    await connection.data_received(wire("COMMIT", transaction="c", receipt="done"))
    await transport.wait_for(lambda: "RECEIPT" in transport.commands(), "commit receipt")
    assert [f.body for f in transport.frames if f.command == "MESSAGE"] == [b"kept"]


async def test_disconnect_with_receipt_closes_normally(broker, registry):
    connection, transport = await open_connection(broker, registry)
    await connection.data_received(wire("SUBSCRIBE", id="1", destination="/topic/x"))
    await connection.data_received(wire("DISCONNECT", receipt="bye"))
    await transport.wait_for(lambda: transport.closed is not None, "close")
    assert transport.frames[-1] == Frame("RECEIPT", (("receipt-id", "bye"),))
    assert transport.closed == 1000
    assert broker.local.count("/topic/x") == 0


async def test_connect_timeout_closes_a_silent_socket(broker, registry):
    clock = ManualClock()
    _connection, transport = await open_connection(broker, registry, token=None, cfg=config(connect_timeout=0.05),
                                                   clock=clock)  # fmt: skip
    clock.advance(0.05)
    await transport.wait_for(lambda: transport.closed is not None, "close")
    assert transport.frames[-1].get("message") == "connect timeout"


async def test_server_sends_heartbeats_and_drops_a_silent_client(broker, registry):
    clock = ManualClock()
    cfg = config(limits=SessionLimits(heartbeat_send_ms=20, heartbeat_receive_ms=40), heartbeat_grace=1.5)
    connection, transport = await open_connection(broker, registry, token=None, cfg=cfg, clock=clock)
    await connection.data_received(wire("CONNECT", accept_version="1.2", heart_beat="40,20", passcode="alice-token"))
    await transport.wait_for(lambda: transport.frames, "CONNECTED")
    clock.advance(0.02)  # the server's heart-beat is due
    await transport.wait_for(lambda: b"\n" in transport.writes, "a server heart-beat")
    clock.advance(0.05)  # 60 ms of client silence: past 40 ms x grace 1.5
    await transport.wait_for(lambda: transport.closed is not None, "close after missing heart-beats")
    assert transport.frames[0].get("heart-beat") == "20,40"
    assert b"\n" in transport.writes[1:-1]  # at least one server heart-beat before the timeout
    assert transport.frames[-1].get("message") == "heart-beat timeout"


async def test_client_heartbeats_keep_the_connection_alive(broker, registry):
    # Deadline 300 ms x grace 3 = 0.9 s; the client beats every 0.1 s for 2 s, well past the deadline. On a
    # ManualClock: time moves only when the test says so, so a loaded machine cannot make a gap look long.
    clock = ManualClock()
    cfg = config(limits=SessionLimits(heartbeat_send_ms=0, heartbeat_receive_ms=300), heartbeat_grace=3.0)
    connection, transport = await open_connection(broker, registry, token=None, cfg=cfg, clock=clock)
    await connection.data_received(wire("CONNECT", accept_version="1.2", heart_beat="300,0", passcode="alice-token"))
    for _ in range(20):
        clock.advance(0.1)
        await connection.data_received(b"\n")
    assert transport.closed is None
    await connection.data_received(wire("DISCONNECT"))


async def test_token_expiry_closes_with_token_expired(broker, registry):
    clock = ManualClock()
    _connection, transport = await open_connection(broker, registry, lifetime=timedelta(milliseconds=50),
                                                   clock=clock)  # fmt: skip
    clock.advance(0.05)
    await transport.wait_for(lambda: transport.closed is not None, "close at expiry")
    error = transport.frames[-1]
    assert (error.get("message"), error.get("code")) == ("Unauthorized", "token-expired")


async def test_refresh_moves_the_expiry(broker, registry):
    from accounts.stomp_destinations import refresh_token

    registry.register_app("/app/auth.refresh", refresh_token)
    clock = ManualClock()
    connection, transport = await open_connection(broker, registry, lifetime=timedelta(milliseconds=300), clock=clock)
    connection._authenticator = JWTAuthenticator(make_authenticator(timedelta(minutes=5)))
    await connection.data_received(
        wire("SEND", destination="/app/auth.refresh", Authorization="Bearer alice-token", receipt="r")
    )
    await transport.wait_for(lambda: "RECEIPT" in transport.commands(), "refresh receipt")
    clock.advance(0.4)  # past the first token's expiry
    assert transport.closed is None
    await connection.data_received(wire("SEND", destination="/app/auth.refresh", Authorization="Bearer bob-token"))
    await transport.wait_for(lambda: transport.closed is not None, "close")
    assert transport.frames[-1].get("code") == "unauthorized"


async def test_connection_lost_detaches_subscriptions(broker, registry):
    connection, _transport = await open_connection(broker, registry)
    await connection.data_received(wire("SUBSCRIBE", id="1", destination="/topic/x"))
    assert broker.local.count("/topic/x") == 1
    await connection.connection_lost()
    assert broker.local.count("/topic/x") == 0
    broker.publish("/topic/x", "after")


async def test_too_many_unacknowledged_messages_is_an_error(broker, registry):
    cfg = config(limits=SessionLimits(heartbeat_send_ms=0, heartbeat_receive_ms=0, max_pending_acks=3))
    connection, transport = await open_connection(broker, registry, cfg=cfg)
    await connection.data_received(wire("SUBSCRIBE", id="1", destination="/topic/x", ack="client"))
    for n in range(4):
        broker.publish("/topic/x", str(n))
    await transport.wait_for(lambda: transport.closed is not None, "close")
    assert transport.frames[-1].get("message") == "too many unacknowledged messages"


def test_policy_longest_prefix_wins():
    policy = DestinationPolicy.from_rules([("/topic/", "send subscribe"), ("/topic/rooms.", "subscribe")])
    assert policy.allows("send", "/topic/news")
    assert not policy.allows("send", "/topic/rooms.a")
    assert policy.allows("subscribe", "/topic/rooms.a")
    assert not policy.allows("subscribe", "/queue/a")
    with pytest.raises(ValueError):
        DestinationPolicy.from_rules([("/x/", "publish")])


class FakeSockJSSession:
    def __init__(self) -> None:
        self.scope: dict = {}
        self.sent: list[str] = []
        self.closed: tuple[int, str] | None = None

    async def send(self, text: str) -> bool:
        self.sent.append(text)
        return True

    async def close(self, code: int, reason: str) -> None:
        self.closed = (code, reason)


async def test_sockjs_adapter_carries_stomp_as_text(broker, registry, monkeypatch):
    from stompengine import runtime
    from stompengine.realtime.sockjs import StompSockJSHandler

    # this loop's runtime: the test's parts
    runtime.install(runtime.Runtime(broker=broker, config=config(authenticator=JWTAuthenticator(make_authenticator()))))
    session = FakeSockJSSession()
    handler = StompSockJSHandler(session)
    await handler.on_open()
    await handler.on_message(wire("CONNECT", accept_version="1.2", passcode="alice-token").decode())
    await handler.on_message(wire("SUBSCRIBE", id="1", destination="/topic/s", receipt="r").decode())
    broker.publish("/topic/s", "über")
    await handler.on_message(wire("DISCONNECT", receipt="bye").decode())

    async def closed():
        while session.closed is None:  # noqa: ASYNC110 - bounded by WAIT
            await asyncio.sleep(0.005)

    await asyncio.wait_for(closed(), WAIT)
    frames = FrameParser().feed("".join(session.sent).encode())
    assert [f.command for f in frames] == ["CONNECTED", "RECEIPT", "MESSAGE", "RECEIPT"]
    assert frames[2].body == "über".encode()
    assert session.closed == (1000, "Normal closure")
    await handler.on_close()
    assert broker.local.count("/topic/s") == 0


async def test_a_replay_boundary_drops_live_copies_of_what_it_covered_then_and_later(broker, registry):
    release = asyncio.Event()

    @registry.replay("/topic/log.{name}")
    async def replay(ctx, name):
        await release.wait()  # live messages arrive while the replay is being fetched
        return Replay(messages=[({"n": 4}, {}), ({"n": 5}, {})], after_seq=5)

    connection, transport = await open_connection(broker, registry)
    subscribing = asyncio.create_task(
        connection.data_received(wire("SUBSCRIBE", id="1", destination="/topic/log.a", receipt="sub"))
    )
    await transport.wait_for(lambda: broker.local.count("/topic/log.a") == 1, "the subscription to be live")
    broker.publish("/topic/log.a", {"n": 5}, seq=5, prev=4)  # held meanwhile; the replay has it
    broker.publish("/topic/log.a", {"n": 6}, seq=6, prev=5)  # held meanwhile; newer than the replay
    release.set()
    await asyncio.wait_for(subscribing, WAIT)
    await transport.wait_for(lambda: "RECEIPT" in transport.commands(), "the receipt")
    broker.publish("/topic/log.a", {"n": 5}, seq=5, prev=4)  # a copy published late by a slower process
    broker.publish("/topic/log.a", {"n": 7}, seq=7, prev=6)
    await transport.wait_for(lambda: b'{"n":7}' in [f.body for f in transport.frames], "message 7")
    assert [f.body for f in transport.frames if f.command == "MESSAGE"] == [
        b'{"n":4}',
        b'{"n":5}',
        b'{"n":6}',
        b'{"n":7}',
    ]
