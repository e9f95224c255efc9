"""The sans-IO server session: states, version and heart-beat negotiation, subscriptions, acks, transactions."""

from __future__ import annotations

import pytest

from stompengine.stomp.codec import FrameParser, encode
from stompengine.stomp.errors import ProtocolViolation
from stompengine.stomp.frames import Frame
from stompengine.stomp.heartbeat import Beat, HeartbeatClock, HeartbeatTerms, negotiate_heartbeat, parse_heartbeat
from stompengine.stomp.session import (
    AckMode,
    ConnectionFailed,
    ConnectRequested,
    DisconnectRequested,
    SendRequested,
    ServerSession,
    SessionLimits,
    State,
    SubscribeRequested,
    TransactionCommitted,
    UnsubscribeRequested,
    choose_subprotocol,
)


def wire(command: str, body: bytes = b"", **headers: str) -> bytes:
    return encode(Frame(command, tuple((k.replace("_", "-"), v) for k, v in headers.items()), body))


def replies(session: ServerSession) -> list[Frame]:
    return FrameParser().feed(session.data_to_send())


def events(session: ServerSession, data: bytes) -> list:
    session.receive_data(data)
    out = []
    while (event := session.next_event()) is not None:
        out.append(event)
    return out


def connected(version: str = "1.2", **limits) -> ServerSession:
    session = ServerSession(limits=SessionLimits(**limits))
    [event] = events(session, wire("CONNECT", accept_version=version, host="x"))
    assert isinstance(event, ConnectRequested)
    session.accept(session_id="s1", user_name="alice", server="test/1")
    replies(session)
    return session


def subscribe(session: ServerSession, sub_id: str, destination: str = "/topic/a", ack: str = "auto"):
    [event] = events(session, wire("SUBSCRIBE", id=sub_id, destination=destination, ack=ack))
    assert isinstance(event, SubscribeRequested)
    return session.add_subscription(event)


def error_of(session: ServerSession) -> Frame:
    frames = replies(session)
    assert frames[-1].command == "ERROR", frames
    assert session.state is State.CLOSED
    return frames[-1]


# -- connecting ---------------------------------------------------------------------------------------------


def test_connect_yields_a_request_and_accept_sends_connected():
    session = ServerSession()
    [event] = events(
        session, wire("CONNECT", accept_version="1.1,1.2", heart_beat="5000,20000", Authorization="Bearer t")
    )
    assert event.version == "1.2"
    assert event.authorization == "Bearer t"
    assert session.state is State.AUTHENTICATING
    session.accept(session_id="s1", user_name="alice", server="test/1")
    [reply] = replies(session)
    assert reply.command == "CONNECTED"
    assert dict(reply.headers) == {
        "version": "1.2",
        "heart-beat": "20000,10000",
        "server": "test/1",
        "session": "s1",
        "user-name": "alice",
    }
    assert session.state is State.CONNECTED


def test_stomp_command_works_like_connect():
    session = ServerSession()
    [event] = events(session, wire("STOMP", accept_version="1.2", passcode="jwt"))
    assert event.passcode == "jwt"


def test_frames_pipelined_behind_connect_wait_for_authentication():
    session = ServerSession()
    data = wire("CONNECT", accept_version="1.2") + wire("SEND", b"x", destination="/topic/a")
    assert [type(e) for e in events(session, data)] == [ConnectRequested]
    session.accept(session_id="s", user_name="u", server="x")
    [send] = events(session, b"")
    assert isinstance(send, SendRequested)


def test_frame_before_connect_is_an_error_naming_the_state():
    session = ServerSession()
    [event] = events(session, wire("SEND", destination="/topic/a"))
    assert isinstance(event, ConnectionFailed)
    error = error_of(session)
    assert "awaiting CONNECT" in error.body.decode()


def test_second_connect_is_an_error():
    session = connected()
    [event] = events(session, wire("CONNECT", accept_version="1.2"))
    assert isinstance(event, ConnectionFailed)
    assert "already connected" in error_of(session).body.decode()


def test_unsupported_version_gets_error_with_supported_versions():
    session = ServerSession()
    events(session, wire("CONNECT", accept_version="2.0"))
    error = error_of(session)
    assert error.get("version") == "1.2,1.1,1.0"


