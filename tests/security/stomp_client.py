"""A STOMP client over Channels' WebsocketCommunicator, against the real ASGI stack (no server process)."""

from __future__ import annotations

import asyncio
import json

from channels.testing import WebsocketCommunicator

from stompengine.stomp.codec import FrameParser
from stompengine.stomp.frames import Frame
from tests.security.fakes import wire

WAIT = 5.0


class StompTestClient:
    """Sends frames, collects what comes back; every wait is bounded by WAIT."""

    def __init__(self, communicator: WebsocketCommunicator) -> None:
        self.ws = communicator
        self.parser = FrameParser(max_frame_size=1 << 24)
        self.frames: list[Frame] = []
        self.close_code: int | None = None

    @classmethod
    async def open(cls, application, *, token: str | None = None, path: str = "/ws", headers=()) -> StompTestClient:
        communicator = WebsocketCommunicator(application, path, subprotocols=["v12.stomp"], headers=list(headers))
        connected, _ = await communicator.connect(WAIT)
        assert connected, "the handshake was refused"
        client = cls(communicator)
        if token is not None:
            await client.send("CONNECT", accept_version="1.2", Authorization=f"Bearer {token}")
            assert (await client.next_frame()).command == "CONNECTED", client.frames
        return client

    async def send(self, command: str, body: bytes | str = b"", **headers: str) -> None:
        data = body.encode() if isinstance(body, str) else body
        await self.ws.send_to(text_data=wire(command, data, **headers).decode())

    async def _read(self) -> bool:
        """Read one transport message; False once the server closed."""
        if self.close_code is not None:
            return False
        message = await self.ws.receive_output(WAIT)
        if message["type"] == "websocket.close":
            self.close_code = message.get("code", 1000)
            return False
        self.frames += self.parser.feed(message.get("bytes") or message["text"].encode())
        return True

    async def next_frame(self) -> Frame:
        seen = len(self.frames)
        while len(self.frames) == seen:
            if not await self._read():
                raise AssertionError(f"closed ({self.close_code}) with no further frame; frames: {self.frames}")
        return self.frames[seen]

    async def until(self, predicate, what: str) -> Frame:
        """Read until a frame matches ``predicate``; returns it."""
        async with asyncio.timeout(WAIT):
            index = 0
            while True:
                while index < len(self.frames):
                    if predicate(self.frames[index]):
                        return self.frames[index]
                    index += 1
                if not await self._read():
                    raise AssertionError(f"closed before {what}; frames: {self.frames}")

    async def receipt(self, receipt_id: str) -> Frame:
        return await self.until(lambda f: f.command == "RECEIPT" and f.get("receipt-id") == receipt_id,
                                f"RECEIPT {receipt_id}")  # fmt: skip

    async def error(self) -> Frame:
        return await self.until(lambda f: f.command == "ERROR", "ERROR")

    async def queue_error(self) -> dict:
        frame = await self.until(lambda f: f.command == "MESSAGE" and f.get("destination") == "/user/queue/errors",
                                 "an error on /user/queue/errors")  # fmt: skip
        return json.loads(frame.body)

    async def subscribe(self, destination: str, sub_id: str, **headers: str) -> None:
        await self.send("SUBSCRIBE", id=sub_id, destination=destination, receipt=f"r-{sub_id}", **headers)

    async def close(self) -> None:
        await self.ws.disconnect()
