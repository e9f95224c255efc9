"""A live server's per-connection timers on the shared wheel (stompengine/connection/clock.py): heart-beats
both ways and the token's expiry still act on time, on uvicorn and daphne.

Intervals of a second or more go on the wheel (at most a 0.1 s tick late), so the heart-beats here are 1.5 s.
"""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from rest_framework_simplejwt.tokens import AccessToken
from websockets.frames import Opcode

from tests.live.raw_stomp import RawStomp

pytestmark = pytest.mark.live
BEAT_MS = 1500
TIMERS = {"STOMP_HEARTBEAT_SEND_MS": str(BEAT_MS), "STOMP_HEARTBEAT_RECEIVE_MS": str(BEAT_MS)}


def _token(user, seconds: float | None = None) -> str:
    token = AccessToken.for_user(user)
    if seconds is not None:
        token.set_exp(lifetime=timedelta(seconds=seconds))
    return str(token)


def _connect(server, token: str, heart_beat: str) -> tuple[RawStomp, float]:
    client = RawStomp(server.ws_url)
    client.send("CONNECT", accept_version="1.2", host="chat", heart_beat=heart_beat, Authorization=f"Bearer {token}")
    connected = client.read_until(lambda f: f.command in ("CONNECTED", "ERROR"), "CONNECTED")
    assert connected is not None and connected.command == "CONNECTED", client.frames
    return client, time.monotonic()


def _events_until(client: RawStomp, seconds: float, *, beat_every: float | None = None) -> list[tuple[float, bytes]]:
    """Text messages received for ``seconds`` (sending an EOL every ``beat_every`` s), with arrival times."""
    got: list[tuple[float, bytes]] = []
    end = time.monotonic() + seconds
    next_beat = time.monotonic() + beat_every if beat_every else None
    client.sock.settimeout(0.05)
    while time.monotonic() < end and not client.closed:
        if next_beat is not None and time.monotonic() >= next_beat:
            client.ws.send_text(b"\n")
            client._flush()
            next_beat += beat_every
        try:
            data = client.sock.recv(1 << 16)
        except TimeoutError:
            continue
        except ConnectionResetError:  # the server aborted the socket after its ERROR
            data = b""
        if not data:
            client.closed = True
            break
        client.ws.receive_data(data)
        for event in client.ws.events_received():
            if event.opcode == Opcode.TEXT:
                got.append((time.monotonic(), bytes(event.data)))
            elif event.opcode == Opcode.CLOSE:  # the server's close frame: the connection is over
                client.closed = True
    return got


@pytest.mark.parametrize("server_kind", ["uvicorn", "daphne"])
def test_server_heart_beats_arrive_on_time_and_a_beating_client_stays(daphne_factory, make_user, server_kind):
    server = daphne_factory(server=server_kind, **TIMERS)
    client, start = _connect(server, _token(make_user("beats")), f"{BEAT_MS},{BEAT_MS}")
    try:
        got = _events_until(client, 5.0, beat_every=BEAT_MS / 1000 / 2)
        beats = [at for at, data in got if data.strip(b"\r\n") == b""]
        assert not client.closed, got
        assert len(beats) >= 2, got
        gaps = [b - a for a, b in zip([start, *beats], beats, strict=False)]
        # Never early (the server's interval), at most a wheel tick late plus a loaded machine's slack.
        assert all(gap >= BEAT_MS / 1000 - 0.05 for gap in gaps), gaps
        assert all(gap <= BEAT_MS / 1000 + 1.0 for gap in gaps), gaps
    finally:
        client.close()


@pytest.mark.parametrize("server_kind", ["uvicorn", "daphne"])
def test_a_silent_client_is_timed_out(daphne_factory, make_user, server_kind):
    server = daphne_factory(server=server_kind, **TIMERS)
    client, start = _connect(server, _token(make_user("silent")), f"{BEAT_MS},{BEAT_MS}")
    try:
        got = _events_until(client, 12.0)
        assert client.closed, got
        errors = [(at, data) for at, data in got if data.startswith(b"ERROR")]
        assert errors and b"heart-beat timeout" in errors[0][1], got
        # The receive window is the interval times the grace (2.0): not before it, at most a tick late (plus a
        # loaded machine's slack).
        assert 2 * BEAT_MS / 1000 - 0.05 <= errors[0][0] - start <= 2 * BEAT_MS / 1000 + 2.0, errors[0][0] - start
    finally:
        client.close()


@pytest.mark.parametrize("server_kind", ["uvicorn", "daphne"])
def test_token_expiry_ends_an_idle_connection(daphne_factory, make_user, server_kind):
    server = daphne_factory(server=server_kind)
    client, start = _connect(server, _token(make_user("expiring"), seconds=3), "0,0")
    try:
        got = _events_until(client, 15.0)
        assert client.closed, got
        errors = [data for _, data in got if data.startswith(b"ERROR")]
        assert errors and b"code:token-expired" in errors[0], got
        assert time.monotonic() - start >= 1.0  # JWT expiry has whole seconds: at least a second after CONNECT
    finally:
        client.close()
