"""Bare ASGI applications (no Django, no Channels) that show what an ASGI server does on its own.

``streaming``: a 200 whose body comes in two parts, with no length (as a SockJS streaming transport).
``empty_405``: every HTTP request answered 405 with ``Allow: GET`` and no body; no WebSocket support.
"""


async def streaming(scope, receive, send):
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"one\n", "more_body": True})
    await send({"type": "http.response.body", "body": b"two\n"})


async def empty_405(scope, receive, send):
    if scope["type"] == "websocket":
        await receive()  # websocket.connect
        await send({"type": "websocket.close"})
        return
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 405, "headers": [(b"allow", b"GET")]})
    await send({"type": "http.response.body", "body": b""})
