"""Issue 16 item 11: clients that send their request slowly are cut off; honest clients are served meanwhile.

daphne (started as the systemd unit starts it) answers 408 and closes a request whose head or body is
not complete HTTP_RECEIVE_TIMEOUT seconds after its request line; under uvicorn, which streams bodies
to the application, the SockJS receivers time out a slow body themselves (SOCKJS_BODY_TIMEOUT). The
slow clients trickle a byte every half second, so Twisted's idle timeout (60 s without a byte) never
fires. No timing is asserted: every slow connection must simply end within a generous bound.
"""

from __future__ import annotations

import selectors
import socket
import time

import httpx
import pytest

pytestmark = pytest.mark.live

SLOW_CLIENTS = 60
BOUND = 45.0  # seconds: far beyond the 2 s deadline, well short of "held forever"
TRICKLE_EVERY = 0.5


def open_slow(port: int, head: bytes) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(head)
    sock.setblocking(False)
    return sock


def trickle_until_closed(sockets: list[socket.socket], byte: bytes, honest: callable) -> tuple[int, dict[int, bytes]]:
    """Send ``byte`` on every open socket each TRICKLE_EVERY s until all are closed (or BOUND passes).

    Returns how many are still open and what each closed one received; ``honest()`` runs every round."""
    selector = selectors.DefaultSelector()
    received: dict[int, bytes] = {}
    for sock in sockets:
        selector.register(sock, selectors.EVENT_READ)
        received[sock.fileno()] = b""
    open_ = {sock.fileno(): sock for sock in sockets}
    deadline = time.monotonic() + BOUND
    while open_ and time.monotonic() < deadline:
        for key, _ in selector.select(timeout=TRICKLE_EVERY):
            sock = key.fileobj
            try:
                data = sock.recv(4096)
            except (ConnectionResetError, BlockingIOError):
                data = b""
            if data:
                received[sock.fileno()] += data
                continue
            selector.unregister(sock)
            open_.pop(sock.fileno(), None)
        for fileno, sock in list(open_.items()):
            try:
                sock.send(byte)
            except OSError:
                selector.unregister(sock)
                open_.pop(fileno, None)
        honest()
    for sock in sockets:
        sock.close()
    return len(open_), received


@pytest.fixture
def recipe_daphne(daphne_factory):
    # As deploy/systemd/chat-daphne@.service starts it: daphne_factory's daphne command plus --proxy-headers.
    # The deadline needs no flag: chatproject/asgi.py installs it whatever the entry point.
    return daphne_factory(extra_args=["--proxy-headers"], HTTP_RECEIVE_TIMEOUT="2")


def test_half_sent_handshakes_and_trickled_headers_are_closed_while_honest_clients_are_served(recipe_daphne):
    port = recipe_daphne.port
    half_sent_websocket = (
        b"GET /ws/000/abcdefgh/websocket HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\nX-Slow: "
    )
    half_sent_get = b"GET /healthz/ HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: "
    sockets = [open_slow(port, half_sent_websocket if i % 2 else half_sent_get) for i in range(SLOW_CLIENTS)]
    answers = []

    def honest() -> None:
        answers.append(httpx.get(f"{recipe_daphne.url}/healthz/", timeout=10).status_code)

    still_open, received = trickle_until_closed(sockets, b"a", honest)
    assert still_open == 0, f"{still_open} of {SLOW_CLIENTS} slow requests still held after {BOUND} s"
    assert all(data.startswith(b"HTTP/1.1 408") for data in received.values()), set(received.values())
    assert answers and set(answers) == {200}


def test_a_trickled_xhr_send_body_is_cut_off_under_daphne(recipe_daphne):
    head = (
        b"POST /ws/000/abcdefgh/xhr_send HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/plain\r\n"
        b"Content-Length: 1000\r\n\r\n["
    )
    still_open, received = trickle_until_closed([open_slow(recipe_daphne.port, head)], b" ", lambda: None)
    assert still_open == 0
    [answer] = received.values()
    assert answer.startswith(b"HTTP/1.1 408") and b"not received completely" in answer


def test_a_trickled_xhr_send_body_is_cut_off_by_sockjs_under_uvicorn_and_honest_sends_work(daphne_factory):
    server = daphne_factory(server="uvicorn", SOCKJS_BODY_TIMEOUT="1", SOCKJS_TEST_SERVICES="1")
    echo = f"{server.url}/sockjs-test/echo/000/honest"
    assert httpx.post(f"{echo}/xhr").text == "o\n"
    head = (
        b"POST /sockjs-test/echo/000/honest/xhr_send HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Content-Type: text/plain\r\nContent-Length: 1000\r\n\r\n["
    )
    replies = []

    def honest() -> None:
        replies.append(httpx.post(f"{echo}/xhr_send", content='["still here"]').status_code)

    still_open, received = trickle_until_closed([open_slow(server.port, head)], b" ", honest)
    assert still_open == 0
    [answer] = received.values()
    assert answer.startswith(b"HTTP/1.1 408") and b"did not arrive within 1 seconds" in answer
    assert replies and set(replies) == {204}
    assert httpx.post(f"{echo}/xhr").text.startswith('a["still here"')
