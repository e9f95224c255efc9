"""What the current sockjs-protocol text (``sockjs-protocol.py``) checks beyond the 0.3.3 port, live.

Run against the project on daphne and on uvicorn with ``FRONTEND_ORIGINS=*`` and the protocol test
services (echo, close, disabled_websocket_echo, cookie_needed_echo), and against the STOMP endpoint
``/ws`` for everything a transport-only endpoint must do (its handler speaks STOMP, so only the
transport's own answers are compared there). Also the two STOMP frames that must never hang a
connection (issue 19), over the raw STOMP WebSocket.
"""

from __future__ import annotations

import time
import uuid

import httpx
import pytest
import websocket
from rawhttp import RawHttpConnection
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect as ws_connect

pytestmark = pytest.mark.live

TIMEOUT = 10.0
NO_CACHE = "no-store, no-cache, no-transform, must-revalidate, max-age=0"


@pytest.fixture(scope="module", params=["daphne", "uvicorn"])
def server(request, sockjs_daphne, sockjs_uvicorn):
    start = sockjs_daphne if request.param == "daphne" else sockjs_uvicorn
    live = start("chatproject.asgi:application", FRONTEND_ORIGINS="*")
    return live


@pytest.fixture(scope="module", params=["echo", "ws"])
def base(request, server):
    """A transport endpoint: the protocol's echo service, or the project's STOMP endpoint ``/ws``."""
    return f"{server.url}/sockjs-test/echo" if request.param == "echo" else f"{server.url}/ws"


def session_url(base: str) -> str:
    return f"{base}/000/{uuid.uuid4()}"


def ws_of(url: str) -> str:
    return "ws" + url[len("http") :]


def complete(r) -> bool:
    """A response a client can read to its end: a length, a chunked body, or the connection closed after it."""
    return bool(
        r["content-length"] or r["transfer-encoding"] == "chunked" or (r["connection"] or "").lower() == "close"
    )


# --- Transport-only behaviour, on the echo service and on /ws ---------------------------------------------


def test_info_allows_test_and_null_origins_with_their_own_cors_answer(base):
    for origin in ("test", "null"):
        r = httpx.get(base + "/info", headers={"Origin": origin}, timeout=TIMEOUT)
        assert r.status_code == 200
        assert r.headers["access-control-allow-origin"] == origin
        assert r.headers["access-control-allow-credentials"] == "true"
        assert r.headers["cache-control"] == NO_CACHE
        r = httpx.options(
            base + "/info", headers={"Origin": origin, "Access-Control-Request-Method": "POST"}, timeout=TIMEOUT
        )
        assert r.status_code == 204
        assert r.headers["access-control-allow-origin"] == origin
    r = httpx.get(base + "/info", timeout=TIMEOUT)
    assert r.headers["access-control-allow-origin"] == "*"
    assert "access-control-allow-credentials" not in r.headers


def test_iframe_page_loads_the_client_then_bootstraps(base):
    r = httpx.get(base + "/iframe.html", timeout=TIMEOUT)
    assert r.status_code == 200
    head = r.text.split("</head>")[0]
    assert head.index("<script src=") < head.index("SockJS.bootstrap_iframe();")
    assert "_sockjs_onload" not in r.text


def test_transports_are_never_cached_nor_transformed(base):
    url = session_url(base)
    r = httpx.post(url + "/xhr", headers={"Origin": "test"}, timeout=TIMEOUT)
    assert (r.status_code, r.text) == (200, "o\n")
    assert r.headers["cache-control"] == NO_CACHE
    assert r.headers["access-control-allow-origin"] == "test"


def test_short_session_ids_are_accepted(base):
    suffix = str(time.monotonic_ns())
    for part in (f"/a/a{suffix}", f"/_/_{suffix}", f"/1/{suffix}"):
        r = httpx.post(base + part + "/xhr", timeout=TIMEOUT)
        assert (r.status_code, r.text) == (200, "o\n")


def test_eventsource_content_type_is_exactly_text_event_stream(base):
    c = RawHttpConnection(base)
    try:
        r = c.request("GET", session_url(base) + "/eventsource")
        assert r.status == 200
        assert r["content-type"] == "text/event-stream"
        assert r["cache-control"] == NO_CACHE
        assert c.read_chunk() == b"\r\n"
        assert c.read_chunk() == b"data: o\r\n\r\n"
    finally:
        c.close()


