"""The raw STOMP WebSocket endpoint through the real ASGI stack (origin check, handshake auth, routing) with JWTs."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from rest_framework_simplejwt.tokens import AccessToken

from stompengine.broker import get_broker
from stompengine.connection import reset_config
from stompengine.stomp.codec import FrameParser, encode
from stompengine.stomp.frames import Frame

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("fresh_broker")]
WAIT = 5.0


def wire(command: str, body: bytes = b"", **headers: str) -> bytes:
    return encode(Frame(command, tuple((k.replace("_", "-"), v) for k, v in headers.items()), body))


class Client:
    """A WebsocketCommunicator that speaks STOMP frames."""

    def __init__(self, communicator: WebsocketCommunicator) -> None:
        self.ws = communicator
        self.parser = FrameParser()
        self.frames: list[Frame] = []
        self.subprotocol: str | None = None

    async def send(self, data: bytes, *, binary: bool = False) -> None:
        if binary:
            await self.ws.send_to(bytes_data=data)
        else:
            await self.ws.send_to(text_data=data.decode())

    async def frame(self) -> Frame:
        while not self.frames:
            message = await self.ws.receive_output(WAIT)
            assert message["type"] == "websocket.send", message
            data = message.get("bytes") or message["text"].encode()
            self.frames += self.parser.feed(data)
        return self.frames.pop(0)

    async def closed(self) -> int:
        """Wait for the server's close; every frame before it must have been read."""
        message = await self.ws.receive_output(WAIT)
        assert message["type"] == "websocket.close", message
        return message.get("code", 1000)


async def open_client(application, path="/ws", *, subprotocols=("v10.stomp", "v11.stomp", "v12.stomp"), headers=()):
    communicator = WebsocketCommunicator(application, path, subprotocols=list(subprotocols), headers=list(headers))
    connected, subprotocol = await communicator.connect(WAIT)
    assert connected
    client = Client(communicator)
    client.subprotocol = subprotocol
    return client


async def connect(application, token: str, path="/ws", **headers) -> tuple[Client, Frame]:
    client = await open_client(application, path)
    await client.send(wire("CONNECT", accept_version="1.1,1.2", host="localhost", heart_beat="0,0",
                           Authorization=f"Bearer {token}", **headers))  # fmt: skip
    return client, await client.frame()


@pytest.fixture
def make_token(django_user_model):
    def make(username: str = "alice", *, active: bool = True, lifetime: timedelta | None = None) -> str:
        user = django_user_model.objects.filter(username=username).first() or django_user_model.objects.create_user(
            username=username, password="pw-unused-1234", is_active=active
        )
        token = AccessToken.for_user(user)
        if lifetime is not None:
            token.set_exp(lifetime=lifetime)
        return str(token)

    return database_sync_to_async(make)


async def test_connect_with_bearer_header_gets_connected_and_subprotocol(application, make_token):
    client, connected = await connect(application, await make_token("alice"))
    assert client.subprotocol == "v12.stomp"
    assert connected.command == "CONNECTED"
    assert connected.get("version") == "1.2"
    assert connected.get("user-name") == "alice"
    assert connected.get("server") and connected.get("session")
    assert connected.get("heart-beat") == "0,0"  # the client asked for none
    await client.ws.disconnect()


async def test_ws_websocket_path_and_passcode_login(application, make_token):
    client = await open_client(application, "/ws/websocket", subprotocols=["v11.stomp"])
    assert client.subprotocol == "v11.stomp"
    await client.send(wire("STOMP", accept_version="1.0,1.1,1.2", login="alice", passcode=await make_token("alice")))
    connected = await client.frame()
    assert (connected.command, connected.get("version")) == ("CONNECTED", "1.1")
    await client.ws.disconnect()


@pytest.mark.parametrize(
    ("case", "code"),
    [("missing", "unauthorized"), ("garbage", "token-invalid"), ("expired", "token-expired"),
     ("inactive", "unauthorized"), ("basic", "token-invalid")],
)  # fmt: skip
async def test_bad_credentials_get_unauthorized_error_then_close(application, make_token, case, code):
    headers = {
        "missing": {},
        "garbage": {"Authorization": "Bearer not.a.jwt"},
        "expired": {"Authorization": f"Bearer {await make_token('alice', lifetime=timedelta(seconds=-5))}"},
        "inactive": {"Authorization": f"Bearer {await make_token('zed', active=False)}"},
        "basic": {"Authorization": "Basic YWxpY2U6cHc="},
    }[case]
    client = await open_client(application)
    await client.send(wire("CONNECT", accept_version="1.2", **headers))
    error = await client.frame()
    assert (error.command, error.get("message"), error.get("code")) == ("ERROR", "Unauthorized", code)
    assert error.body
    assert await client.closed() == 1000


