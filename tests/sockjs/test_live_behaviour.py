"""Live rules beyond the conformance suite: origin policy, public /info, heartbeats, reaping, cookies."""

from __future__ import annotations

import json
import time
import uuid

import httpx
import pytest
import websocket
from rawhttp import RawHttpConnection

pytestmark = pytest.mark.live

ALLOWED = "http://frontend.example:8080"
FOREIGN = "https://evil.example"
TIMEOUT = 10.0


def restricted(server) -> str:
    return f"{server.url}/sockjs-restricted/echo"


def poll_until(predicate, *, attempts: int = 200, interval: float = 0.05):
    """Bounded polling; returns the first truthy result of ``predicate()`` or fails."""
    for _ in range(attempts):
        result = predicate()
        if result:
            return result
        time.sleep(interval)
    raise AssertionError("condition never held")


@pytest.mark.parametrize(
    ("method", "suffix"),
    [("GET", "/info"), ("OPTIONS", "/info"), ("POST", "/000/s/xhr"), ("OPTIONS", "/000/s/xhr"),
     ("POST", "/000/s/xhr_send"), ("GET", "/000/s/eventsource"), ("GET", "/000/s/jsonp?c=x")],
)  # fmt: skip
def test_disallowed_origin_gets_403_with_a_json_reason_and_no_cors(standalone_sockjs_server, method, suffix):
    r = httpx.request(
        method, restricted(standalone_sockjs_server) + suffix, headers={"Origin": FOREIGN}, timeout=TIMEOUT
    )
    assert r.status_code == 403
    assert r.headers["content-type"].startswith("application/json")
    assert FOREIGN in r.json()["detail"]
    assert "access-control-allow-origin" not in r.headers


def test_null_origin_is_refused_by_a_restricted_endpoint(standalone_sockjs_server):
    r = httpx.get(restricted(standalone_sockjs_server) + "/info", headers={"Origin": "null"}, timeout=TIMEOUT)
    assert r.status_code == 403


def test_allowed_origin_is_echoed_with_credentials(standalone_sockjs_server):
    r = httpx.get(restricted(standalone_sockjs_server) + "/info", headers={"Origin": ALLOWED}, timeout=TIMEOUT)
    assert r.status_code == 200
    assert r.headers["access-control-allow-origin"] == ALLOWED
    assert r.headers["access-control-allow-credentials"] == "true"
    assert "Origin" in r.headers["vary"]


def test_request_without_origin_is_not_a_browser_and_is_served(standalone_sockjs_server):
    r = httpx.post(restricted(standalone_sockjs_server) + f"/000/{uuid.uuid4()}/xhr", timeout=TIMEOUT)
    assert (r.status_code, r.text) == (200, "o\n")


def test_disallowed_origin_cannot_open_the_websocket(standalone_sockjs_server):
    url = "ws" + restricted(standalone_sockjs_server)[4:] + f"/000/{uuid.uuid4()}/websocket"
    with pytest.raises(websocket.WebSocketBadStatusException):
        websocket.create_connection(url, origin=FOREIGN, timeout=TIMEOUT)
    ws = websocket.create_connection(url, origin=ALLOWED, timeout=TIMEOUT)
    assert ws.recv() == "o"
    ws.close()


def test_info_is_public_whatever_credentials_come_along(project_sockjs_server):
    # A bad token or a stale session cookie must not turn /info into 401, 403 or a login redirect.
    r = httpx.get(
        project_sockjs_server.top + "/echo/info",
        headers={"Authorization": "Bearer not-a-jwt", "Cookie": "sessionid=stale"},
        follow_redirects=False,
        timeout=TIMEOUT,
    )
    assert r.status_code == 200
    assert json.loads(r.text)["websocket"] is True


def test_unknown_paths_under_the_prefix_are_404_never_a_redirect(project_sockjs_server):
    for suffix in ["/nope", "/a/b/c/d", "/000/s/unknown_transport"]:
        r = httpx.get(project_sockjs_server.top + "/echo" + suffix, follow_redirects=False, timeout=TIMEOUT)
        assert r.status_code == 404