def test_jsonp_answers_start_with_an_empty_comment(base):
    r = httpx.get(session_url(base) + "/jsonp?c=%63allback", timeout=TIMEOUT)
    assert r.status_code == 200
    assert r.text == '/**/callback("o");\r\n'
    assert r.headers["cache-control"] == NO_CACHE


def test_http10_greeting_has_a_length_and_keeps_alive_only_when_asked(base):
    c = RawHttpConnection(base)
    try:
        r = c.request("GET", base, http="1.0", headers={"Connection": "Keep-Alive"})
        assert r.status == 200
        assert not r["transfer-encoding"]
        if not r["content-length"]:
            assert (r["connection"] or "").lower() == "close"
            assert c.read(100) == b"Welcome to SockJS!\n"
            assert c.closed()
        else:
            assert int(r["content-length"]) == 19
            assert c.read(19) == b"Welcome to SockJS!\n"
            connection = (r["connection"] or "").lower()
            if connection in ("close", ""):
                assert c.closed()
            else:
                assert connection == "keep-alive"
                assert c.request("GET", base, http="1.0", headers={"Connection": "Keep-Alive"}).status == 200
    finally:
        c.close()


@pytest.mark.parametrize("path", ["/info", "/nope", "/000/x/xhr_send", "/iframe.html"])
def test_http10_plain_responses_can_be_read_to_their_end(base, path):
    c = RawHttpConnection(base)
    try:
        method = "POST" if path.endswith("xhr_send") else "GET"
        r = c.request(method, base + path, http="1.0")
        assert not r["transfer-encoding"]
        assert r["content-length"] or (r["connection"] or "").lower() == "close"
    finally:
        c.close()


def test_websocket_handshake_errors_are_complete_http_responses(base, server):
    url = session_url(base) + "/websocket"
    c = RawHttpConnection(url)
    try:
        r = c.request("GET", url, headers={"Upgrade": "WebSocket", "Connection": "close"})
        assert r.status == 400
        assert complete(r), r.headers
        if r["content-length"]:
            assert len(c.read(int(r["content-length"]))) == int(r["content-length"])
    finally:
        c.close()
    for headers in ({"Upgrade": "WebSocket", "Connection": "Upgrade"}, {}):
        c = RawHttpConnection(url)
        try:
            r = c.request("POST", url, headers=headers)
            assert r.status == 405
            assert r["allow"]
            assert complete(r), r.headers
            if server.name == "uvicorn" and headers:
                # uvicorn answers a POST upgrade itself, with a text body (test_server_defects.py).
                continue
            assert not r["content-type"]
            assert int(r["content-length"] or 0) == 0
        finally:
            c.close()


def test_broken_json_over_websocket_closes_with_a_close_frame(base):
    with ws_connect(ws_of(session_url(base)) + "/websocket", open_timeout=TIMEOUT) as ws:
        assert ws.recv(timeout=TIMEOUT) == "o"
        ws.send('["a')
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=TIMEOUT)
    # A close frame arrived (websockets records it), not a dropped TCP connection.
    assert closed.value.rcvd is not None


