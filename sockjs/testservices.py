"""The SockJS protocol's standard test services, for running its conformance suite against this server.

``echo`` (echoes every message), ``close`` (closes each session right after opening it with
``c[3000,"Go away!"]``), ``disabled_websocket_echo`` (WebSocket off) and ``cookie_needed_echo``
(``JSESSIONID`` on). All accept any origin and close streaming responses after 4,096 bytes, as the
suite expects. Mount them only for tests: they echo whatever anyone sends.
"""

from __future__ import annotations

from typing import Any

from sockjs.endpoint import DEFAULT_BODY_TIMEOUT, DEFAULT_CLIENT_URL, SockJSEndpoint, any_origin
from sockjs.session import Session

TEST_RESPONSE_LIMIT = 4096


class EchoHandler:
    """Sends every message straight back."""

    def __init__(self, session: Session) -> None:
        self.session = session

    async def on_open(self) -> None:
        pass

    async def on_message(self, text: str) -> None:
        await self.session.send(text)

    async def on_close(self) -> None:
        pass


class CloseHandler(EchoHandler):
    """Closes the session as soon as it opens."""

    async def on_open(self) -> None:
        await self.session.close()


def test_endpoints(
    prefix: str = "sockjs-test",
    *,
    heartbeat_interval: float = 25.0,
    disconnect_delay: float = 5.0,
    client_url: str = DEFAULT_CLIENT_URL,
    queue_limit: int = 10_000,
    body_timeout: float = DEFAULT_BODY_TIMEOUT,
) -> list[SockJSEndpoint]:
    """The four services under ``/<prefix>/``."""
    prefix = prefix.strip("/")
    common: dict[str, Any] = {
        "allowed_origin": any_origin,
        "heartbeat_interval": heartbeat_interval,
        "disconnect_delay": disconnect_delay,
        "response_limit": TEST_RESPONSE_LIMIT,
        "client_url": client_url,
        "queue_limit": queue_limit,
        "body_timeout": body_timeout,
    }
    return [
        SockJSEndpoint(f"{prefix}/echo", EchoHandler, **common),
        SockJSEndpoint(f"{prefix}/close", CloseHandler, **common),
        SockJSEndpoint(f"{prefix}/disabled_websocket_echo", EchoHandler, websocket_enabled=False, **common),
        SockJSEndpoint(f"{prefix}/cookie_needed_echo", EchoHandler, cookie_needed=True, **common),
    ]


test_endpoints.__test__ = False  # type: ignore[attr-defined]  # not a pytest test, despite the name
