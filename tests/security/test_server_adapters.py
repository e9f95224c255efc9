"""The daphne and uvicorn adapters that tell a STOMP connection what the server still holds for its peer."""

from __future__ import annotations

import asyncio
import socket

from twisted.internet.abstract import FileDescriptor

from chatproject.daphne_server import CLOSE_HANDSHAKE_TIMEOUT, BackpressureServer, twisted_pending_bytes
from chatproject.uvicorn_ws import transport_pending_bytes
from stompengine.consumers import WebSocketTransport
from stompengine.realtime.backpressure import EXTENSION, scope_pending_bytes


class QuietReactor:
    """Enough of IReactorFDSet for a FileDescriptor that never really writes."""

    def addWriter(self, writer) -> None:
        pass

    def removeWriter(self, writer) -> None:
        pass


class PartialSocket(FileDescriptor):
    """A Twisted file descriptor whose socket takes ``accept`` bytes per write."""

    accept = 0

    def writeSomeData(self, data) -> int:
        return min(self.accept, len(data))


def test_twisted_pending_bytes_counts_joined_and_not_yet_joined_writes():
    transport = PartialSocket(reactor=QuietReactor())
    transport.connected = 1
    assert twisted_pending_bytes(transport) == 0
    transport.write(b"a" * 1000)
    transport.write(b"b" * 500)
    assert twisted_pending_bytes(transport) == 1500  # both still in _tempDataBuffer
    transport.accept = 300
    transport.doWrite()  # joins them into dataBuffer, writes 300
    assert twisted_pending_bytes(transport) == 1200
    transport.write(b"c" * 100)
    assert twisted_pending_bytes(transport) == 1300
    transport.accept = 10_000
    transport.doWrite()
    transport.doWrite()
    assert twisted_pending_bytes(transport) == 0


def test_twisted_pending_bytes_looks_through_a_wrapping_transport_and_knows_nothing_of_others():
    inner = PartialSocket(reactor=QuietReactor())
    inner.connected = 1
    inner.write(b"x" * 42)

    class Wrapper:
        transport = inner

    assert twisted_pending_bytes(Wrapper()) == 42
    assert twisted_pending_bytes(None) == 0
    assert twisted_pending_bytes(object()) == 0


async def test_daphne_server_puts_the_write_buffer_into_every_scope():
    scopes = []

    async def application(scope, receive, send):
        scopes.append(scope)

    server = BackpressureServer(application, endpoints=["tcp:port=0:interface=127.0.0.1"], signal_handlers=False)

    class Protocol:
        closeHandshakeTimeout = 1  # noqa: N815 - autobahn's name
        transport = PartialSocket(reactor=QuietReactor())

    protocol = Protocol()
    protocol.transport.connected = 1
    server.connections = {protocol: {}}
    server.create_application(protocol, {"type": "websocket", "path": "/ws"})
    await asyncio.sleep(0)
    pending = scope_pending_bytes(scopes[0])
    assert pending is not None and pending() == 0
    protocol.transport.write(b"y" * 77)
    assert pending() == 77
    assert protocol.closeHandshakeTimeout == CLOSE_HANDSHAKE_TIMEOUT


async def test_uvicorn_pending_bytes_is_the_asyncio_transports_write_buffer():
    ours, theirs = socket.socketpair()
    theirs.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_connection(asyncio.Protocol, sock=ours)
    try:
        transport.write(b"z" * (4 << 20))  # the peer never reads: most of it stays in the transport
        assert transport_pending_bytes(transport) > 1 << 20
    finally:
        transport.abort()
        theirs.close()
    await asyncio.sleep(0)
    assert transport_pending_bytes(transport) == 0


def test_the_websocket_transport_offers_pending_bytes_only_when_the_server_does():
    assert not hasattr(WebSocketTransport(send=None), "pending_bytes")
    scope = {"extensions": {EXTENSION: {"pending_bytes": lambda: 5}}}
    transport = WebSocketTransport(send=None, pending_bytes=scope_pending_bytes(scope))
    assert transport.pending_bytes() == 5
    assert scope_pending_bytes({"type": "websocket"}) is None


def test_autobahns_per_connection_config_dump_is_formatted_only_when_its_debug_line_is_written():
    """autobahn pformats ~30 options on every new WebSocket for a debug line (0.48 ms, half a handshake)."""
    import autobahn.websocket.protocol as autobahn_protocol

    from chatproject.daphne_server import defer_autobahn_config_log

    class Counted:
        formatted = 0

        def __repr__(self) -> str:
            Counted.formatted += 1
            return "counted"

    defer_autobahn_config_log()
    attrs = autobahn_protocol.pformat([("openHandshakeTimeout", Counted(), "WebSocketServerFactory")])
    assert Counted.formatted == 0  # built on every connection, formatted by none
    assert f"{attrs}" == "[('openHandshakeTimeout', counted, 'WebSocketServerFactory')]"
    assert Counted.formatted == 1


