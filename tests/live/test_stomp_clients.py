"""Real STOMP clients against a live daphne: @stomp/stompjs in Node and stomp.py over WebSocket, with JWTs."""

from __future__ import annotations

import json
import queue
import subprocess
import time

import pytest
import stomp
from rest_framework_simplejwt.tokens import AccessToken

from tests.conftest import node_script

pytestmark = pytest.mark.live
WAIT = 10.0
SERVER_ENV = {"STOMP_HEARTBEAT_SEND_MS": "200", "STOMP_HEARTBEAT_RECEIVE_MS": "200"}


def token_for(user) -> str:
    return str(AccessToken.for_user(user))


def run_node(scenario: str, server, **env: str) -> dict:
    completed = node_script("stompjs_scenarios.mjs", scenario, f"{server.ws_url}/ws", env=env, timeout=40)
    assert completed.returncode == 0, completed.stderr
    return json.loads(completed.stdout.strip().splitlines()[-1])


def test_stompjs_runs_every_frame_against_daphne(daphne_factory, make_user):
    server = daphne_factory(**SERVER_ENV)
    out = run_node("full", server, TOKEN_A=token_for(make_user("alice")), TOKEN_B=token_for(make_user("bob")))
    assert out["errors"] == [] and not out.get("timedOut"), out
    assert out["connected"]["version"] == "1.2"
    assert out["connected"]["user-name"] == "alice"
    assert out["connected"]["heart-beat"] == "200,200"
    assert dict(out["steps"]) == {
        "subscribe-receipt": "sub-1", "send-receipt": "send-1", "ack-receipt": "ack-1", "nack-receipt": "nack-1",
    }  # fmt: skip
    assert out["message"]["body"] == "hello from stompjs"
    assert out["message"]["headers"]["x-custom"] == "yes"
    assert out["message"]["headers"]["destination"] == "/topic/js"
    assert out["binary"] == [104, 0, 105]
    assert out["ackHeader"]
    assert out["afterTransactions"] == ["tx-1", "tx-2", "after-commit"]
    assert out["pongs"] >= 1 and out["pings"] >= 1 and out["stillConnected"]
    assert out["disconnectReceipt"] and out["closeCode"] == 1000


@pytest.mark.parametrize(("scenario", "code"), [("bad-token", "token-invalid"), ("no-token", "unauthorized")])
def test_stompjs_with_bad_credentials_gets_error_and_close(daphne_factory, scenario, code):
    server = daphne_factory()
    out = run_node(scenario, server)
    assert "error" in out, out
    assert out["error"]["headers"]["message"] == "Unauthorized"
    assert out["error"]["headers"]["code"] == code
    assert out["error"]["body"]
    assert out.get("closeCode") == 1000, out


class Listener(stomp.ConnectionListener):
    def __init__(self) -> None:
        self.events: queue.Queue = queue.Queue()

    def on_connected(self, frame):
        self.events.put(("connected", frame.headers, frame.body))

    def on_message(self, frame):
        self.events.put(("message", frame.headers, frame.body))

    def on_receipt(self, frame):
        self.events.put(("receipt", frame.headers, frame.body))

    def on_error(self, frame):
        self.events.put(("error", frame.headers, frame.body))

    def on_heartbeat(self):
        self.events.put(("heartbeat", {}, ""))

    def on_disconnected(self):
        self.events.put(("disconnected", {}, ""))

    def next(self, kind: str, *, skip=("heartbeat",)) -> tuple[dict, str]:
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            try:
                event, headers, body = self.events.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                break
            if event == kind:
                return headers, body
            if event in skip:
                continue
            raise AssertionError(f"expected {kind}, got {event} {headers} {body!r}")
        raise AssertionError(f"timed out waiting for {kind}")


def stomp_py_connection(server, heartbeats=(0, 0)) -> tuple[stomp.WSStompConnection, Listener]:
    connection = stomp.WSStompConnection([("127.0.0.1", server.port)], ws_path="/ws", heartbeats=heartbeats,
                                         reconnect_attempts_max=1, timeout=WAIT)  # fmt: skip
    listener = Listener()
    connection.set_listener("test", listener)
    return connection, listener