def test_missing_accept_version_means_stomp_10():
    session = ServerSession()
    [event] = events(session, wire("CONNECT"))
    assert event.version == "1.0"


@pytest.mark.parametrize(
    ("subprotocol", "accept", "expected"),
    [("v12.stomp", "1.0,1.1,1.2", "1.2"), ("v11.stomp", "1.0,1.1,1.2", "1.1"), ("v10.stomp", None, "1.0"),
     ("v11.stomp", None, "1.1"), (None, "1.1", "1.1")],
)  # fmt: skip
def test_version_negotiation_honours_the_websocket_subprotocol(subprotocol, accept, expected):
    session = ServerSession(subprotocol=subprotocol)
    headers = {"accept_version": accept} if accept else {}
    [event] = events(session, wire("CONNECT", **headers))
    assert event.version == expected


def test_choose_subprotocol_picks_the_best_offered():
    assert choose_subprotocol(["v10.stomp", "v11.stomp", "v12.stomp"]) == "v12.stomp"
    assert choose_subprotocol(["v11.stomp", "chat"]) == "v11.stomp"
    assert choose_subprotocol(["chat"]) is None


def test_malformed_heartbeat_header_is_an_error():
    session = ServerSession()
    events(session, wire("CONNECT", accept_version="1.2", heart_beat="soon"))
    assert "heart-beat" in error_of(session).body.decode()


def test_fail_during_authentication_sends_error_with_code():
    session = ServerSession()
    events(session, wire("CONNECT", accept_version="1.2"))
    session.fail("Unauthorized", "no access token was given", headers=(("code", "unauthorized"),))
    error = error_of(session)
    assert error.get("message") == "Unauthorized"
    assert error.get("code") == "unauthorized"
    assert error.body == b"no access token was given"


def test_codec_error_becomes_an_error_frame():
    session = connected(max_frame_size=1024)
    [event] = events(session, wire("SEND", b"x" * 2000, destination="/a"))
    assert isinstance(event, ConnectionFailed)
    assert error_of(session).get("message") == "frame too large"


def test_unknown_command_becomes_an_error_frame():
    session = connected()
    events(session, b"HELLO\n\n\0")
    assert error_of(session).get("message") == "unknown command"


def test_nothing_is_parsed_after_close():
    session = connected()
    events(session, wire("DISCONNECT"))
    assert events(session, wire("SEND", destination="/a")) == []


# -- heart-beats ------------------------------------------------------------------------------------------------


def test_heartbeat_negotiation_rules():
    assert negotiate_heartbeat((0, 0), (10_000, 10_000)) == HeartbeatTerms(0, 0)
    assert negotiate_heartbeat((5_000, 20_000), (10_000, 10_000)) == HeartbeatTerms(20_000, 10_000)
    assert negotiate_heartbeat((30_000, 1_000), (10_000, 0)) == HeartbeatTerms(10_000, 0)
    assert parse_heartbeat(None) == (0, 0)
    assert parse_heartbeat(" 1 , 2 ") == (1, 2)
    with pytest.raises(ProtocolViolation):
        parse_heartbeat("1;2")


def test_heartbeat_clock_beats_and_times_out():
    clock = HeartbeatClock(HeartbeatTerms(1000, 2000), grace=1.5, now=0.0)
    assert clock.next_deadline() == 1.0
    assert clock.poll(0.5) is Beat.NOTHING
    assert clock.poll(1.0) is Beat.SEND
    clock.sent(1.0)
    clock.received(2.0)
    assert clock.poll(4.9) is Beat.SEND
    clock.sent(4.9)
    assert clock.poll(5.0) is Beat.TIMEOUT


def test_heartbeat_clock_without_terms_never_fires():
    clock = HeartbeatClock(HeartbeatTerms(0, 0), grace=2.0, now=0.0)
    assert clock.next_deadline() is None
    assert clock.poll(1e9) is Beat.NOTHING


# -- send, subscribe, unsubscribe --------------------------------------------------------------------------------


def test_send_strips_reserved_and_credential_headers():
    session = connected()
    [event] = events(
        session,
        wire("SEND", b"hi", destination="/topic/a", receipt="r1", Authorization="Bearer x", custom="1",
             content_type="text/plain"),
    )  # fmt: skip
    assert event.destination == "/topic/a"
    assert event.receipt == "r1"
    assert dict(event.headers) == {"custom": "1", "content-type": "text/plain"}


