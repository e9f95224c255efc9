"""A blocking STOMP-over-WebSocket client on a plain socket that reads only when told to (live tests)."""

from __future__ import annotations

import socket
import time

from websockets.client import ClientProtocol
from websockets.frames import Opcode
from websockets.http11 import Response
from websockets.typing import Subprotocol
from websockets.uri import parse_uri

from stompengine.stomp.codec import FrameParser
from stompengine.stomp.frames import Frame
from tests.stomp.fakes import wire

WAIT = 30.0


class RawStomp:
    """A blocking STOMP-over-WebSocket client on a plain socket that reads only when told to."""

    def __init__(self, url: str, *, rcvbuf: int | None = None) -> None:
        uri = parse_uri(f"{url}/ws")
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(WAIT)
        self.sock.connect((uri.host, uri.port))
        self.ws = ClientProtocol(uri, subprotocols=[Subprotocol("v12.stomp")], max_size=None)
        self.ws.send_request(self.ws.connect())
        self._flush()
        self.parser = FrameParser(max_frame_size=1 << 26)
        self.frames: list[Frame] = []
        self.closed = False
        while not self._handshake_done():
            self._read_once()

    def _handshake_done(self) -> bool:
        for event in self.ws.events_received():
            assert isinstance(event, Response) and event.status_code == 101, event
            return True
        return False

    def _flush(self) -> None:
        for data in self.ws.data_to_send():
            if data:
                self.sock.sendall(data)

    def _read_once(self) -> bool:
        try:
            data = self.sock.recv(1 << 20)
        except (ConnectionResetError, TimeoutError):
            data = b""
        if not data:
            self.ws.receive_eof()
            self.closed = True
            return False
        self.ws.receive_data(data)
        return True

    def send(self, command: str, body: bytes = b"", **headers: str) -> None:
        self.ws.send_text(wire(command, body, **headers))
        self._flush()

    def read_until(self, predicate, what: str) -> Frame | None:
        """Read (frames into ``self.frames``) until one matches; None when the socket closed first."""
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            for frame in self.frames:
                if predicate(frame):
                    return frame
            if self.closed or not self._read_once():
                break
            for event in self.ws.events_received():
                if event.opcode in (Opcode.TEXT, Opcode.BINARY):
                    self.frames += self.parser.feed(event.data)
        return next((f for f in self.frames if predicate(f)), None)

    def close(self) -> None:
        self.sock.close()


def connect(url: str, token: str, **kw) -> RawStomp:
    client = RawStomp(url, **kw)
    client.send("CONNECT", accept_version="1.2", host="chat", Authorization=f"Bearer {token}")
    connected = client.read_until(lambda f: f.command in ("CONNECTED", "ERROR"), "CONNECTED")
    assert connected is not None and connected.command == "CONNECTED", client.frames
    return client
