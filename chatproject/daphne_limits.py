"""A deadline for receiving an HTTP request under daphne: slow-loris clients get ``408`` and are dropped.

daphne's ``--http-timeout`` does not help here: it starts counting only once the request head *and body*
have arrived (``WebRequest.process``), and then ends any response that lasts longer, including the SSE
stream and the SockJS streaming transports. Before that, Twisted closes an HTTP connection only after
60 s *without a byte*, so a client that sends one header byte (or one body byte) every few seconds holds
its connection, and daphne's buffers, forever: 400 half-sent requests were all still open after 25 s.

daphne already visits every request it knows (from the request line on) every two seconds
(``Server.timeout_checker`` calls ``check_timeouts``); the hook below adds one rule there: a request
whose head and body are not complete ``HTTP_RECEIVE_TIMEOUT`` seconds after its request line arrived
is answered ``408`` with a JSON reason and its connection closed. Installed on import of the ASGI
application (chatproject/asgi.py), so it holds for plain ``daphne`` and ``runserver`` alike; other
servers are untouched (uvicorn: SockJS times out slow bodies itself, ``SOCKJS_BODY_TIMEOUT``).

Not covered: a client trickling the request *line* itself (no request exists yet; Twisted caps the line
at 16 KiB). In production nginx's ``client_header_timeout`` ends those before daphne sees them.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

logger = logging.getLogger(__name__)


def _timeout_response(seconds: float) -> bytes:
    body = json.dumps({"detail": f"the request was not received completely within {seconds:g} seconds"}).encode()
    head = (
        b"HTTP/1.1 408 Request Timeout\r\n"
        b"Content-Type: application/json\r\n"
        b"Connection: close\r\n"
        b"Content-Length: %d\r\n\r\n" % len(body)
    )
    return head + body


def receive_overdue(request: Any, now: float, seconds: float) -> bool:
    """True for a daphne ``WebRequest`` still receiving its head or body more than ``seconds`` after it began."""
    if hasattr(request, "request_start"):  # daphne's process() ran: head and body are complete
        return False
    details = request.server.connections.get(request)
    return details is not None and now - details.get("connected", now) > seconds


def install_daphne_receive_deadline(seconds: float) -> None:
    """Add the receive deadline to daphne's periodic timeout check (idempotent; no-op without daphne)."""
    try:
        from daphne.http_protocol import WebRequest
    except ImportError:
        return
    original = WebRequest.check_timeouts
    if getattr(original, "receive_deadline", None) is not None:
        original = original.wrapped  # type: ignore[attr-defined]

    def check_timeouts(self: Any) -> None:
        if receive_overdue(self, time.time(), seconds):
            transport = getattr(getattr(self, "channel", None), "transport", None)
            if transport is None:
                return
            if getattr(self, "_receive_deadline_passed", False):
                # Answered at the last check and still here (it does not read either): drop it.
                transport.abortConnection()
                return
            self._receive_deadline_passed = True
            logger.warning("HTTP request not received within %g s (slow client); answering 408", seconds)
            transport.write(_timeout_response(seconds))
            transport.loseConnection()
            return
        original(self)

    check_timeouts.receive_deadline = seconds  # type: ignore[attr-defined]
    check_timeouts.wrapped = original  # type: ignore[attr-defined]
    WebRequest.check_timeouts = check_timeouts  # type: ignore[method-assign]
