"""Issue 16 item 2, SockJS half: a SockJS session reports the STOMP bytes its client has not taken yet.

StompConnection bounds a connection's unsent bytes with its transport's ``pending_bytes()``; over SockJS
that is the session's queue (a client that stops polling lets it grow) plus the socket buffer of the
receiver attached to it, when the server exposes one.
"""

from __future__ import annotations

import asyncio

from sockjs.session import Session
from stompengine.realtime.sockjs import WRITE_BUFFER_EXTENSION, SockJSTransport

FOREVER = 3600.0


class Silent:
    def __init__(self, session: Session) -> None:
        self.session = session

    async def on_open(self) -> None:
        pass

    async def on_message(self, text: str) -> None:
        pass

    async def on_close(self) -> None:
        pass


class Receiver:
    """A receiving request whose server still holds ``buffered`` bytes for its socket."""

    def __init__(self, buffered: int) -> None:
        self.scope = {"extensions": {WRITE_BUFFER_EXTENSION: {"pending_bytes": lambda: buffered}}}


def new_session() -> Session:
    return Session(
        transport="xhr-polling", scope={"type": "http"}, handler_factory=Silent, queue_limit=10_000,
        disconnect_delay=FOREVER,
    )  # fmt: skip


async def test_unpolled_frames_count_until_a_poll_takes_them():
    session = new_session()
    transport = SockJSTransport(session)
    assert transport.pending_bytes() == 0
    frame = "MESSAGE\ndestination:/topic/x\n\nhällo\x00".encode()
    for _ in range(100):  # a client that stopped polling: every frame stays queued
        await transport.send(frame)
    assert transport.pending_bytes() == 100 * len(frame)
    assert await session.next_frame(FOREVER) == "o"
    await session.next_frame(FOREVER)  # one poll takes the whole batch
    assert transport.pending_bytes() == 0
    session.interrupt()
    await asyncio.sleep(0)


async def test_the_attached_receivers_socket_buffer_counts_too():
    session = new_session()
    transport = SockJSTransport(session)
    await transport.send(b"x" * 10)
    receiver = Receiver(buffered=5000)
    session.attach(receiver)
    assert transport.pending_bytes() == 10 + 5000
    session.detach(receiver, aborted=False)
    assert transport.pending_bytes() == 10
    session.interrupt()
    await asyncio.sleep(0)