async def test_cookie_session_alone_does_not_authenticate(application, make_token, client, django_user_model):
    await make_token("alice")
    user = await database_sync_to_async(django_user_model.objects.get)(username="alice")
    await database_sync_to_async(client.force_login)(user)
    cookie = f"sessionid={client.cookies['sessionid'].value}".encode()
    ws = await open_client(application, headers=[(b"cookie", cookie)])
    await ws.send(wire("CONNECT", accept_version="1.2"))
    error = await ws.frame()
    assert error.get("code") == "unauthorized"
    assert await ws.closed() == 1000


async def test_foreign_origin_is_refused_at_the_handshake(application):
    communicator = WebsocketCommunicator(application, "/ws", headers=[(b"origin", b"https://evil.example")])
    connected, code = await communicator.connect(WAIT)
    assert not connected
    assert code == 4403


async def test_subscribe_send_receive_with_receipts(application, make_token):
    alice, _ = await connect(application, await make_token("alice"))
    bob, _ = await connect(application, await make_token("bob"))
    await bob.send(wire("SUBSCRIBE", id="sub-0", destination="/topic/news", receipt="s"))
    assert (await bob.frame()).get("receipt-id") == "s"
    await alice.send(wire("SEND", "héllo\0!".encode(), destination="/topic/news", content_type="text/plain",
                          content_length=str(len("héllo\0!".encode())), receipt="r"))  # fmt: skip
    assert (await alice.frame()) == Frame("RECEIPT", (("receipt-id", "r"),))
    message = await bob.frame()
    assert message.command == "MESSAGE"
    assert message.get("subscription") == "sub-0"
    assert message.get("destination") == "/topic/news"
    assert message.get("content-type") == "text/plain"
    assert message.body == "héllo\0!".encode()
    assert message.get("message-id")
    await bob.send(wire("UNSUBSCRIBE", id="sub-0", receipt="u"))
    assert (await bob.frame()).get("receipt-id") == "u"
    await alice.send(wire("DISCONNECT", receipt="bye"))
    assert (await alice.frame()).get("receipt-id") == "bye"
    assert await alice.closed() == 1000
    await bob.ws.disconnect()


async def test_binary_websocket_frames_are_accepted(application, make_token):
    client = await open_client(application)
    await client.send(wire("CONNECT", accept_version="1.2", passcode=await make_token()), binary=True)
    assert (await client.frame()).command == "CONNECTED"
    await client.send(wire("SUBSCRIBE", id="1", destination="/topic/bin", receipt="r"), binary=True)
    assert (await client.frame()).command == "RECEIPT"
    await client.send(wire("SEND", b"\xff\x00\xfe", destination="/topic/bin", content_length="3"), binary=True)
    message = await client.frame()
    assert message.body == b"\xff\x00\xfe"
    await client.ws.disconnect()


async def test_client_ack_modes_over_the_socket(application, make_token):
    client, _ = await connect(application, await make_token())
    await client.send(wire("SUBSCRIBE", id="1", destination="/topic/acks", ack="client-individual", receipt="s"))
    assert (await client.frame()).get("receipt-id") == "s"
    get_broker().publish("/topic/acks", "one")
    message = await client.frame()
    await client.send(wire("ACK", id=message.get("ack"), receipt="a"))
    assert (await client.frame()).get("receipt-id") == "a"
    get_broker().publish("/topic/acks", "two")
    message = await client.frame()
    await client.send(wire("NACK", id=message.get("ack"), receipt="n"))
    assert (await client.frame()).get("receipt-id") == "n"
    await client.send(wire("ACK", id="999"))
    error = await client.frame()
    assert error.command == "ERROR" and "unknown" in error.body.decode()
    assert await client.closed() == 1000


async def test_transaction_commit_and_abort_over_the_socket(application, make_token):
    client, _ = await connect(application, await make_token())
    await client.send(wire("SUBSCRIBE", id="1", destination="/topic/tx"))
    await client.send(wire("BEGIN", transaction="t1") + wire("SEND", b"no", destination="/topic/tx", transaction="t1")
                      + wire("ABORT", transaction="t1"))  # fmt: skip
    await client.send(wire("BEGIN", transaction="t2") + wire("SEND", b"yes", destination="/topic/tx", transaction="t2")
                      + wire("COMMIT", transaction="t2", receipt="c"))  # fmt: skip
    message = await client.frame()
    assert message.body == b"yes"
    assert (await client.frame()).get("receipt-id") == "c"
    await client.ws.disconnect()