def test_send_without_destination_is_an_error():
    session = connected()
    events(session, wire("SEND", b"hi"))
    assert "destination" in error_of(session).body.decode()


def test_subscribe_without_id_is_an_error_in_12():
    session = connected()
    events(session, wire("SUBSCRIBE", destination="/topic/a"))
    assert "id" in error_of(session).body.decode()


def test_subscribe_without_id_uses_the_destination_in_10():
    session = connected("1.0")
    [event] = events(session, wire("SUBSCRIBE", destination="/topic/a"))
    assert event.subscription_id == "/topic/a"


def test_duplicate_subscription_id_is_an_error():
    session = connected()
    subscribe(session, "1")
    events(session, wire("SUBSCRIBE", id="1", destination="/topic/b"))
    assert "already in use" in error_of(session).body.decode()


def test_too_many_subscriptions_is_an_error():
    session = connected(max_subscriptions=2)
    subscribe(session, "1")
    subscribe(session, "2")
    events(session, wire("SUBSCRIBE", id="3", destination="/topic/c"))
    assert error_of(session).get("message") == "too many subscriptions"


def test_invalid_ack_mode_is_an_error():
    session = connected()
    events(session, wire("SUBSCRIBE", id="1", destination="/topic/a", ack="sometimes"))
    assert "ack mode" in error_of(session).body.decode()


def test_unsubscribe_returns_the_dropped_subscription():
    session = connected()
    subscription = subscribe(session, "1")
    [event] = events(session, wire("UNSUBSCRIBE", id="1", receipt="r"))
    assert isinstance(event, UnsubscribeRequested)
    assert event.subscription is subscription
    assert session.subscriptions == {}


def test_unsubscribe_unknown_id_is_an_error():
    session = connected()
    events(session, wire("UNSUBSCRIBE", id="nope"))
    assert "no subscription" in error_of(session).body.decode()


def test_receipt_is_queued_when_the_application_finishes():
    session = connected()
    [event] = events(session, wire("SEND", b"x", destination="/topic/a", receipt="r-7"))
    assert replies(session) == []
    session.receipt(event.receipt)
    assert replies(session) == [Frame("RECEIPT", (("receipt-id", "r-7"),))]


def test_error_carries_the_receipt_id_of_the_offending_frame():
    session = connected()
    events(session, wire("UNSUBSCRIBE", id="nope", receipt="r-9"))
    assert error_of(session).get("receipt-id") == "r-9"


# -- acks ----------------------------------------------------------------------------------------------------------


def test_client_individual_ack_settles_one_message():
    session = connected()
    sub = subscribe(session, "1", ack="client-individual")
    first = session.track_delivery(sub, "m1")
    second = session.track_delivery(sub, "m2")
    assert first == b"ack:1\n" and second == b"ack:2\n"
    events(session, wire("ACK", id="2", receipt="r"))
    assert replies(session) == [Frame("RECEIPT", (("receipt-id", "r"),))]
    assert list(sub.pending) == ["1"]


def test_client_ack_is_cumulative():
    session = connected()
    sub = subscribe(session, "1", ack="client")
    for n in range(3):
        session.track_delivery(sub, f"m{n}")
    events(session, wire("ACK", id="2"))
    assert list(sub.pending) == ["3"]


def test_nack_settles_without_cumulating():
    session = connected()
    sub = subscribe(session, "1", ack="client")
    for n in range(3):
        session.track_delivery(sub, f"m{n}")
    events(session, wire("NACK", id="2"))
    assert list(sub.pending) == ["1", "3"]


def test_ack_for_unknown_id_is_an_error():
    session = connected()
    subscribe(session, "1", ack="client")
    events(session, wire("ACK", id="42"))
    assert "unknown" in error_of(session).body.decode()


def test_ack_in_11_uses_message_id_and_subscription():
    session = connected("1.1")
    sub = subscribe(session, "s", ack="client-individual")
    assert session.track_delivery(sub, "m-1") == b""
    events(session, wire("ACK", message_id="m-1", subscription="s"))
    assert sub.pending == {}
    assert session.state is State.CONNECTED


