"""A small synchronous STOMP 1.2 client over a real WebSocket (``websockets.sync``), for live-server tests.

Every read is bounded by a timeout; ``closed`` records how the server ended the connection.
"""

from __future__ import annotations

import contextlib
import json
import time
from dataclasses import dataclass, field

from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from stompengine.stomp.codec import FrameParser, encode
from stompengine.stomp.frames import Frame


def wire(command: str, body: bytes = b"", **headers: str) -> bytes:
    return encode(Frame(command, tuple((k.replace("_", "-"), v) for k, v in headers.items()), body))


@dataclass
class LiveStomp:
    ws: ClientConnection
    parser: FrameParser = field(default_factory=lambda: FrameParser(max_frame_size=1 << 24))
    frames: list[Frame] = field(default_factory=list)
    close_code: int | None = None

    @classmethod
    def connect(cls, url: str, token: str | None, *, origin: str | None = None, timeout: float = 10) -> LiveStomp:
        """Open ``url`` (``ws://…/ws``) and, with a token, CONNECT (asserting CONNECTED)."""
        ws = connect(url, subprotocols=["v12.stomp"], origin=origin, open_timeout=timeout, max_size=None)  # type: ignore[list-item]
        ws.__enter__()  # websockets wants its context manager entered; close() leaves it
        client = cls(ws)
        if token is not None:
            client.send("CONNECT", accept_version="1.2", heart_beat="0,0", Authorization=f"Bearer {token}")
            frame = client.next_frame(timeout)
            assert frame.command == "CONNECTED", frame
        return client

    def send(self, command: str, body: bytes | str = b"", **headers: str) -> None:
        data = body.encode() if isinstance(body, str) else body
        self.ws.send(wire(command, data, **headers).decode())

    def send_json(self, destination: str, payload: dict, receipt: str | None = None) -> None:
        headers = {"destination": destination, "content-type": "application/json"}
        if receipt:
            headers["receipt"] = receipt
        self.send("SEND", json.dumps(payload), **headers)

    def _read(self, timeout: float) -> bool:
        if self.close_code is not None:
            return False
        try:
            data = self.ws.recv(timeout=timeout)
        except ConnectionClosed as exc:
            self.close_code = exc.rcvd.code if exc.rcvd is not None else 1006
            return False
        except TimeoutError:
            return True
        self.frames += self.parser.feed(data.encode() if isinstance(data, str) else data)
        return True

    def next_frame(self, timeout: float = 10) -> Frame:
        seen = len(self.frames)
        deadline = time.monotonic() + timeout
        while len(self.frames) == seen:
            left = deadline - time.monotonic()
            if left <= 0 or not self._read(min(left, 1.0)):
                raise AssertionError(f"no frame within {timeout}s (closed: {self.close_code}); {self.frames[-3:]}")
        return self.frames[seen]

    def until(self, predicate, what: str, timeout: float = 10) -> Frame:
        deadline = time.monotonic() + timeout
        index = 0
        while True:
            while index < len(self.frames):
                if predicate(self.frames[index]):
                    return self.frames[index]
                index += 1
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"timed out waiting for {what}; last frames {self.frames[-3:]}")
            if not self._read(min(left, 1.0)):
                raise AssertionError(f"closed ({self.close_code}) before {what}; last frames {self.frames[-3:]}")

    def receipt(self, receipt_id: str, timeout: float = 10) -> Frame:
        return self.until(lambda f: f.command == "RECEIPT" and f.get("receipt-id") == receipt_id,
                          f"RECEIPT {receipt_id}", timeout)  # fmt: skip

    def wait_closed(self, timeout: float = 10) -> int:
        deadline = time.monotonic() + timeout
        while self.close_code is None and time.monotonic() < deadline:
            self._read(min(deadline - time.monotonic(), 1.0))
        assert self.close_code is not None, "the server did not close the connection"
        return self.close_code

    def receipts(self) -> list[str]:
        return [f.get("receipt-id") or "" for f in self.frames if f.command == "RECEIPT"]

    def messages(self, destination: str) -> list[Frame]:
        return [f for f in self.frames if f.command == "MESSAGE" and f.get("destination") == destination]

    def close(self) -> None:
        with contextlib.suppress(Exception):  # the server may be gone already (fault tests)
            self.ws.close()