def test_polling_receiver_gets_a_heartbeat_when_idle(fast_sockjs_server):
    url = f"{fast_sockjs_server.top}/echo/000/{uuid.uuid4()}"
    assert httpx.post(url + "/xhr", timeout=TIMEOUT).text == "o\n"
    assert httpx.post(url + "/xhr", timeout=TIMEOUT).text == "h\n"


def test_websocket_receives_heartbeats(fast_sockjs_server):
    ws = websocket.create_connection(
        f"{fast_sockjs_server.ws_url}/sockjs-test/echo/000/{uuid.uuid4()}/websocket", timeout=TIMEOUT
    )
    try:
        assert ws.recv() == "o"
        assert ws.recv() == "h"
        assert ws.recv() == "h"
    finally:
        ws.close()


def test_streaming_heartbeat_frames(fast_sockjs_server):
    url = f"{fast_sockjs_server.top}/echo/000/{uuid.uuid4()}/eventsource"
    c = RawHttpConnection(url)
    try:
        c.request("GET", url)
        assert c.read_chunk() == b"\r\n"
        assert c.read_chunk() == b"data: o\r\n\r\n"
        assert c.read_chunk() == b"data: h\r\n\r\n"
    finally:
        c.close()


def test_abandoned_session_is_reaped_after_the_disconnect_delay(fast_sockjs_server):
    url = f"{fast_sockjs_server.top}/echo/000/{uuid.uuid4()}"
    assert httpx.post(url + "/xhr", timeout=TIMEOUT).text == "o\n"
    # No receiver now: after the (0.3 s) delay the session is gone and sends get 404.
    poll_until(lambda: httpx.post(url + "/xhr_send", content=b'["x"]', timeout=TIMEOUT).status_code == 404)
    # The same id then starts a new session.
    assert httpx.post(url + "/xhr", timeout=TIMEOUT).text == "o\n"


def test_closed_session_keeps_answering_close_until_reaped_then_reopens(fast_sockjs_server):
    url = f"{fast_sockjs_server.top}/close/000/{uuid.uuid4()}"
    assert httpx.post(url + "/xhr", timeout=TIMEOUT).text == "o\n"
    assert httpx.post(url + "/xhr", timeout=TIMEOUT).text == 'c[3000,"Go away!"]\n'
    # Every request restarts the disconnect delay, so poll less often than the (0.3 s) delay.
    poll_until(lambda: httpx.post(url + "/xhr", timeout=TIMEOUT).text == "o\n", attempts=40, interval=0.5)


def test_session_cookie_gets_samesite_none_secure_only_over_https():
    # Over plain http a Secure cookie would be dropped; the conformance suite checks the http form.
    from sockjs.consumers import _HttpConsumer
    from sockjs.endpoint import SockJSEndpoint

    endpoint = SockJSEndpoint("x", lambda s: None, cookie_needed=True)
    consumer = _HttpConsumer(endpoint)
    consumer.scope = {"scheme": "https", "headers": [(b"cookie", b"JSESSIONID=abc")]}
    assert consumer.session_cookie() == [(b"set-cookie", b"JSESSIONID=abc; path=/; SameSite=None; Secure")]
    consumer.scope = {"scheme": "http", "headers": []}
    assert consumer.session_cookie() == [(b"set-cookie", b"JSESSIONID=dummy; path=/")]


def test_same_origin_requests_pass_a_restricted_endpoint_and_foreign_ones_do_not(standalone_sockjs_server):
    # The iframe transports run in iframe.html, a page of the endpoint's own origin: allowed. A page of
    # any other origin, even on the same host with another port, is still refused.
    url = restricted(standalone_sockjs_server) + "/info"
    own = f"http://127.0.0.1:{standalone_sockjs_server.port}"
    r = httpx.get(url, headers={"Origin": own}, timeout=TIMEOUT)
    assert (r.status_code, r.headers["access-control-allow-origin"]) == (200, own)
    for foreign in (f"http://127.0.0.1:{standalone_sockjs_server.port + 1}", "http://evil.example", "null"):
        assert httpx.get(url, headers={"Origin": foreign}, timeout=TIMEOUT).status_code == 403
