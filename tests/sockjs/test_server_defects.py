"""Where uvicorn itself departs from the SockJS protocol, proven with bare ASGI applications.

The SockJS layer cannot change these answers: the same request to a few-line ASGI application
(support/minimal_asgi.py) on the same server gets the same answer. Each test asserts the defect, so it
fails (and says so) on the day uvicorn fixes it; the deployment that avoids each is in the README.
"""

from __future__ import annotations

import pytest
from rawhttp import RawHttpConnection

pytestmark = pytest.mark.live


def test_uvicorn_httptools_chunks_a_streaming_response_to_an_http10_client(start_bare_uvicorn):
    # HTTP/1.0 has no chunked encoding; the protocol (Http10.test_streaming) wants the body raw, ended
    # by closing the connection. uvicorn's httptools protocol chunks anyway; its h11 protocol does not.
    # Deployment: uvicorn --http h11, or nginx in front (it speaks HTTP/1.1 to uvicorn and HTTP/1.0 back).
    for http, chunked in (("httptools", True), ("h11", False)):
        server = start_bare_uvicorn("minimal_asgi:streaming", http)
        c = RawHttpConnection(server.url)
        try:
            r = c.request("GET", server.url + "/", http="1.0")
            assert r.status == 200
            assert (r["transfer-encoding"] == "chunked") is chunked, (http, r.headers)
        finally:
            c.close()


def test_uvicorn_answers_a_websocket_post_with_its_own_405_body(start_bare_uvicorn):
    # The protocol's WebsocketHttpErrors.test_invalidMethod wants a 405 with no body and no content type.
    # uvicorn (websockets) refuses a POST carrying Upgrade: websocket before any application runs: a
    # complete 405 with Allow: GET, but with a text body. Deployment: nginx in front, which passes only
    # GET upgrades (proxy_set_header Connection $connection_upgrade), or daphne.
    server = start_bare_uvicorn("minimal_asgi:empty_405", "h11")
    url = server.url + "/echo/0/0/websocket"
    c = RawHttpConnection(url)
    try:
        r = c.request("POST", url, headers={"Upgrade": "WebSocket", "Connection": "Upgrade"})
        assert r.status == 405
        assert r["allow"] == "GET"
        assert r["content-length"] and int(r["content-length"]) > 0
        assert r["content-type"]
    finally:
        c.close()
