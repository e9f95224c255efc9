"""Uploads through the real server: daphne (chatproject/daphne_server.py feeds the body to Django from
Twisted's spooled file chunk by chunk) and uvicorn; the stored file is byte for byte the uploaded one,
whatever its size against daphne's 8 kB chunks. And a STOMP SEND carrying an upload."""

from __future__ import annotations

import json
import os

import httpx
import pytest
import websocket

from tests.conftest import access_token_for

pytestmark = pytest.mark.live


@pytest.mark.parametrize("server", ["daphne", "uvicorn"])
@pytest.mark.parametrize("size", [8192 * 40, 8192 * 40 + 1, 3_000_017])
def test_upload_through_the_server_is_stored_byte_for_byte(daphne_factory, tmp_path, alice, room, server, size):
    proc = daphne_factory(server=server, ATTACHMENTS_ROOT=str(tmp_path / "files"))
    data = os.urandom(size)
    zipped = b"PK\x03\x04" + data  # typed application/zip by its magic bytes
    headers = {"Authorization": f"Bearer {access_token_for(alice)}"}
    response = httpx.post(
        f"{proc.url}/api/rooms/{room.slug}/uploads/",
        headers=headers,
        files={"file": ("data.zip", zipped, "application/zip")},
        timeout=60,
    )
    assert response.status_code == 201, response.text
    info = response.json()
    assert info["size"] == len(zipped) and info["type"] == "application/zip"
    links = httpx.get(f"{proc.url}/api/attachments/{info['id']}/", headers=headers, timeout=10).json()
    stored = httpx.get(links["url"], timeout=30)
    assert stored.status_code == 200 and stored.content == zipped
    assert stored.headers["content-disposition"].startswith("attachment")


def test_too_big_upload_is_refused_by_the_server(daphne_factory, tmp_path, alice, room):
    proc = daphne_factory(ATTACHMENTS_ROOT=str(tmp_path / "files"), ATTACHMENTS_MAX_FILE_BYTES="100000")
    response = httpx.post(
        f"{proc.url}/api/rooms/{room.slug}/uploads/",
        headers={"Authorization": f"Bearer {access_token_for(alice)}"},
        files={"file": ("big.txt", b"a" * 300_000, "text/plain")},
        timeout=30,
    )
    assert response.status_code == 413 and response.json()["code"] == "too-large"
    assert not list((tmp_path / "files").rglob("*.*"))


def stomp_frame(command: str, headers: dict[str, str], body: str = "") -> str:
    lines = [command, *(f"{k}:{v}" for k, v in headers.items()), "", body]
    return "\n".join(lines) + "\x00"


class FrameReader:
    """STOMP frames from a raw WebSocket: one WebSocket message may carry several (the server joins what it
    queued for a connection in one write: a SEND's MESSAGE and its RECEIPT, for one)."""

    def __init__(self, ws) -> None:
        self.ws = ws
        self.pending: list[str] = []

    def __call__(self) -> tuple[str, dict[str, str], str]:
        while not self.pending:
            self.pending += [part for part in self.ws.recv().split("\x00") if part.strip("\n")]
        head, _, body = self.pending.pop(0).partition("\n\n")
        command, *header_lines = head.lstrip("\n").split("\n")
        return command, dict(line.split(":", 1) for line in header_lines), body


def test_stomp_send_carries_an_upload_once(daphne_factory, tmp_path, alice, room):
    proc = daphne_factory(ATTACHMENTS_ROOT=str(tmp_path / "files"))
    token = access_token_for(alice)
    info = httpx.post(
        f"{proc.url}/api/rooms/{room.slug}/uploads/",
        headers={"Authorization": f"Bearer {token}"},
        files={"file": ("hi.txt", b"hello over stomp\n", "text/plain")},
        timeout=30,
    ).json()
    ws = websocket.create_connection(f"{proc.ws_url}/ws/websocket", timeout=15, subprotocols=["v12.stomp"])
    read_frame = FrameReader(ws)
    try:
        ws.send(stomp_frame("CONNECT", {"accept-version": "1.2", "host": "chat", "Authorization": f"Bearer {token}"}))
        assert read_frame()[0] == "CONNECTED"
        ws.send(stomp_frame("SUBSCRIBE", {"id": "s1", "destination": f"/topic/rooms.{room.slug}"}))
        ws.send(stomp_frame("SUBSCRIBE", {"id": "e1", "destination": "/user/queue/errors"}))
        body = json.dumps({"body": "", "client_id": "c1", "attachments": [info["id"]]})
        ws.send(stomp_frame("SEND", {"destination": f"/app/rooms.{room.slug}", "content-type": "application/json",
                                     "receipt": "r1"}, body))  # fmt: skip
        frames = [read_frame() for _ in range(2)]
        message = next(json.loads(b) for c, h, b in frames if c == "MESSAGE" and h["subscription"] == "s1")
        assert [a["name"] for a in message["attachments"]] == ["hi.txt"]
        assert any(c == "RECEIPT" and h["receipt-id"] == "r1" for c, h, _ in frames)
        again = json.dumps({"body": "again", "client_id": "c2", "attachments": [info["id"]]})
        ws.send(stomp_frame("SEND", {"destination": f"/app/rooms.{room.slug}", "content-type": "application/json",
                                     "receipt": "r2"}, again))  # fmt: skip
        command, headers, error = read_frame()
        assert command == "MESSAGE" and headers["subscription"] == "e1", (command, headers, error)
        assert "already attached" in error
    finally:
        ws.close()