@pytest.mark.parametrize(
    ("frames", "message"),
    [
        (wire("SEND", destination="/topic/x"), "protocol error"),  # before CONNECT
        (b"HELLO\n\n\0", "unknown command"),
        (b"\x01\x02 not a frame\x00", "malformed frame"),  # no line break at all
        (b"SEND\ndestination:/topic/x\nbad header\n\n\0", "invalid header"),
        (b"SEND\ndestination:/topic/x\nx:\\t\n\n\0", "invalid header escape"),
        (wire("SEND", b"x" * 70_000, destination="/topic/x"), "frame too large"),
    ],
)
async def test_bad_input_gets_error_and_close_without_harming_others(application, make_token, frames, message):
    bystander, _ = await connect(application, await make_token("bob"))
    await bystander.send(wire("SUBSCRIBE", id="1", destination="/topic/x", receipt="s"))
    await bystander.frame()
    if frames.startswith(b"SEND\ndestination:/topic/x\n\n"):
        offender = await open_client(application)
    else:
        offender, _ = await connect(application, await make_token("alice"))
    await offender.send(frames)
    error = await offender.frame()
    assert (error.command, error.get("message")) == ("ERROR", message)
    assert await offender.closed() == 1000
    get_broker().publish("/topic/x", "still here")
    assert (await bystander.frame()).body == b"still here"
    await bystander.ws.disconnect()


async def test_forbidden_destinations(application, make_token):
    client, _ = await connect(application, await make_token())
    await client.send(wire("SEND", b"x", destination="/topic/rooms.lobby"))
    error = await client.frame()
    assert (error.get("message"), error.get("code")) == ("Forbidden", "forbidden")
    assert await client.closed() == 1000


async def test_user_queue_over_the_socket(application, make_token, django_user_model):
    token = await make_token("alice")
    first, _ = await connect(application, token)
    second, _ = await connect(application, token)
    for client in (first, second):
        await client.send(wire("SUBSCRIBE", id="n", destination="/user/queue/notifications", receipt="s"))
        await client.frame()
    alice = await database_sync_to_async(django_user_model.objects.get)(username="alice")
    get_broker().publish_to_user(alice.pk, "/user/queue/notifications", {"hello": "alice"})
    for client in (first, second):
        message = await client.frame()
        assert message.get("destination") == "/user/queue/notifications"
        assert message.body == b'{"hello":"alice"}'
        await client.ws.disconnect()


async def test_server_heartbeat_and_client_timeout(application, make_token, settings):
    settings.STOMP_HEARTBEAT_SEND_MS = 50
    settings.STOMP_HEARTBEAT_RECEIVE_MS = 50
    settings.STOMP_HEARTBEAT_GRACE = 2.0
    reset_config()
    client = await open_client(application)
    await client.send(wire("CONNECT", accept_version="1.2", heart_beat="50,50", passcode=await make_token()))
    connected = await client.frame()
    assert connected.get("heart-beat") == "50,50"
    saw_heartbeat = False
    while True:
        message = await client.ws.receive_output(WAIT)
        if message["type"] == "websocket.close":
            break
        data = message.get("bytes") or message["text"].encode()
        if data == b"\n":
            saw_heartbeat = True
        else:
            client.frames += client.parser.feed(data)
    assert saw_heartbeat
    assert client.frames[-1].get("message") == "heart-beat timeout"


async def test_server_does_not_hop_threads_per_frame(application, make_token, monkeypatch):
    calls = []
    import channels.consumer

    async def spy():
        calls.append(1)

    monkeypatch.setattr(channels.consumer, "aclose_old_connections", spy)
    client, _ = await connect(application, await make_token())
    for n in range(5):
        await client.send(wire("SEND", b"x", destination="/topic/spy", receipt=str(n)))
        await client.frame()
    assert calls == []
    await client.ws.disconnect()
    await asyncio.sleep(0)


async def test_after_the_accept_every_scope_copy_keeps_only_the_address_and_origin_headers(application, make_token):
    # The server's own scope (what the communicator passed) shares its header list with the middlewares' copies;
    # an idle connection must not keep cookies and user agents alive through any of them (docs/memory.md).
    headers = [(b"cookie", b"a=1"), (b"user-agent", b"test"), (b"x-forwarded-for", b"10.0.0.7")]
    client = await open_client(application, headers=headers)
    assert client.ws.scope["headers"] == [(b"x-forwarded-for", b"10.0.0.7")]
    await client.send(
        wire("CONNECT", accept_version="1.2", host="localhost", Authorization=f"Bearer {await make_token()}")
    )
    assert (await client.frame()).command == "CONNECTED"
    await client.ws.disconnect()