def test_too_many_pending_acks_is_a_violation():
    session = connected(max_pending_acks=2)
    sub = subscribe(session, "1", ack="client")
    session.track_delivery(sub, "a")
    session.track_delivery(sub, "b")
    with pytest.raises(ProtocolViolation):
        session.track_delivery(sub, "c")


# -- transactions -----------------------------------------------------------------------------------------------------


def test_sends_in_a_transaction_come_out_on_commit():
    session = connected()
    out = events(
        session,
        wire("BEGIN", transaction="t", receipt="b")
        + wire("SEND", b"1", destination="/topic/a", transaction="t")
        + wire("SEND", b"2", destination="/topic/a", transaction="t")
        + wire("COMMIT", transaction="t", receipt="c"),
    )
    [commit] = out
    assert isinstance(commit, TransactionCommitted)
    assert [s.body for s in commit.sends] == [b"1", b"2"]
    assert commit.receipt == "c"


def test_abort_drops_the_sends():
    session = connected()
    out = events(
        session,
        wire("BEGIN", transaction="t")
        + wire("SEND", b"1", destination="/topic/a", transaction="t")
        + wire("ABORT", transaction="t", receipt="a"),
    )
    assert out == []
    assert replies(session) == [Frame("RECEIPT", (("receipt-id", "a"),))]
    events(session, wire("COMMIT", transaction="t"))
    assert "not begun" in error_of(session).body.decode()


def test_acks_in_a_transaction_apply_on_commit():
    session = connected()
    sub = subscribe(session, "1", ack="client-individual")
    session.track_delivery(sub, "m")
    events(session, wire("BEGIN", transaction="t") + wire("ACK", id="1", transaction="t"))
    assert list(sub.pending) == ["1"]
    events(session, wire("COMMIT", transaction="t"))
    assert sub.pending == {}


def test_nested_begin_of_the_same_transaction_is_an_error():
    session = connected()
    events(session, wire("BEGIN", transaction="t") + wire("BEGIN", transaction="t"))
    assert "already begun" in error_of(session).body.decode()


def test_send_in_unknown_transaction_is_an_error():
    session = connected()
    events(session, wire("SEND", destination="/topic/a", transaction="zz"))
    assert "not begun" in error_of(session).body.decode()


def test_transaction_frame_limit():
    session = connected(max_transaction_frames=2)
    data = wire("BEGIN", transaction="t") + b"".join(
        wire("SEND", b"x", destination="/topic/a", transaction="t") for _ in range(3)
    )
    events(session, data)
    assert error_of(session).get("message") == "transaction too large"


# -- disconnect -------------------------------------------------------------------------------------------------------


def test_disconnect_sends_receipt_and_closes():
    session = connected()
    subscription = subscribe(session, "1")
    [event] = events(session, wire("DISCONNECT", receipt="bye"))
    assert isinstance(event, DisconnectRequested)
    assert event.subscriptions == (subscription,)
    assert replies(session) == [Frame("RECEIPT", (("receipt-id", "bye"),))]
    assert session.state is State.CLOSED


def test_byte_at_a_time_gives_the_same_events():
    data = wire("CONNECT", accept_version="1.2")
    session = ServerSession()
    out = []
    for i in range(len(data)):
        out += events(session, data[i : i + 1])
    assert [type(e) for e in out] == [ConnectRequested]
    session.accept(session_id="s", user_name="u", server="x")
    stream = wire("SUBSCRIBE", id="1", destination="/topic/a") + wire("SEND", b"x", destination="/topic/a")
    out = []
    for i in range(len(stream)):
        out += events(session, stream[i : i + 1])
        for event in out:
            if isinstance(event, SubscribeRequested) and "1" not in session.subscriptions:
                session.add_subscription(event)
    assert [type(e) for e in out] == [SubscribeRequested, SendRequested]
    assert AckMode.AUTO is out[0].ack


def test_a_subscription_dropped_by_the_server_forgets_its_pending_acks():
    session = connected()
    subscription = subscribe(session, "s1", ack="client-individual")
    session.track_delivery(subscription, "m-1")
    assert subscription.pending
    assert session.drop_subscription("s1") is subscription
    assert "s1" not in session.subscriptions and not subscription.pending
    assert session.drop_subscription("s1") is None
