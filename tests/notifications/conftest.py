"""Live-stream helpers: httpx streams held by a background event loop, driven from ordinary sync tests.

Sync tests keep the ORM simple (rows are created in the test process, in the shared test database);
the streams themselves are read continuously by tasks on the helper's loop, parsed with the project's
SSE parser, and every wait is bounded (``wait_for``), never a sleep followed by an assertion.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx
import pytest

from notifications.sse import Event, SSEParser
from tests.conftest import REPO, access_token_for, wait_for

FRONTEND = "http://localhost:8000"


@pytest.fixture(scope="session")
def django_db_modify_db_settings(django_db_modify_db_settings_parallel_suffix) -> None:
    """A SQLite test database of this run's own: several people may run tests in one working tree."""
    from django.conf import settings

    db = settings.DATABASES["default"]
    if db["ENGINE"].endswith("sqlite3") and db.get("TEST", {}).get("NAME"):
        db["TEST"]["NAME"] = str(REPO / "var" / f"test-db-notifications-{os.getpid()}.sqlite3")


@dataclass
class LiveStream:
    """One open (or refused) stream request."""

    status: int
    headers: httpx.Headers
    body: bytes = b""
    parser: SSEParser = field(default_factory=SSEParser)
    events: list[Event] = field(default_factory=list)
    closed: bool = False
    task: asyncio.Task | None = None
    response: httpx.Response | None = None

    @property
    def ids(self) -> list[int]:
        return [int(e.id) for e in self.events if e.id is not None]

    def json(self) -> dict:
        return json.loads(self.body)

    def wait_events(self, count: int, *, timeout: float = 15) -> list[Event]:
        wait_for(lambda: len(self.events) >= count or self.closed, timeout=timeout,
                 what=f"{count} events (have {len(self.events)})")  # fmt: skip
        assert len(self.events) >= count, f"stream closed after {len(self.events)} events"
        return self.events[:count]

    def wait_ids(self, expected: list[int], *, timeout: float = 15) -> None:
        wait_for(lambda: set(expected) <= set(self.ids) or self.closed, timeout=timeout,
                 what=f"ids {expected[:5]}... (have {len(self.ids)})")  # fmt: skip


class StreamHarness:
    """A private asyncio loop in a thread, holding any number of streams."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="sse-harness", daemon=True)
        self.thread.start()
        self.client: httpx.AsyncClient = self.run(self._make_client())
        self.streams: list[LiveStream] = []

    async def _make_client(self) -> httpx.AsyncClient:
        limits = httpx.Limits(max_connections=None, max_keepalive_connections=0)
        return httpx.AsyncClient(timeout=httpx.Timeout(15, read=None), limits=limits)

    def run(self, coro, timeout: float = 30):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def open(self, url: str, *, headers: dict[str, str] | None = None) -> LiveStream:
        """Open a stream; returns once the headers (and for errors the whole body) have arrived."""
        stream = self.run(self._open(url, headers or {}))
        self.streams.append(stream)
        return stream

    async def _open(self, url: str, headers: dict[str, str]) -> LiveStream:
        request = self.client.build_request("GET", url, headers=headers)
        response = await self.client.send(request, stream=True)
        stream = LiveStream(status=response.status_code, headers=response.headers, response=response)
        if response.status_code != 200 or not response.headers.get("content-type", "").startswith("text/event-stream"):
            stream.body = await response.aread()
            await response.aclose()
            stream.closed = True
            return stream
        stream.task = asyncio.create_task(self._read(stream, response))
        return stream

    async def _read(self, stream: LiveStream, response: httpx.Response) -> None:
        try:
            async for chunk in response.aiter_raw():
                stream.events.extend(stream.parser.feed(chunk))
        except (httpx.HTTPError, asyncio.CancelledError):
            pass
        finally:
            stream.closed = True
            await response.aclose()

    def close(self, stream: LiveStream) -> None:
        """Drop the connection as a browser tab closing would."""

        async def _close() -> None:
            if stream.task is not None:
                stream.task.cancel()
                await asyncio.gather(stream.task, return_exceptions=True)

        self.run(_close())

    def shutdown(self) -> None:
        for stream in self.streams:
            self.close(stream)
        self.run(self.client.aclose())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()


@pytest.fixture
def sse() -> Iterator[StreamHarness]:
    harness = StreamHarness()
    try:
        yield harness
    finally:
        harness.shutdown()


def ticket_for(server_url: str, user) -> str:
    """A fresh stream ticket, bought with the user's JWT as a browser's global.js would."""
    response = httpx.post(f"{server_url}/api/notifications/ticket/",
                          headers={"Authorization": f"Bearer {access_token_for(user)}"}, timeout=10)  # fmt: skip
    assert response.status_code == 201, response.text
    return response.json()["ticket"]


def stream_url(server_url: str, **query: str | int) -> str:
    params = "&".join(f"{k}={v}" for k, v in query.items())
    return f"{server_url}/api/notifications/stream/" + (f"?{params}" if params else "")


@pytest.fixture
def redis_url(redis_server) -> str:
    return f"redis://127.0.0.1:{redis_server.port}/0"


@pytest.fixture
def redis_layer(settings, redis_url):
    """This test process publishes through the same Redis as the servers (as another daphne would)."""
    from channels.layers import channel_layers

    settings.REDIS_URL = redis_url  # the bus (stompengine.runtime) of each loop of this process rides it
    channel_layers.backends = {}
    yield redis_url
    channel_layers.backends = {}