def test_daphnes_send_fast_path_writes_and_counts_what_autobahn_does_and_leaves_it_the_other_cases():
    """chatproject/daphne_server.py's ``sendData`` without autobahn's debug-log arguments: the same bytes to
    the transport and the same traffic counters; a synchronous, chopped or queued write is autobahn's own."""
    from collections import deque
    from types import SimpleNamespace

    from autobahn.websocket.protocol import WebSocketProtocol as AutobahnProtocol
    from daphne.ws_protocol import WebSocketProtocol

    from chatproject.daphne_server import install_send_fast_path

    original, received_original = WebSocketProtocol.sendData, WebSocketProtocol.dataReceived
    install_send_fast_path()
    install_send_fast_path()  # idempotent
    try:
        fast = WebSocketProtocol.sendData
        assert fast is not original and fast._chat_fast_path

        def stats():
            return SimpleNamespace(**dict.fromkeys(("outgoingOctetsWireLevel", "preopenOutgoingOctetsWireLevel"), 0))

        def protocol(state):
            proto = WebSocketProtocol.__new__(WebSocketProtocol)
            proto.transport = type("T", (), {"write": lambda self, data: written.append(data)})()
            proto.send_queue, proto.state, proto.trafficStats = deque(), state, stats()
            proto.logOctets, proto.peer = False, "tcp:127.0.0.1:1"
            proto.triggered = []
            proto._trigger = lambda: proto.triggered.append(True)
            return proto

        for state in (AutobahnProtocol.STATE_OPEN, AutobahnProtocol.STATE_CONNECTING):
            results = []
            for send in (original, fast):
                written: list[bytes] = []
                proto = protocol(state)
                send(proto, b"\x81\x05hello")
                send(proto, b"later", sync=True)  # queued and triggered, not written now
                send(proto, b"behind the queue")  # something is queued: behind it, in order
                results.append((written, list(proto.send_queue), proto.triggered, vars(proto.trafficStats)))
            assert results[0] == results[1]
            assert results[1][0] == [b"\x81\x05hello"]
        received: list[bytes] = []
        proto = protocol(AutobahnProtocol.STATE_OPEN)
        proto._dataReceived = received.append
        proto.dataReceived(b"\x81\x85abcd")  # straight to autobahn's frame parser, as its own adapter does
        assert received == [b"\x81\x85abcd"]
    finally:
        WebSocketProtocol.sendData = original
        WebSocketProtocol.dataReceived = received_original


def test_daphnes_write_now_sends_at_once_and_queues_behind_what_twisted_still_holds():
    """``write_now``: the bytes go to the socket without a reactor turn when Twisted holds nothing for it;
    what the kernel does not take is Twisted's, and later writes wait behind it, in order."""
    from twisted.internet import tcp

    from chatproject.daphne_server import write_now

    class CountingReactor(QuietReactor):
        watched = 0

        def addWriter(self, writer) -> None:
            self.watched += 1

    ours, theirs = socket.socketpair()
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    theirs.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    theirs.setblocking(False)
    reactor = CountingReactor()
    transport = tcp.Connection(ours, None, reactor=reactor)
    transport.connected = 1

    class Producer:  # as daphne's HTTP channel, which stays the socket's streaming producer
        states: list[str] = []

        def pauseProducing(self) -> None:
            self.states.append("paused")

        def resumeProducing(self) -> None:
            self.states.append("resumed")

    transport.registerProducer(Producer(), True)
    try:
        write_now(transport, b"first")
        assert theirs.recv(100) == b"first"
        assert reactor.watched == 0 and twisted_pending_bytes(transport) == 0  # no reactor turn, nothing held
        big = bytes(range(256)) * (1 << 12)  # 1 MiB: more than the socket buffers take
        write_now(transport, big)
        assert reactor.watched == 1 and 0 < twisted_pending_bytes(transport) < len(big)
        write_now(transport, b"after")  # behind what Twisted holds, never before it
        assert twisted_pending_bytes(transport) > 5
        received = b""
        for _ in range(100_000):  # bounded: each turn moves some bytes while the peer reads
            try:
                received += theirs.recv(1 << 16)
            except BlockingIOError:
                transport.doWrite()
            if len(received) == len(big) + 5:
                break
        assert received == big + b"after"
        assert Producer.states[0] == "paused" and Producer.states[-1] == "resumed"  # by Twisted's buffer, as ever
    finally:
        ours.close()
        theirs.close()