def test_stomp_py_runs_every_frame_against_daphne(daphne_factory, make_user):
    server = daphne_factory(**SERVER_ENV)
    alice, bob = make_user("alice"), make_user("bob")
    conn_a, events_a = stomp_py_connection(server, heartbeats=(200, 200))
    conn_b, events_b = stomp_py_connection(server)
    conn_a.connect(passcode=token_for(alice), wait=True, headers={"host": "127.0.0.1"})
    conn_b.connect(headers={"Authorization": f"Bearer {token_for(bob)}"}, wait=True)
    connected, _ = events_a.next("connected")
    assert connected["version"] == "1.2" and connected["user-name"] == "alice"
    events_b.next("connected")

    conn_a.subscribe("/topic/py", id="s1", ack="auto", headers={"receipt": "r-sub"})
    assert events_a.next("receipt")[0]["receipt-id"] == "r-sub"
    conn_b.send("/topic/py", "hello from stomp.py", headers={"receipt": "r-send"})
    assert events_b.next("receipt")[0]["receipt-id"] == "r-send"
    headers, body = events_a.next("message")
    assert body == "hello from stomp.py" and headers["subscription"] == "s1"

    conn_a.subscribe("/topic/py-acks", id="s2", ack="client-individual", headers={"receipt": "r-sub2"})
    events_a.next("receipt")
    conn_b.send("/topic/py-acks", "ack me")
    conn_b.send("/topic/py-acks", "nack me")
    first, _ = events_a.next("message")
    second, _ = events_a.next("message")
    conn_a.ack(first["ack"], receipt="r-ack")
    assert events_a.next("receipt")[0]["receipt-id"] == "r-ack"
    conn_a.nack(second["ack"], receipt="r-nack")
    assert events_a.next("receipt")[0]["receipt-id"] == "r-nack"

    tx = conn_b.begin()
    conn_b.send("/topic/py", "dropped", transaction=tx)
    conn_b.abort(tx)
    tx = conn_b.begin()
    conn_b.send("/topic/py", "committed", transaction=tx)
    conn_b.commit(tx, headers={"receipt": "r-commit"})
    assert events_b.next("receipt")[0]["receipt-id"] == "r-commit"
    assert events_a.next("message")[1] == "committed"

    conn_a.unsubscribe("s1", headers={"receipt": "r-unsub"})
    assert events_a.next("receipt")[0]["receipt-id"] == "r-unsub"

    time.sleep(0.8)  # heart-beats flow both ways meanwhile; the connection must survive them
    assert conn_a.is_connected()
    beats = 0
    while not events_a.events.empty():
        beats += events_a.events.get_nowait()[0] == "heartbeat"
    assert beats >= 1

    conn_a.disconnect(receipt="bye")
    conn_b.disconnect(receipt="bye")
    assert not conn_a.is_connected()


def test_stomp_py_with_expired_token_gets_token_expired(daphne_factory, make_user):
    from datetime import timedelta

    server = daphne_factory()
    token = AccessToken.for_user(make_user("alice"))
    token.set_exp(lifetime=timedelta(seconds=-5))
    connection, events = stomp_py_connection(server)
    connection.connect(passcode=str(token), wait=False)
    headers, _body = events.next("error")
    assert headers["message"] == "Unauthorized" and headers["code"] == "token-expired"
    events.next("disconnected")


def test_bad_frames_do_not_harm_other_connections(daphne_factory, make_user):
    import websocket

    server = daphne_factory()
    alice = make_user("alice")
    good, events = stomp_py_connection(server)
    good.connect(passcode=token_for(alice), wait=True)
    events.next("connected")
    good.subscribe("/topic/calm", id="1", headers={"receipt": "s"})
    events.next("receipt")

    for garbage in (
        b"\x00\xff garbage\n\n\0",
        b"SEND\n\n" + b"x" * 100_000 + b"\0",
        b"CONNECT\naccept-version:9.9\n\n\0",
    ):
        ws = websocket.create_connection(f"{server.ws_url}/ws", timeout=WAIT)
        ws.send_binary(garbage)
        error = ws.recv()
        assert error.startswith("ERROR\n"), error
        # Closed; a frame too large may end in a TCP reset, since the server stops reading mid-frame.
        with pytest.raises((websocket.WebSocketConnectionClosedException, ConnectionResetError)):
            for _ in range(5):
                ws.recv()
        ws.close()

    bob = make_user("bob")
    sender, sender_events = stomp_py_connection(server)
    sender.connect(passcode=token_for(bob), wait=True)
    sender_events.next("connected")
    sender.send("/topic/calm", "still fine")
    assert events.next("message")[1] == "still fine"
    good.disconnect()
    sender.disconnect()


def test_node_and_python_clients_share_a_destination(daphne_factory, make_user):
    server = daphne_factory()
    alice, bob = make_user("alice"), make_user("bob")
    env = {"TOKEN_A": token_for(alice), "DESTINATION": "/topic/mixed", "COUNT": "3"}
    node = subprocess.Popen(
        ["node", "tests/js/stompjs_scenarios.mjs", "subscribe", f"{server.ws_url}/ws"],
        env={**__import__("os").environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert node.stderr.readline().strip() == "ready"
        sender, _events = stomp_py_connection(server)
        sender.connect(passcode=token_for(bob), wait=True)
        for n in range(3):
            sender.send("/topic/mixed", f"m{n}")
        out, _ = node.communicate(timeout=30)
    finally:
        if node.poll() is None:
            node.kill()
            node.wait(timeout=10)
    result = json.loads(out.strip().splitlines()[-1])
    assert result["bodies"] == ["m0", "m1", "m2"]
    sender.disconnect()
