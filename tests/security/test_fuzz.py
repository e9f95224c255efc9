"""Hypothesis fuzzing of every input a client controls: STOMP bytes into a live StompConnection, SockJS JSON
framing, the SSE Last-Event-ID and ticket, and REST bodies and query parameters.

The property each time: a clear error for that input (an ERROR frame and a close, a 4xx, a PayloadError),
never an exception escaping, never an internal error, and other connections unaffected.
"""

from __future__ import annotations

import asyncio
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sockjs.protocol import PayloadError, decode_jsonp_send, decode_websocket, decode_xhr_send
from stompengine.broker import Broker
from stompengine.stomp.codec import encode
from stompengine.stomp.frames import Frame
from tests.security.fakes import config, open_connection, wire

COMMANDS = ["CONNECT", "STOMP", "SEND", "SUBSCRIBE", "UNSUBSCRIBE", "ACK", "NACK", "BEGIN", "COMMIT", "ABORT",
            "DISCONNECT", "MESSAGE", "BOGUS", "send", ""]  # fmt: skip
HEADER_NAMES = ["destination", "id", "receipt", "transaction", "ack", "content-length", "content-type", "since-id",
                "accept-version", "heart-beat", "x\x00y", "", "a:b"]  # fmt: skip
header_values = st.one_of(
    st.sampled_from(["/app/echo", "/topic/t", "/user/queue/errors", "/topic/rooms.x", "s1", "t1", "client", "0", "-1",
                     "99999999999999999999", "1.2", "0,0", "/app/../x"]),
    st.text(max_size=40),
)  # fmt: skip
frames = st.builds(
    lambda command, headers, body: (
        encode(Frame(command or "SEND", tuple(headers), body)) if command else b"\x00garbage\n"
    ),
    st.sampled_from(COMMANDS),
    st.lists(st.tuples(st.sampled_from(HEADER_NAMES), header_values), max_size=6),
    st.binary(max_size=64),
)
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


async def _feed_and_check(chunks: list[bytes], *, connect: bool) -> None:
    broker = Broker()
    connection, transport = await open_connection(token="user0-token" if connect else None, broker=broker,
                                                  cfg=config(max_frame_size=4096))  # fmt: skip
    bystander, bystander_transport = await open_connection(token="user1-token", broker=broker)
    for chunk in chunks:
        await connection.data_received(chunk)  # must never raise
    await asyncio.sleep(0)
    errors = transport.errors()
    assert len(errors) <= 1, errors  # at most one ERROR, and nothing after it
    if errors:
        assert transport.frames[-1].command == "ERROR"
        assert errors[0].get("message") != "internal error", errors[0]
    await bystander.data_received(wire("SEND", b"still fine", destination="/app/echo", receipt="ok"))
    await bystander_transport.wait_for(lambda: "RECEIPT" in bystander_transport.commands(), "the bystander's RECEIPT")
    assert bystander_transport.closed is None
    await connection.connection_lost()
    await bystander.connection_lost()


@FUZZ
@given(st.lists(st.binary(max_size=200), max_size=8), st.booleans())
def test_random_bytes_before_and_after_connect(chunks, connect):
    asyncio.run(_feed_and_check(chunks, connect=connect))


@FUZZ
@given(st.lists(frames, max_size=10), st.data())
def test_random_frame_sequences_in_random_chunks(frame_list, data):
    stream = b"".join(frame_list)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=5)))
    chunks = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)]
    asyncio.run(_feed_and_check(chunks, connect=True))


@pytest.mark.parametrize(
    "stream",
    [
        wire("SUBSCRIBE", destination="/topic/t"),  # no id
        wire("SUBSCRIBE", id="a", destination="/topic/t") + wire("SUBSCRIBE", id="a", destination="/topic/u"),
        wire("ACK", id="nope"),
        wire("NACK", id="nope"),
        wire("BEGIN", transaction="t") + wire("BEGIN", transaction="t"),
        wire("COMMIT", transaction="never-begun"),
        wire("ABORT", transaction="never-begun"),
        wire("UNSUBSCRIBE", id="unknown"),
        wire("CONNECT", accept_version="1.2"),  # a second CONNECT
        b"SEND\ndestination:/app/echo\ncontent-length:5\n\nhello!!\x00",  # body longer than content-length
        b"SEND\ndestin\xffation:/x\n\n\x00",  # invalid UTF-8 in a header
        b"SEND\ndestination:/x\\q\n\n\x00",  # an undefined escape
        b"SEND\n" + b"h:v\n" * 200 + b"\n\x00",  # too many headers
        b"SEND\nbig:" + b"v" * 10_000 + b"\n\n\x00",  # a huge header
    ],
    ids=["subscribe-without-id", "duplicate-subscription-id", "ack-unknown", "nack-unknown", "nested-begin",
         "commit-unknown", "abort-unknown", "unsubscribe-unknown", "connect-twice", "bad-content-length",
         "invalid-utf8", "bad-escape", "too-many-headers", "huge-header"],
)  # fmt: skip
async def test_each_protocol_mistake_gets_a_clear_error_and_a_close(stream):
    connection, transport = await open_connection(cfg=config(max_headers=64, max_header_length=8192))
    await connection.data_received(stream)
    await transport.wait_for(lambda: transport.closed is not None, "the close")
    error = transport.errors()[0]
    assert error.get("message") not in (None, "internal error")
    assert error.body  # says what was wrong


