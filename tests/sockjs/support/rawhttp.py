"""A tiny HTTP/1.x client over a socket, for reading streaming responses one HTTP chunk at a time.

httpx may merge or split what the server wrote; the SockJS conformance checks need each write as
it was sent (prelude, then one frame per chunk), and the HTTP/1.0 behaviour of the server.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass, field
from urllib.parse import urlsplit

TIMEOUT = 10.0


@dataclass
class RawResponse:
    status: int
    http: str
    headers: dict[str, str] = field(default_factory=dict)

    def __getitem__(self, name: str) -> str | None:
        return self.headers.get(name.lower())


class RawHttpConnection:
    """One TCP connection; ``request`` sends and parses the status line and headers only."""

    def __init__(self, url: str, *, timeout: float = TIMEOUT) -> None:
        parts = urlsplit(url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80
        self.sock = socket.create_connection((self.host, self.port), timeout=timeout)
        self.buffer = b""
        self.response: RawResponse | None = None

    def request(
        self, method: str, url: str, *, http: str = "1.1", headers: dict[str, str] | None = None, body: bytes = b""
    ) -> RawResponse:
        parts = urlsplit(url)
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        lines = [f"{method} {target} HTTP/{http}", f"Host: {self.host}:{self.port}"]
        for name, value in (headers or {}).items():
            lines.append(f"{name}: {value}")
        if body or method in ("POST", "PUT"):
            lines.append(f"Content-Length: {len(body)}")
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
        head = self._read_until(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        version, status = status_line.split(" ")[:2]
        response = RawResponse(status=int(status), http=version.split("/")[1])
        for line in header_lines:
            if line:
                name, _, value = line.partition(":")
                response.headers[name.strip().lower()] = value.strip()
        self.response = response
        return response

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self) -> bool:
        try:
            data = self.sock.recv(65536)
        except ConnectionResetError:
            data = b""
        if not data:
            return False
        self.buffer += data
        return True

    def _read_until(self, marker: bytes) -> bytes:
        while marker not in self.buffer:
            if not self._fill():
                raise ConnectionError(f"connection closed before {marker!r}")
        head, _, self.buffer = self.buffer.partition(marker)
        return head

    def read(self, size: int) -> bytes:
        """Exactly ``size`` bytes (fewer if the server closes first)."""
        while len(self.buffer) < size and self._fill():
            pass
        data, self.buffer = self.buffer[:size], self.buffer[size:]
        return data

    def read_chunk(self) -> bytes:
        """One chunk of a chunked body; b"" for the last chunk or a closed connection."""
        try:
            size_line = self._read_until(b"\r\n")
        except ConnectionError:
            return b""
        size = int(size_line.split(b";")[0], 16)
        data = self.read(size)
        self.read(2)  # the CRLF after the chunk
        if size == 0:
            self.read(2) if self.buffer.startswith(b"\r\n") else None
        return data

    def closed(self) -> bool:
        """True when the server has closed the connection (after any buffered data)."""
        if self.buffer:
            return False
        return not self._fill()

    def close(self) -> None:
        self.sock.close()
