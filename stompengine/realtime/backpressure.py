"""How the ASGI server tells the application what it still holds for a connection (write backpressure).

ASGI has no way for an application to learn that its ``send`` calls are piling up in the server: daphne
accepts every write at once into Twisted's buffer. The project's server adapters
(``chatproject/daphne_server.py``, ``chatproject/uvicorn_ws.py``) put a callable into every scope:

    scope["extensions"]["chat.write_buffer"] = {"pending_bytes": <() -> int>}

returning the bytes of that connection still in the server's socket write buffer.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

EXTENSION = "chat.write_buffer"


def write_buffer_extension(pending_bytes: Callable[[], int]) -> dict[str, Any]:
    """The extension entry a server adapter puts into a scope."""
    return {"pending_bytes": pending_bytes}


def scope_pending_bytes(scope: dict[str, Any]) -> Callable[[], int] | None:
    """The server's ``pending_bytes`` callable for this connection, or None when the server gives none."""
    extension = (scope.get("extensions") or {}).get(EXTENSION)
    if not extension:
        return None
    pending_bytes: Callable[[], int] | None = extension.get("pending_bytes")
    return pending_bytes
