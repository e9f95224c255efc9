"""chatproject.uvicorn_ws.SansIOProtocol on a real socket: uvicorn's behaviour, in a compact idle connection.

The protocol does not call uvicorn's ``__init__`` (it would set 34 attributes and turn the instance's
``__dict__`` into a 1.6 kB dict): these tests pin that every attribute uvicorn sets is still there with the
same value, that a handshake, messages both ways, keep-alive pings and a close work, and that an idle
connection stays within the compact attribute array and lets go of the handshake's scope and response.
"""

from __future__ import annotations

import asyncio
import base64
import os
import socket
import struct
import sys

import pytest
from uvicorn.config import Config
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from uvicorn.server import ServerState

from chatproject.uvicorn_ws import COMPACT_ATTRIBUTES, SansIOProtocol
from stompengine.realtime.backpressure import scope_pending_bytes

# A compact instance's attributes measure about 300 bytes (sys.getsizeof of its __dict__); an ordinary dict of as
# many is 800 bytes or more.
COMPACT_DICT_BYTES = 500


def _config(app, **options) -> Config:
    config = Config(app=app, ws="chatproject.uvicorn_ws:SansIOProtocol", log_level="warning", **options)
    config.load()
    return config


def _client_frame(payload: bytes, opcode: int = 1) -> bytes:
    mask = os.urandom(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return bytes([0x80 | opcode, 0x80 | len(payload)]) + mask + masked


async def _read_frame(loop, sock) -> tuple[int, bytes]:
    head = await loop.sock_recv(sock, 2)
    length = head[1] & 0x7F
    data = b""
    while len(data) < length:
        data += await loop.sock_recv(sock, length - len(data))
    return head[0] & 0x0F, data


def test_every_attribute_uvicorn_sets_is_there_with_the_same_value():
    config = _config(lambda scope, receive, send: None, ws_ping_interval=7.0, ws_ping_timeout=3.0, root_path="/x")
    state = ServerState()
    loop = asyncio.new_event_loop()
    try:
        theirs = WebSocketsSansIOProtocol(config=config, server_state=state, app_state={"a": 1}, _loop=loop)
        ours = SansIOProtocol(config=config, server_state=state, app_state={"a": 1}, _loop=loop)
    finally:
        loop.close()
    differ = {"queue", "writable", "conn"}  # light queue and event; a ServerProtocol of its own
    for name, value in vars(theirs).items():
        assert hasattr(ours, name), name
        if name not in differ:
            assert getattr(ours, name) == value, name
    assert len(vars(ours)) < len(vars(theirs))


async def test_an_idle_connection_works_like_uvicorns_and_stays_compact():
    scopes: list[dict] = []
    received: list[str] = []

    async def app(scope, receive, send):
        scopes.append(scope)
        assert (await receive())["type"] == "websocket.connect"
        await send({"type": "websocket.accept", "subprotocol": "v12.stomp"})
        scope["headers"] = []  # as the STOMP consumer does once accepted
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                return
            received.append(message["text"])
            await send({"type": "websocket.send", "text": message["text"].upper()})
            if message["text"] == "bye":
                await send({"type": "websocket.close", "code": 1000})

    loop = asyncio.get_running_loop()
    config = _config(app, ws_ping_interval=0.05, ws_ping_timeout=5.0)
    # As on a server: many connections exist before this one's first ping. CPython stops growing a class's
    # shared attribute keys after a few instances, so a name first set late would make its dict a full one.
    others = [SansIOProtocol(config=config, server_state=ServerState(), app_state={}) for _ in range(64)]
    assert len(others) == 64
    protocol = SansIOProtocol(config=config, server_state=ServerState(), app_state={})
    ours, theirs = socket.socketpair()
    theirs.setblocking(False)
    transport, _ = await loop.create_connection(lambda: protocol, sock=ours)
    try:
        key = base64.b64encode(os.urandom(16)).decode()
        await loop.sock_sendall(theirs, (
            f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: v12.stomp\r\n"
            "Cookie: sessionid=abc\r\nUser-Agent: test\r\n\r\n").encode())  # fmt: skip
        head = b""
        while b"\r\n\r\n" not in head:
            head += await loop.sock_recv(theirs, 1)
        assert head.startswith(b"HTTP/1.1 101")
        assert b"v12.stomp" in head

        # The application got uvicorn's scope, with the write-buffer extension.
        scope = scopes[0]
        assert scope["path"] == "/ws" and scope["subprotocols"] == ["v12.stomp"]
        pending = scope_pending_bytes(scope)
        assert pending is not None and pending() == 0

        await loop.sock_sendall(theirs, _client_frame(b"hello"))
        assert await asyncio.wait_for(_read_frame(loop, theirs), 5) == (1, b"HELLO")
        # uvicorn's keep-alive ping (every 0.05 s here), answered with a pong carrying its payload.
        opcode, payload = await asyncio.wait_for(_read_frame(loop, theirs), 5)
        assert opcode == 9
        await loop.sock_sendall(theirs, _client_frame(payload, opcode=10))
        await asyncio.sleep(0.02)
        assert protocol.last_ping_rtt > 0

        # Idle: the handshake's request, response and scope are let go; the attributes fit the compact array.
        assert protocol.scope is None and protocol.response is None and protocol.request is None
        assert len(vars(protocol)) <= COMPACT_ATTRIBUTES, sorted(vars(protocol))
        assert sys.getsizeof(vars(protocol)) < COMPACT_DICT_BYTES, sorted(vars(protocol))

        await loop.sock_sendall(theirs, _client_frame(b"bye"))
        frames = [await asyncio.wait_for(_read_frame(loop, theirs), 5) for _ in range(2)]
        assert next(f for f in frames if f[0] != 9) == (1, b"BYE")  # a ping may come between
        assert received == ["hello", "bye"]
        await loop.sock_sendall(theirs, _client_frame(struct.pack("!H", 1000), opcode=8))
        for _ in range(100):
            if protocol.disconnected:
                break
            await asyncio.sleep(0.01)
        assert protocol.disconnected
        assert len(vars(protocol)) <= COMPACT_ATTRIBUTES, sorted(vars(protocol))
        assert sys.getsizeof(vars(protocol)) < COMPACT_DICT_BYTES, sorted(vars(protocol))
    finally:
        transport.abort()
        theirs.close()


@pytest.mark.parametrize("names", [("app", "root_path", "ping_interval", "connections", "logger")])
def test_per_server_values_are_not_copied_into_each_connection(names):
    config = _config(lambda scope, receive, send: None)
    loop = asyncio.new_event_loop()
    try:
        protocol = SansIOProtocol(config=config, server_state=ServerState(), app_state={}, _loop=loop)
    finally:
        loop.close()
    assert not set(names) & set(vars(protocol))
