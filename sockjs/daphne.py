"""daphne's WebSocket layer (autobahn), made to answer what SockJS (and STOMP) clients need to hear.

Three gaps in daphne 4 / autobahn, closed by a patch installed on import of the ASGI application
(``install_daphne_websocket_fixes`` from the ASGI module); other servers (uvicorn) are untouched and
already behave:

* **Close reasons.** daphne drops the ``reason`` of an application's ``websocket.close``; the SockJS raw
  WebSocket endpoint must deliver ``3000 "Go away!"`` with its reason.
* **Messages over the size limit.** autobahn's default ``failByDrop`` drops the TCP connection when a
  message exceeds ``maxMessagePayloadSize``; the client never learns why. With ``failByDrop`` off it
  sends a close frame with code 1009 (message too big) and its reason. The limit itself is
  the ``max_message_size`` given here (the project passes WEBSOCKET_MAX_MESSAGE_SIZE), applied when
  daphne starts, whatever ``--websocket_max_message_size`` says, so the two limits cannot drift apart.
* **Failed handshakes.** autobahn answers a bad upgrade request (``Connection: close`` with
  ``Upgrade: websocket``, a POST) with a status line and nothing else: no length, no
  ``Connection: close``. The answer here is a complete HTTP response (``400``/``405`` with ``Allow``,
  a length and ``Connection: close``).
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

logger = logging.getLogger(__name__)

_PATCHED = "_chat_websocket_patch"


def handshake_error_response(code: int, reason: str) -> bytes:
    """A complete HTTP/1.1 error response for a refused WebSocket handshake."""
    try:
        phrase = HTTPStatus(code).phrase
    except ValueError:
        phrase = "Error"
    if code == 405:
        # As the SockJS protocol wants a 405: the allowed method, no body and no content type.
        head = [f"HTTP/1.1 405 {phrase}", "Allow: GET", "Content-Length: 0", "Connection: close"]
        return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1")
    body = f"Not a valid websocket request: {reason}\n".encode()
    head = [
        f"HTTP/1.1 {code} {phrase}",
        "Content-Type: text/plain; charset=UTF-8",
        f"Content-Length: {len(body)}",
        "Connection: close",
    ]
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body


def install_daphne_websocket_fixes(max_message_size: int | None = None) -> None:
    """Patch daphne's WebSocket protocol and server (idempotent; no-op without daphne).

    ``max_message_size``: the WebSocket message limit daphne starts with (None keeps its command line's).
    """
    try:
        from daphne.server import Server
        from daphne.ws_protocol import WebSocketFactory, WebSocketProtocol
    except ImportError:
        return
    if getattr(WebSocketProtocol, _PATCHED, False):
        Server._chat_websocket_max_message_size = max_message_size  # type: ignore[attr-defined]
        return

    original_handle_reply = WebSocketProtocol.handle_reply

    def handle_reply(self: Any, message: dict[str, Any]) -> None:
        if message.get("type") == "websocket.close" and self.state != self.STATE_CONNECTING:
            code = message.get("code")
            self.sendClose(code=1000 if code is None else code, reason=message.get("reason") or None)
            return
        original_handle_reply(self, message)

    def send_http_error_response(self: Any, code: int, reason: str, response_headers: Any = None) -> None:
        self.sendData(handshake_error_response(code, reason))

    original_factory_init = WebSocketFactory.__init__

    def factory_init(self: Any, *args: Any, **kwargs: Any) -> None:
        original_factory_init(self, *args, **kwargs)
        # A protocol violation (a message over the limit, say) gets a close frame with its code.
        self.setProtocolOptions(failByDrop=False)

    original_run = Server.run

    def run(self: Any) -> None:
        limit = Server._chat_websocket_max_message_size  # type: ignore[attr-defined]
        if limit is not None and self.websocket_max_message_size != limit:
            logger.info(
                "daphne WebSocket message limit set to %d bytes (WEBSOCKET_MAX_MESSAGE_SIZE, from "
                "STOMP_MAX_FRAME_SIZE) instead of %d",
                limit,
                self.websocket_max_message_size,
            )
            self.websocket_max_message_size = limit
        original_run(self)

    WebSocketProtocol.handle_reply = handle_reply  # type: ignore[method-assign]
    WebSocketProtocol.sendHttpErrorResponse = send_http_error_response  # type: ignore[method-assign]
    WebSocketFactory.__init__ = factory_init  # type: ignore[method-assign]
    Server.run = run  # type: ignore[method-assign]
    Server._chat_websocket_max_message_size = max_message_size  # type: ignore[attr-defined]
    setattr(WebSocketProtocol, _PATCHED, True)
