"""sockjs/daphne.py without a server: the handshake error answers and the patch's idempotence."""

from __future__ import annotations

from daphne.server import Server
from daphne.ws_protocol import WebSocketProtocol

from sockjs.daphne import handshake_error_response, install_daphne_websocket_fixes


def parse(raw: bytes) -> tuple[str, dict[str, str], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    status, *lines = head.decode("latin-1").split("\r\n")
    return status, {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}, body


def test_a_refused_handshake_gets_a_complete_400_with_its_reason():
    status, headers, body = parse(handshake_error_response(400, "HTTP Connection header missing"))
    assert status == "HTTP/1.1 400 Bad Request"
    assert int(headers["content-length"]) == len(body)
    assert headers["connection"] == "close"
    assert b"Not a valid websocket request: HTTP Connection header missing" in body


def test_a_refused_method_gets_405_with_allow_and_no_body():
    status, headers, body = parse(handshake_error_response(405, 'HTTP method "POST" not allowed'))
    assert status == "HTTP/1.1 405 Method Not Allowed"
    assert headers["allow"] == "GET"
    assert headers["content-length"] == "0"
    assert "content-type" not in headers
    assert body == b""


def test_installing_twice_patches_once_and_keeps_the_last_limit(settings):
    try:
        install_daphne_websocket_fixes(1000)
        handle_reply = WebSocketProtocol.handle_reply
        install_daphne_websocket_fixes(2000)
        assert WebSocketProtocol.handle_reply is handle_reply
        assert Server._chat_websocket_max_message_size == 2000
    finally:
        install_daphne_websocket_fixes(settings.WEBSOCKET_MAX_MESSAGE_SIZE)
