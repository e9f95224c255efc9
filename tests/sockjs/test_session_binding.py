"""Issue 16 item 4: a SockJS session answers only the client that opened it (key, peer address, Origin).

An intruder who knows a live session's id (it used to be in daphne's access log) could send into it and
take its frames. Each intruder here knows the id and differs from the opener in one respect: no key
and no Origin, another issued key, another Origin, another address (127.0.0.2: Linux routes all of
127/8 to loopback). Every HTTP transport refuses it with 403 and a JSON reason, and the opener's
session carries on untouched.
"""

from __future__ import annotations

import secrets
import socket
import time

import httpx
import pytest

from sockjs.protocol import session_fingerprint

pytestmark = pytest.mark.live

ORIGIN = "http://frontend.example:8080"
OTHER_ORIGIN = "http://localhost:9999"
OTHER_PEER = "127.0.0.2"

# (method, transport suffix, query) for every way of taking a session's frames or sending into it.
RECEIVERS = [
    ("POST", "xhr", {}),
    ("POST", "xhr_streaming", {}),
    ("GET", "eventsource", {}),
    ("GET", "htmlfile", {"c": "callback"}),
    ("GET", "jsonp", {"c": "callback"}),
]
SENDERS = [
    ("POST", "xhr_send", {}, b'["intruder"]', "text/plain"),
    ("POST", "jsonp_send", {}, b'd=["intruder"]', "application/x-www-form-urlencoded"),
]


def client(peer: str | None = None) -> httpx.Client:
    transport = httpx.HTTPTransport(local_address=peer) if peer else None
    return httpx.Client(transport=transport, timeout=10)


def issue_key(base: str) -> str:
    with client() as http:
        r = http.post(f"{base}/key", headers={"Origin": ORIGIN})
    assert r.status_code == 200, r.text
    assert r.headers["cache-control"].startswith("no-store")
    return r.json()["key"]


class Opener:
    """The legitimate client: its own key, Origin and address, a 32-character session id."""

    def __init__(self, base: str, *, key: str | None = None, origin: str | None = ORIGIN) -> None:
        self.key = key
        self.origin = origin
        self.url = f"{base}/000/{secrets.token_hex(16)}"

    def params(self, extra: dict | None = None) -> dict:
        return {**({"key": self.key} if self.key else {}), **(extra or {})}

    def headers(self) -> dict:
        return {"Origin": self.origin} if self.origin else {}

    def poll(self) -> httpx.Response:
        with client() as http:
            return http.post(f"{self.url}/xhr", params=self.params(), headers=self.headers())

    def send(self, *messages: str) -> httpx.Response:
        body = "[" + ",".join(f'"{m}"' for m in messages) + "]"
        with client() as http:
            return http.post(f"{self.url}/xhr_send", params=self.params(), headers=self.headers(), content=body)


INTRUDERS = {
    "no key, no origin": lambda o, other_key: ({}, {}, None),
    "another issued key": lambda o, other_key: ({"key": other_key}, o.headers(), None),
    "another origin": lambda o, other_key: (o.params(), {"Origin": OTHER_ORIGIN}, None),
    "another address": lambda o, other_key: (o.params(), o.headers(), OTHER_PEER),
}
REASONS = {
    "no key, no origin": "session key",
    "another issued key": "session key",
    "another origin": "another origin",
    "another address": "another address",
}


@pytest.fixture
def echo(project_sockjs_server) -> str:
    return f"{project_sockjs_server.top}/echo"


@pytest.fixture
def opened(echo) -> Opener:
    opener = Opener(echo, key=issue_key(echo))
    assert opener.poll().text == "o\n"
    assert opener.send("mine").status_code == 204
    return opener


def assert_refused(r: httpx.Response, reason: str = "open a new session") -> None:
    assert r.status_code == 403, (r.status_code, r.text[:200])
    assert reason in r.json()["detail"]
    assert "access-control-allow-origin" in r.headers  # a browser page may read why


