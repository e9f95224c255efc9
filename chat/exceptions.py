"""Chat rule violations, raised by services and selectors and mapped by each edge (REST → 4xx, STOMP → ERROR)."""


class ChatError(Exception):
    """Base: ``str(exc)`` is a sentence safe to show to the user who caused it."""

    status = 400
    code = "invalid"


class InvalidInput(ChatError):
    status = 400
    code = "invalid"


class NotAllowed(ChatError):
    status = 403
    code = "forbidden"


class NotFound(ChatError):
    """Also used for private rooms a user may not see, so that their existence does not leak."""

    status = 404
    code = "not-found"


class RateLimited(ChatError):
    """Over the user's send budget (the same one STOMP SENDs spend)."""

    status = 429
    code = "rate-limited"