async def test_frames_before_connect_get_an_error():
    connection, transport = await open_connection(token=None)
    await connection.data_received(wire("SEND", b"x", destination="/app/echo"))
    await transport.wait_for(lambda: transport.closed is not None, "the close")
    assert "CONNECT" in transport.errors()[0].body.decode()


# -- SockJS framing ---------------------------------------------------------------------------------------


@settings(max_examples=300)
@given(st.one_of(st.binary(max_size=200), st.text(max_size=100).map(str.encode),
                 st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=10),
                              lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner,
                                                                                           max_size=3),
                              max_leaves=8).map(lambda v: json.dumps(v).encode())))  # fmt: skip
def test_sockjs_decoders_return_strings_or_raise_payload_error(body):
    for decode in (decode_xhr_send, lambda b: decode_jsonp_send(b, "application/x-www-form-urlencoded"),
                   lambda b: decode_jsonp_send(b, "text/plain"),
                   lambda b: decode_websocket(b.decode("utf-8", errors="replace"))):  # fmt: skip
        try:
            messages = decode(body)
        except PayloadError:
            continue
        assert isinstance(messages, list) and all(isinstance(m, str) for m in messages)


# -- SSE inputs -------------------------------------------------------------------------------------------


@settings(max_examples=300)
@given(st.one_of(st.none(), st.text(max_size=40), st.integers(-10, 10**30).map(str)))
def test_last_event_id_parses_or_is_refused(value):
    from notifications.stream import parse_last_event_id

    try:
        parsed = parse_last_event_id(value)
    except ValueError:
        return
    assert parsed is None or (isinstance(parsed, int) and parsed >= 0)


@pytest.mark.django_db
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ticket=st.text(max_size=80), bearer=st.one_of(st.none(), st.text(max_size=80)))
def test_forged_tickets_and_bearers_never_open_a_stream(ticket, bearer):
    from notifications.tickets import StreamUnauthorized, stream_user_resolve

    with pytest.raises(StreamUnauthorized):
        stream_user_resolve(ticket=ticket, bearer=bearer, session_key=None)


# -- REST inputs ------------------------------------------------------------------------------------------

json_scalars = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=6,
)


@pytest.fixture
def member_client(db, make_user):
    from rest_framework.test import APIClient

    from chat import services
    from tests.conftest import access_token_for

    user = make_user("fuzzer")
    services.room_create(creator=user, name="Fuzz", slug="fuzz")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {access_token_for(user)}")
    return client


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.one_of(json_values, st.dictionaries(st.sampled_from(["body", "client_id", "message_id", "name", "slug",
                                                                     "is_private", "username"]), json_values,
                                                    max_size=4)))  # fmt: skip
def test_rest_bodies_never_cause_a_server_error(member_client, body):
    for path in ["/api/rooms/fuzz/messages/", "/api/rooms/", "/api/rooms/fuzz/read/", "/api/rooms/fuzz/members/",
                 "/api/auth/register/", "/api/notifications/ticket/"]:  # fmt: skip
        response = member_client.post(path, body, format="json")
        assert response.status_code < 500, (path, body, response.content[:200])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    params=st.dictionaries(
        st.sampled_from(["before", "after", "limit", "unread"]),
        st.one_of(st.text(max_size=12), st.integers(-(10**20), 10**20).map(str)),
        max_size=3,
    )
)
def test_rest_query_parameters_never_cause_a_server_error(member_client, params):
    for path in ["/api/rooms/fuzz/messages/", "/api/notifications/"]:
        response = member_client.get(path, params)
        assert response.status_code < 500, (path, params, response.content[:200])