@pytest.mark.parametrize("intruder", INTRUDERS)
@pytest.mark.parametrize(("method", "transport", "query"), RECEIVERS, ids=[r[1] for r in RECEIVERS])
def test_intruder_cannot_take_the_frames_of_a_live_session(echo, opened, intruder, method, transport, query):
    params, headers, peer = INTRUDERS[intruder](opened, issue_key(echo))
    with client(peer) as http:
        r = http.request(method, f"{opened.url}/{transport}", params={**params, **query}, headers=headers)
    assert_refused(r, REASONS[intruder])
    # The opener's echo is still there for the opener.
    assert opened.poll().text == 'a["mine"]\n'


@pytest.mark.parametrize("intruder", INTRUDERS)
@pytest.mark.parametrize(("method", "transport", "query", "body", "content_type"), SENDERS, ids=[s[1] for s in SENDERS])
def test_intruder_cannot_send_into_a_live_session(echo, opened, intruder, method, transport, query, body, content_type):
    params, headers, peer = INTRUDERS[intruder](opened, issue_key(echo))
    with client(peer) as http:
        r = http.request(
            method, f"{opened.url}/{transport}", params={**params, **query}, content=body,
            headers={**headers, "Content-Type": content_type},
        )  # fmt: skip
    assert_refused(r, REASONS[intruder])
    assert opened.poll().text == 'a["mine"]\n'  # "intruder" was never echoed
    assert opened.send("again").status_code == 204
    assert opened.poll().text == 'a["again"]\n'


def test_a_key_the_server_did_not_issue_cannot_open_a_session(echo):
    forged = Opener(echo, key="A" * 43)
    with client() as http:
        r = http.post(f"{forged.url}/xhr", params=forged.params(), headers=forged.headers())
    assert r.status_code == 403
    assert "/key" in r.json()["detail"]


def test_keyless_short_id_session_is_still_bound_to_its_address_and_origin(echo):
    # The protocol lets any client open "/000/abc/xhr" without a key; such a session still refuses
    # other addresses and other origins.
    opener = Opener(echo, key=None)
    opener.url = opener.url.rsplit("/", 1)[0] + "/" + secrets.token_hex(3)
    assert opener.poll().text == "o\n"
    assert opener.send("short").status_code == 204
    with client(OTHER_PEER) as http:
        assert_refused(http.post(f"{opener.url}/xhr", headers=opener.headers()))
    with client() as http:
        assert_refused(http.post(f"{opener.url}/xhr", headers={"Origin": OTHER_ORIGIN}))
        assert_refused(http.post(f"{opener.url}/xhr", params={"key": issue_key(echo)}, headers=opener.headers()))
    assert opener.poll().text == 'a["short"]\n'


def test_after_an_aborted_poll_the_opener_reconnects_and_an_intruder_is_still_refused(echo, opened):
    assert opened.poll().text == 'a["mine"]\n'
    # A poll that waits (nothing queued), then the client drops it: the session ends (1002).
    path = opened.url.split("/", 3)[3]
    host, port = opened.url.split("/")[2].split(":")
    sock = socket.create_connection((host, int(port)))
    sock.sendall(
        f"POST /{path}/xhr?key={opened.key} HTTP/1.1\r\nHost: {host}:{port}\r\nOrigin: {ORIGIN}\r\n"
        "Content-Length: 0\r\n\r\n".encode()
    )
    time.sleep(0.3)  # let the poll attach before dropping it (not a timing assertion)
    sock.close()
    # The request that takes the id over after the abort is held to the same binding.
    for _ in range(100):  # bounded: the disconnect reaches the server asynchronously
        reply = opened.poll().text
        if reply == "o\n":
            break
        time.sleep(0.05)
    assert reply == "o\n", reply  # a new session for the opener, under the same id
    assert opened.send("after").status_code == 204
    with client(OTHER_PEER) as http:
        assert_refused(http.post(f"{opened.url}/xhr", params=opened.params(), headers=opened.headers()))
    with client() as http:
        assert_refused(http.post(f"{opened.url}/xhr"))
    assert opened.poll().text == 'a["after"]\n'


def test_session_ids_and_keys_never_reach_the_access_log(project_sockjs_server, opened):
    opened.poll()
    log = project_sockjs_server.log()
    session_id = opened.url.rsplit("/", 1)[1]
    # daphne logged the requests, with a one-way tag of the id that keeps one session's lines together.
    assert f"/000/[redacted:{session_fingerprint(session_id)}]/xhr_send?key=[redacted]" in log
    assert session_id not in log
    assert opened.key not in log
