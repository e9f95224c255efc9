"""Destination names: validation, the send/subscribe policy, and the one helper for user destinations.

Clients see ``/user/queue/<name>``; the broker routes it under a per-user key (``user:<id>:/queue/<name>``)
that no client can spell, so one user can never subscribe to another user's queue.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

USER_PREFIX = "/user/"
# Routing keys of the channel layer (stompengine/layers.py): no client can spell them (clients use "/...").
LAYER_PREFIX = "layer:"
APP_PREFIX = "/app/"
MAX_DESTINATION_LENGTH = 512
# Printable, no whitespace or wildcards: destinations end up as Redis channel names and in logs.
_VALID = re.compile(r"/[!-~]*")
_WILDCARDS = frozenset("*#>")

SEND = "send"
SUBSCRIBE = "subscribe"


class InvalidDestination(ValueError):
    """A destination string that is not a usable name."""


def validate_destination(destination: str) -> str:
    """Return ``destination`` if it is a well-formed name, else raise InvalidDestination."""
    if len(destination) > MAX_DESTINATION_LENGTH:
        raise InvalidDestination(f"destination longer than {MAX_DESTINATION_LENGTH} characters")
    if not _VALID.fullmatch(destination) or _WILDCARDS & set(destination) or "//" in destination:
        raise InvalidDestination(f"destination {destination[:80]!r} is not a valid name")
    return destination


def user_routing_key(user_id: object, destination: str) -> str:
    """The broker key of a user destination (``/user/queue/x`` or ``/queue/x``) for one user."""
    if destination.startswith(USER_PREFIX):
        destination = destination[len(USER_PREFIX) - 1 :]
    return f"user:{user_id}:{destination}"


def user_visible_destination(destination: str) -> str:
    """What a subscriber's MESSAGE frame shows for a user destination: always ``/user/...``."""
    return destination if destination.startswith(USER_PREFIX) else USER_PREFIX.rstrip("/") + destination


@dataclass(frozen=True)
class DestinationPolicy:
    """Which destination prefixes clients may SEND to and SUBSCRIBE to; the longest matching prefix decides.

    Built from ``settings.STOMP_DESTINATION_RULES``: ``[(prefix, "send subscribe"), ...]``. A
    destination no prefix matches is refused.
    """

    rules: tuple[tuple[str, frozenset[str]], ...]

    @classmethod
    def from_rules(cls, rules: Iterable[tuple[str, str]]) -> DestinationPolicy:
        """Parse ``(prefix, "send subscribe")`` pairs, longest prefix first."""
        parsed = []
        for prefix, verbs in rules:
            allowed = frozenset(verbs.replace(",", " ").split())
            unknown = allowed - {SEND, SUBSCRIBE}
            if unknown or not prefix.startswith("/"):
                raise ValueError(f"bad destination rule ({prefix!r}, {verbs!r}): verbs are send and subscribe")
            parsed.append((prefix, allowed))
        parsed.sort(key=lambda rule: len(rule[0]), reverse=True)
        return cls(tuple(parsed))

    def allows(self, verb: str, destination: str) -> bool:
        """True when the longest rule matching ``destination`` grants ``verb``."""
        for prefix, allowed in self.rules:
            if destination.startswith(prefix):
                return verb in allowed
        return False
