"""A purpose-built split-origin deployment (raw ASGI under uvicorn, in a thread) that the doctor tests break
one way at a time: it imitates this project's routes closely enough for every check, and no more.
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs

import uvicorn

from scripts.processes import free_port
from tests.conftest import wait_for
from tests.tls import self_signed_certificate

USERNAME, PASSWORD = "doc", "doctor-pass-123"
BREAKAGES = (
    "script_order",  # chat.js before global.js in the page
    "relative_sockjs",  # chat.js calls new SockJS('/ws'), which the browser sends to the frontend's origin
    "info_404",  # the API has no SockJS endpoint at /ws (the path differs)
    "cors_missing",  # the API never sends Access-Control-Allow-Origin
    "info_login_redirect",  # /ws/info redirects to the login page
    "sse_text_plain",  # the stream answers text/plain
    "http_api",  # the https page carries an http:// API origin (set by the test through the origins)
    "stomp_anonymous",  # CONNECT without credentials gets CONNECTED
    "library_missing",  # the room page does not load the SockJS client library
    "duplicate_global",  # global.js and chat.js both declare a top-level `let nickname`
    "redis_down",  # /readyz/ answers 503: the worker's Redis check fails
    "readyz_absent",  # the API does not expose /readyz/ (another server, or an older one)
)


@dataclass
class Deployment:
    """What the app serves; the test fills in the origins once the ports are known."""

    frontend: str = ""
    api: str = ""
    broken: frozenset[str] = frozenset()
    tickets: set[str] = field(default_factory=set)
    _counter: itertools.count = field(default_factory=lambda: itertools.count(1))

    def token(self) -> str:
        now = int(time.time())
        payload = base64.urlsafe_b64encode(json.dumps({"iat": now, "exp": now + 900, "user": USERNAME}).encode())
        return f"eyJhbGciOiJIUzI1NiJ9.{payload.decode().rstrip('=')}.c2ln"

    def valid(self, authorization: str | None) -> bool:
        return bool(authorization) and authorization.startswith("Bearer eyJ")  # type: ignore[union-attr]


def page_html(dep: Deployment, *, page_script: bool) -> str:
    libs = [
        '<script defer src="/static/vendor/sockjs.min.js"></script>',
        '<script defer src="/static/vendor/stomp.umd.min.js"></script>',
    ]
    glob = '<script defer src="/static/js/global.js"></script>'
    chat = '<script defer src="/static/js/chat.js"></script>' if page_script else ""
    if "library_missing" in dep.broken:
        libs = libs[1:]
    scripts = [*libs, chat, glob] if "script_order" in dep.broken else [*libs, glob, chat]
    secure = dep.frontend.startswith("https://") and "http_api" not in dep.broken
    uir = '<meta http-equiv="Content-Security-Policy" content="upgrade-insecure-requests">' if secure else ""
    return (
        f'<!doctype html><html><head><meta charset="utf-8">{uir}<meta name="api-origin" content="{dep.api}">'
        f'<link rel="stylesheet" href="/static/css/app.css">{"".join(scripts)}</head>'
        "<body><main>chat</main></body></html>"
    )


GLOBAL_JS = """/* global.js */
(function () {
  const API_ORIGIN = document.querySelector('meta[name="api-origin"]').content;
  window.Chat = Object.freeze({ API_ORIGIN });
})();
"""
CHAT_JS = """/* chat.js */
(function () {
  const socket = new SockJS(window.Chat.API_ORIGIN + "/ws");
  const client = Stomp.over(socket);
})();
"""
CHAT_JS_RELATIVE = CHAT_JS.replace('window.Chat.API_ORIGIN + "/ws"', "'/ws'")
STATIC = {
    "/static/vendor/sockjs.min.js": "/* sockjs stand-in */ window.SockJS = function () {};",
    "/static/vendor/stomp.umd.min.js": "/* stomp stand-in */ window.Stomp = { over: function () {} };",
    "/static/js/global.js": GLOBAL_JS,
}


class App:
    """The raw ASGI application: pages, static files, the REST bits, /ws/info, SSE and a STOMP WebSocket."""

    def __init__(self, dep: Deployment) -> None:
        self.dep = dep

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "lifespan":
            return
        if scope["type"] == "websocket":
            await self.websocket(scope, receive, send)
            return
        await self.http(scope, receive, send)

    def cors(self, headers: dict[str, str]) -> list[tuple[bytes, bytes]]:
        origin = headers.get("origin")
        if not origin or origin != self.dep.frontend or "cors_missing" in self.dep.broken:
            return []
        return [
            (b"access-control-allow-origin", origin.encode()),
            (b"access-control-allow-credentials", b"true"),
            (b"vary", b"Origin"),
        ]

    async def respond(self, send, status: int, body: str | bytes, content_type: str, extra=()) -> None:
        data = body.encode() if isinstance(body, str) else body
        headers = [(b"content-type", content_type.encode()), (b"content-length", str(len(data)).encode()), *extra]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": data})

    async def http(self, scope, receive, send) -> None:
        dep = self.dep
        path, method = scope["path"], scope["method"]
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        query = parse_qs(scope.get("query_string", b"").decode())
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        cors = self.cors(headers)
        js = "text/javascript; charset=utf-8"
        jsn = "application/json"
        if method == "OPTIONS":
            allow = (
                [
                    (b"access-control-allow-methods", b"GET, POST, OPTIONS"),
                    (b"access-control-allow-headers", b"authorization, content-type"),
                ]
                if cors
                else []
            )
            await self.respond(send, 200, "", "text/plain", [*cors, *allow])
        elif path in ("/", "/login/", "/rooms/lobby/"):
            await self.respond(
                send, 200, page_html(dep, page_script=path == "/rooms/lobby/"), "text/html; charset=utf-8"
            )
        elif path in STATIC:
            source = STATIC[path]
            if path.endswith("global.js") and "duplicate_global" in dep.broken:
                source = 'let nickname = "me";\n' + source
            await self.respond(send, 200, source, js)
        elif path == "/static/js/chat.js":
            source = CHAT_JS_RELATIVE if "relative_sockjs" in dep.broken else CHAT_JS
            if "duplicate_global" in dep.broken:
                source = 'let nickname = "guest";\n' + source
            await self.respond(send, 200, source, js)
        elif path == "/static/css/app.css":
            await self.respond(send, 200, "main{}", "text/css")
        elif path == "/api/auth/token/" and method == "POST":
            creds = json.loads(body or b"{}")
            if creds.get("username") == USERNAME and creds.get("password") == PASSWORD:
                await self.respond(send, 200, json.dumps({"access": dep.token(), "refresh": "r"}), jsn, cors)
            else:
                await self.respond(send, 401, '{"detail": "bad credentials"}', jsn, cors)
        elif path == "/api/rooms/":
            await self.respond(send, 200, json.dumps([{"slug": "lobby", "is_member": True}]), jsn, cors)
        elif path == "/api/me/":
            ok = dep.valid(headers.get("authorization"))
            await self.respond(send, 200 if ok else 401, '{"detail": "me"}', jsn, cors)
        elif path == "/ws/info":
            if "info_404" in dep.broken:
                await self.respond(send, 404, '{"detail": "no such endpoint"}', jsn, cors)
            elif "info_login_redirect" in dep.broken:
                await self.respond(
                    send, 302, "", "text/html", [(b"location", f"{dep.frontend}/login/?next=/ws/info".encode())]
                )
            else:
                info = {"websocket": True, "cookie_needed": False, "origins": ["*:*"], "entropy": 42}
                await self.respond(send, 200, json.dumps(info), "application/json; charset=UTF-8", cors)
        elif path == "/api/notifications/ticket/" and method == "POST":
            if not dep.valid(headers.get("authorization")):
                await self.respond(send, 401, '{"detail": "no"}', jsn, cors)
            else:
                ticket = f"t{next(dep._counter)}"
                dep.tickets.add(ticket)
                await self.respond(send, 200, json.dumps({"ticket": ticket}), jsn, cors)
        elif path == "/api/notifications/stream/":
            await self.stream(send, receive, query.get("ticket", [""])[0], cors)
        elif path == "/readyz/" and "readyz_absent" not in dep.broken:
            redis_ok = "redis_down" not in dep.broken
            redis = {"ok": redis_ok, "detail": "ok" if redis_ok else "ConnectionError: refused"}
            checks = {"database": {"ok": True, "detail": "ok"}, "redis": redis}
            await self.respond(send, 200 if redis_ok else 503, json.dumps({"ready": redis_ok, "checks": checks}), jsn)
        else:
            await self.respond(send, 404, '{"detail": "not found"}', jsn, cors)

    async def stream(self, send, receive, ticket: str, cors) -> None:
        if "sse_text_plain" in self.dep.broken:
            await self.respond(send, 200, "ok", "text/plain; charset=utf-8", cors)
            return
        if ticket not in self.dep.tickets:
            await self.respond(send, 401, '{"detail": "ticket required"}', "application/json", cors)
            return
        self.dep.tickets.discard(ticket)
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache"), *cors],
            }
        )
        await send({"type": "http.response.body", "body": b": heart-beat\n\n", "more_body": True})
        message = await receive()  # http.disconnect when the doctor hangs up
        assert message["type"] == "http.disconnect"

    async def websocket(self, scope, receive, send) -> None:
        if scope["path"] != "/ws/websocket":
            await receive()
            await send({"type": "websocket.close", "code": 1000})
            return
        await receive()  # websocket.connect
        await send({"type": "websocket.accept"})
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                return
            frame = message.get("text") or (message.get("bytes") or b"").decode()
            if not frame.startswith("CONNECT"):
                continue
            head = frame.split("\n\n", 1)[0].split("\n")[1:]
            auth = next((line.split(":", 1)[1] for line in head if line.lower().startswith("authorization:")), None)
            if self.dep.valid(auth) or "stomp_anonymous" in self.dep.broken:
                await send({"type": "websocket.send", "text": "CONNECTED\nversion:1.2\nheart-beat:0,0\n\n\x00"})
            else:
                await send({"type": "websocket.send", "text": "ERROR\nmessage:Unauthorized\n\n\x00"})
                await send({"type": "websocket.close", "code": 1008})
                return


@contextlib.contextmanager
def serve(app: App, port: int, *, tls: tuple[Path, Path] | None = None) -> Iterator[None]:
    """Run ``app`` under uvicorn on 127.0.0.1:``port`` in a thread until the block ends."""
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        lifespan="off",
        log_level="warning",
        ws="websockets-sansio",
        ssl_certfile=str(tls[0]) if tls else None,
        ssl_keyfile=str(tls[1]) if tls else None,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name=f"fake-deployment-{port}", daemon=True)
    thread.start()
    try:
        wait_for(lambda: server.started or not thread.is_alive(), timeout=10, what=f"uvicorn on port {port}")
        assert server.started, f"uvicorn on port {port} did not start"
        yield
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@contextlib.contextmanager
def deployment(*broken: str, https: bool = False, tmp_path: Path | None = None) -> Iterator[Deployment]:
    """A running fake deployment: the frontend and the API on two ports (two origins) of one app.

    ``https`` serves both over TLS with a self-signed certificate, except the API under ``http_api``.
    """
    unknown = set(broken) - set(BREAKAGES)
    assert not unknown, f"unknown breakage {unknown}"
    dep = Deployment(broken=frozenset(broken))
    app = App(dep)
    front_port, api_port = free_port(), free_port()
    assert not https or tmp_path is not None, "https needs a tmp_path for the certificate"
    tls = self_signed_certificate(tmp_path) if https and tmp_path else None
    api_tls = None if "http_api" in broken else tls
    dep.frontend = f"{'https' if tls else 'http'}://127.0.0.1:{front_port}"
    dep.api = f"{'https' if api_tls else 'http'}://127.0.0.1:{api_port}"
    with serve(app, front_port, tls=tls), serve(app, api_port, tls=api_tls):
        yield dep