def test_aborted_poll_is_taken_over_by_the_next_poll_of_the_same_client(base):
    url = session_url(base)
    assert httpx.post(url + "/xhr", timeout=TIMEOUT).text == "o\n"
    poll = RawHttpConnection(url)
    path = "/" + url.split("/", 3)[3] + "/xhr"
    poll.send(f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n\r\n".encode())
    time.sleep(0.25)  # the protocol suite's own pause: the poll is now waiting on the session
    second = httpx.post(url + "/xhr", timeout=TIMEOUT)
    assert second.text == 'c[2010,"Another connection still open"]\n'
    poll.close()  # the client aborts its poll...
    third = httpx.post(url + "/xhr", timeout=TIMEOUT)  # ...and polls again at once
    assert third.text in ("o\n", 'c[1002,"Connection interrupted"]\n')


def test_aborted_streaming_is_taken_over_too(base):
    url = session_url(base)
    first = RawHttpConnection(url)
    first.request("POST", url + "/xhr_streaming")
    assert first.read_chunk().startswith(b"h")
    assert first.read_chunk() == b"o\n"
    first.close()
    again = RawHttpConnection(url)
    try:
        again.request("POST", url + "/xhr_streaming")
        assert again.read_chunk().startswith(b"h")
        assert again.read_chunk() in (b"o\n", b'c[1002,"Connection interrupted"]\n')
    finally:
        again.close()


def test_a_take_over_passes_the_session_binding(server):
    # A session opened with a server-issued key is taken over only with that key, never by another client.
    base = f"{server.url}/sockjs-test/echo"
    key = httpx.post(base + "/key", timeout=TIMEOUT).json()["key"]
    url = session_url(base)
    assert httpx.post(f"{url}/xhr?key={key}", timeout=TIMEOUT).text == "o\n"
    poll = RawHttpConnection(url)
    path = "/" + url.split("/", 3)[3] + f"/xhr?key={key}"
    poll.send(f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n\r\n".encode())
    time.sleep(0.25)
    intruder = httpx.post(url + "/xhr", timeout=TIMEOUT)
    assert intruder.status_code == 403
    poll.close()
    intruder = httpx.post(url + "/xhr", timeout=TIMEOUT)
    assert intruder.status_code == 403
    owner = httpx.post(f"{url}/xhr?key={key}", timeout=TIMEOUT)
    assert owner.text in ("o\n", 'c[1002,"Connection interrupted"]\n')


# --- The test services ----------------------------------------------------------------------------------------


def test_raw_websocket_close_carries_its_reason(server):
    with (
        ws_connect(f"{server.ws_url}/sockjs-test/close/websocket", open_timeout=TIMEOUT) as ws,
        pytest.raises(ConnectionClosed) as closed,
    ):
        ws.recv(timeout=TIMEOUT)
    assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (3000, "Go away!")


def test_raw_websocket_echoes_text(server):
    ws = websocket.create_connection(f"{server.ws_url}/sockjs-test/echo/websocket", timeout=TIMEOUT)
    try:
        ws.send("Hello world!\uffff")
        assert ws.recv() == "Hello world!\uffff"
    finally:
        ws.close()


def test_sockjs_websocket_close_service(server):
    with ws_connect(f"{server.ws_url}/sockjs-test/close/000/{uuid.uuid4()}/websocket", open_timeout=TIMEOUT) as ws:
        assert ws.recv(timeout=TIMEOUT) == "o"
        assert ws.recv(timeout=TIMEOUT) == 'c[3000,"Go away!"]'
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=TIMEOUT)


def test_cookie_service_sets_jsessionid_on_jsonp(server):
    url = session_url(f"{server.url}/sockjs-test/cookie_needed_echo")
    r = httpx.get(url + "/jsonp?c=%63allback", timeout=TIMEOUT)
    assert r.text == '/**/callback("o");\r\n'
    assert r.headers["set-cookie"].split(";")[0] == "JSESSIONID=dummy"


# --- STOMP frames that must never hang a connection -------------------------------------------------------


def test_stomp_frame_without_a_line_break_gets_error_and_close(server):
    with ws_connect(f"{server.ws_url}/ws", subprotocols=["v12.stomp"], open_timeout=TIMEOUT) as ws:
        ws.send(b"\x01\x02 not a frame\x00")
        error = ws.recv(timeout=TIMEOUT)
        error = error if isinstance(error, bytes) else error.encode()
        assert error.startswith(b"ERROR\n")
        assert b"message:malformed frame\n" in error
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=TIMEOUT)


def test_websocket_message_over_the_server_limit_is_closed_with_1009(server):
    from django.conf import settings  # the test settings: the same defaults as the server's

    too_big = b"x" * (settings.WEBSOCKET_MAX_MESSAGE_SIZE + 1)
    with ws_connect(f"{server.ws_url}/ws", subprotocols=["v12.stomp"], open_timeout=TIMEOUT, max_size=None) as ws:
        ws.send(too_big)
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=TIMEOUT)
    assert closed.value.rcvd is not None, "the server dropped the connection without a close frame"
    assert closed.value.rcvd.code == 1009
