"""The doctor's checks, one module each, in report order (the numbering of issue 9, then auth)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from doctor.checks import (
    auth,
    client_libraries,
    cors,
    mixed_content,
    readiness,
    script_order,
    sockjs_info,
    sse,
    tls_clock,
)
from doctor.checks import websocket as websocket_check
from doctor.context import Context
from doctor.model import Finding


@dataclass(frozen=True)
class Check:
    id: str
    title: str
    run: Callable[[Context], Awaitable[list[Finding]]]


CHECKS: tuple[Check, ...] = (
    Check("script-order", "Script order", script_order.run),
    Check("client-libraries", "Client libraries", client_libraries.run),
    Check("sockjs-info", "SockJS info", sockjs_info.run),
    Check("cors", "CORS", cors.run),
    Check("mixed-content", "Mixed content", mixed_content.run),
    Check("websocket", "WebSocket + STOMP", websocket_check.run),
    Check("sse", "SSE stream", sse.run),
    Check("tls-clock", "TLS and clock", tls_clock.run),
    Check("auth", "Login paths", auth.run),
    Check("readiness", "Readiness", readiness.run),
)
