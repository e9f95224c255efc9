"""daphne with write backpressure: ``python -m chatproject.daphne_server <daphne arguments>``.

Takes exactly daphne's command line. The one difference: every HTTP and WebSocket scope carries
``scope["extensions"]["chat.write_buffer"]["pending_bytes"]``, the bytes of that connection still in
Twisted's socket write buffer, which the STOMP connection adds to its own queue to bound a client
that stops reading (stompengine/realtime/backpressure.py). Plain ``daphne`` works too, but then only the
connection's own queue is bounded and a non-reading client's backlog grows in daphne unchecked.

It also gives a closing WebSocket ``CLOSE_HANDSHAKE_TIMEOUT`` seconds (autobahn's default: 1) before the
TCP connection is aborted, so a client that was slow, not dead, still reads the ERROR frame that
explains the close; the abort then frees the buffer.
"""

from __future__ import annotations

import logging
from functools import partial
from typing import Any

from daphne.cli import CommandLineInterface
from daphne.server import Server

from stompengine.realtime.backpressure import EXTENSION, write_buffer_extension

logger = logging.getLogger(__name__)

CLOSE_HANDSHAKE_TIMEOUT = 5.0


def twisted_pending_bytes(transport: Any) -> int:
    """Bytes a Twisted transport has accepted but not yet written to its socket (0 when unknown).

    Reads ``twisted.internet.abstract.FileDescriptor``'s buffer: ``dataBuffer`` from ``offset`` plus the
    writes not yet joined into it (``_tempDataLen``). A TLS transport wraps the TCP one (``.transport``).
    """
    for _ in range(3):
        if transport is None:
            return 0
        buffer = getattr(transport, "dataBuffer", None)
        if buffer is not None:
            return len(buffer) - getattr(transport, "offset", 0) + getattr(transport, "_tempDataLen", 0)
        transport = getattr(transport, "transport", None)
    return 0


def protocol_pending_bytes(protocol: Any) -> int:
    """``twisted_pending_bytes`` of a daphne protocol's current transport (an HTTP request or a WebSocket)."""
    return twisted_pending_bytes(getattr(protocol, "transport", None))


class BackpressureServer(Server):
    """daphne's Server, putting the write-buffer extension into every scope it creates."""

    def create_application(self, protocol: Any, scope: dict[str, Any]) -> Any:
        """As daphne's, plus ``scope["extensions"]["chat.write_buffer"]``."""
        extensions = scope.setdefault("extensions", {})
        extensions[EXTENSION] = write_buffer_extension(partial(protocol_pending_bytes, protocol))
        if hasattr(protocol, "closeHandshakeTimeout"):
            protocol.closeHandshakeTimeout = CLOSE_HANDSHAKE_TIMEOUT
        return super().create_application(protocol, scope)


class BackpressureCommandLineInterface(CommandLineInterface):
    """daphne's command line, running BackpressureServer."""

    server_class = BackpressureServer


def main() -> None:
    """Run daphne with the adapter (the same arguments as ``daphne``)."""
    BackpressureCommandLineInterface.entrypoint()


if __name__ == "__main__":
    main()
