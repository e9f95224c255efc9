"""STOMP frame value objects, command sets and header escaping modes (pure data, no I/O)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

CLIENT_COMMANDS = frozenset(
    {"CONNECT", "STOMP", "SEND", "SUBSCRIBE", "UNSUBSCRIBE", "ACK", "NACK", "BEGIN", "COMMIT", "ABORT", "DISCONNECT"}
)
SERVER_COMMANDS = frozenset({"CONNECTED", "MESSAGE", "RECEIPT", "ERROR"})
ALL_COMMANDS = CLIENT_COMMANDS | SERVER_COMMANDS
# Header escaping never applies to these (STOMP 1.2, "Value Encoding").
UNESCAPED_COMMANDS = frozenset({"CONNECT", "CONNECTED"})

Headers = tuple[tuple[str, str], ...]


class Escaping(Enum):
    """Header value escaping of a STOMP version: 1.0 has none, 1.1 lacks ``\\r``, 1.2 has all four."""

    NONE = "1.0"
    V11 = "1.1"
    V12 = "1.2"

    @classmethod
    def for_version(cls, version: str) -> Escaping:
        """The escaping rules of a negotiated version string."""
        return {"1.0": cls.NONE, "1.1": cls.V11}.get(version, cls.V12)


@dataclass(frozen=True, slots=True)
class Frame:
    """One STOMP frame; ``headers`` keeps every line in order, repeated names included (the first wins)."""

    command: str
    headers: Headers = ()
    body: bytes = b""

    def get(self, name: str, default: str | None = None) -> str | None:
        """The first value of header ``name`` (STOMP: repeated headers, first one wins), or ``default``."""
        for key, value in self.headers:
            if key == name:
                return value
        return default

    def get_ci(self, name: str) -> str | None:
        """The first value of a header whose name matches case-insensitively (for ``Authorization``)."""
        name = name.lower()
        for key, value in self.headers:
            if key.lower() == name:
                return value
        return None


def frame(command: str, headers: dict[str, str] | Headers | None = None, body: bytes | str = b"") -> Frame:
    """Build a frame, adding ``content-length`` when there is a body and none was given."""
    items: list[tuple[str, str]] = list(headers.items() if isinstance(headers, dict) else headers or ())
    data = body.encode("utf-8") if isinstance(body, str) else body
    if data and not any(key == "content-length" for key, _ in items):
        items.append(("content-length", str(len(data))))
    return Frame(command, tuple(items), data)
