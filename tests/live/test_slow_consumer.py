"""Issue 16 item 2, live: clients that stop reading are cut off with ERROR slow consumer, on daphne and uvicorn.

Each abuser opens a raw WebSocket, CONNECTs, then sends SUBSCRIBEs with ``since-id:0`` into a room with
many stored messages and never reads (a tiny receive buffer, so the kernel holds little for it). The
server must end it with ``ERROR`` (``message:slow consumer``, ``code:slow-consumer``) once its unsent bytes
pass ``STOMP_MAX_UNSENT_BYTES`` (the abuser reads only after the server said so in its log), while an
honest client of the same room keeps sending and receiving. Also item 10 live: a NUL in a header is an
ERROR, never relayed.
"""

from __future__ import annotations

import socket
import time

import pytest
from rest_framework_simplejwt.tokens import AccessToken
from websockets.client import ClientProtocol
from websockets.frames import Opcode
from websockets.http11 import Response
from websockets.uri import parse_uri

from chat.models import Message
from chat.services import room_create
from chat.stomp.codec import FrameParser
from chat.stomp.frames import Frame
from tests.conftest import wait_for
from tests.stomp.fakes import wire

pytestmark = pytest.mark.live
WAIT = 30.0
BOUND = 512 * 1024  # more than one replay: between replays the bytes move into the server's buffer
ABUSERS = 3
SUBSCRIBES = 20
STORED = 300  # x ~1.2 kB: one replay alone is more than BOUND


class RawStomp:
    """A blocking STOMP-over-WebSocket client on a plain socket that reads only when told to."""

    def __init__(self, url: str, *, rcvbuf: int | None = None) -> None:
        uri = parse_uri(f"{url}/ws")
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(WAIT)
        self.sock.connect((uri.host, uri.port))
        self.ws = ClientProtocol(uri, subprotocols=["v12.stomp"], max_size=None)
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


@pytest.fixture
def crowded_room(make_user):
    owner = make_user("owner")
    room = room_create(creator=owner, name="Crowded")
    Message.objects.bulk_create(
        [Message(room=room, author=owner, body=f"{n:04d} " + "m" * 1000) for n in range(STORED)]
    )
    return room, owner


@pytest.mark.parametrize("server_kind", ["daphne", "uvicorn"])
def test_clients_that_stop_reading_are_cut_off_as_slow_consumers_and_an_honest_client_keeps_working(
    daphne_factory, make_user, crowded_room, server_kind
):
    room, owner = crowded_room
    server = daphne_factory(server=server_kind, STOMP_MAX_UNSENT_BYTES=str(BOUND))
    topic = f"/topic/rooms.{room.slug}"
    honest = connect(server.url.replace("http", "ws"), str(AccessToken.for_user(owner)))
    honest.send("SUBSCRIBE", id="live", destination=topic, receipt="sub")
    assert honest.read_until(lambda f: f.get("receipt-id") == "sub", "RECEIPT") is not None

    abusers = []
    for n in range(ABUSERS):
        token = str(AccessToken.for_user(make_user(f"abuser{n}")))
        abuser = connect(server.url.replace("http", "ws"), token, rcvbuf=4096)
        for k in range(SUBSCRIBES):
            abuser.send("SUBSCRIBE", id=f"s{k}", destination=topic, **{"since-id": "0"})
        abusers.append(abuser)
    wait_for(
        lambda: server.log().count("closing as a slow consumer") >= ABUSERS,
        timeout=60,
        what=f"{ABUSERS} slow-consumer disconnects in the server log",
    )

    # The honest client still works: its SEND is stored (RECEIPT) and broadcast back to it.
    honest.send("SEND", b"still here", destination=f"/app/rooms.{room.slug}", receipt="send")
    assert honest.read_until(lambda f: f.get("receipt-id") == "send", "RECEIPT") is not None
    assert honest.read_until(lambda f: f.command == "MESSAGE" and b"still here" in f.body, "MESSAGE") is not None
    assert not [f for f in honest.frames if f.command == "ERROR"]

    # Each abuser, reading at last, finds the ERROR that ended it, then the end of the connection.
    for abuser in abusers:
        error = abuser.read_until(lambda f: f.command == "ERROR", "ERROR")
        assert error is not None, f"no ERROR; {len(abuser.frames)} frames, closed={abuser.closed}"
        assert (error.get("message"), error.get("code")) == ("slow consumer", "slow-consumer")
        replayed = sum(f.command == "MESSAGE" for f in abuser.frames)
        assert replayed < ABUSERS * SUBSCRIBES * STORED  # cut off long before everything was sent
        abuser.close()
    honest.close()


def test_a_nul_inside_a_header_is_an_error_and_is_never_relayed(daphne_factory, make_user):
    server = daphne_factory()
    url = server.url.replace("http", "ws")
    listener = connect(url, str(AccessToken.for_user(make_user("listener"))))
    listener.send("SUBSCRIBE", id="t", destination="/topic/nul", receipt="sub")
    assert listener.read_until(lambda f: f.get("receipt-id") == "sub", "RECEIPT") is not None
    sender = connect(url, str(AccessToken.for_user(make_user("sender"))))
    sender.ws.send_text(b"SEND\ndestination:/topic/nul\nx-forged:a\0MESSAGE\nreceipt:forged\n\nhi\0")
    sender._flush()
    error = sender.read_until(lambda f: f.command == "ERROR", "ERROR")
    assert error is not None and error.get("message") == "invalid header", sender.frames
    assert b"NUL" in error.body
    listener.send("SEND", b"after", destination="/topic/nul", receipt="after")
    assert listener.read_until(lambda f: f.get("receipt-id") == "after", "RECEIPT") is not None
    messages = [f for f in listener.frames if f.command == "MESSAGE"]
    assert [m.body for m in messages] == [b"after"]  # the forged SEND reached nobody
    listener.close()
    sender.close()
