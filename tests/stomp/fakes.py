"""Stand-ins shared by the connection tests (no server, no database): a user, a recording transport."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from stompengine.stomp.codec import FrameParser, encode
from stompengine.stomp.frames import Frame

WAIT = 5.0  # upper bound for anything awaited here


@dataclass
class FakeUser:
    pk: int
    username: str

    def get_username(self) -> str:
        return self.username


@dataclass
class Authenticated:
    user: FakeUser
    expires_at: object


class FakeTransport:
    """Records writes; ``hold()`` makes writes block until ``release()``."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed: int | None = None
        self._gate = asyncio.Event()
        self._gate.set()
        self._parser = FrameParser(max_frame_size=1 << 24)  # reads what the server wrote, any size
        self.frames: list[Frame] = []

    def hold(self) -> None:
        self._gate.clear()

    def release(self) -> None:
        self._gate.set()

    async def send(self, data: bytes) -> None:
        await self._gate.wait()
        self.writes.append(data)
        self.frames += self._parser.feed(data)

    async def close(self, code: int) -> None:
        self.closed = code

    async def wait_for(self, predicate, what: str) -> None:
        async def poll():
            while not predicate():  # noqa: ASYNC110 - polls what the fake recorded, bounded by WAIT
                await asyncio.sleep(0.005)

        try:
            await asyncio.wait_for(poll(), WAIT)
        except TimeoutError:
            raise AssertionError(f"timed out waiting for {what}; frames: {self.frames}") from None

    def commands(self) -> list[str]:
        return [f.command for f in self.frames]

    def errors(self) -> list[Frame]:
        return [f for f in self.frames if f.command == "ERROR"]

    def queue_errors(self) -> list[Frame]:
        return [f for f in self.frames if f.command == "MESSAGE" and f.get("destination") == "/user/queue/errors"]


def wire(command: str, body: bytes = b"", **headers: str) -> bytes:
    return encode(Frame(command, tuple((k.replace("_", "-"), v) for k, v in headers.items()), body))
