"""Check 6: a WebSocket handshake from the frontend's origin succeeds, STOMP CONNECT with the JWT gets
CONNECTED, and without credentials gets ERROR (field failure 6: the JWT filter blocked the /ws handshake;
the fix must not turn into an endpoint that accepts anyone).
"""

from __future__ import annotations

from doctor.context import Context
from doctor.model import Finding, Status
from doctor.net import StompProbe, stomp_probe, websocket_url


async def run(ctx: Context) -> list[Finding]:
    o = ctx.options
    url = websocket_url(ctx.api, o.ws_path)
    anonymous = await stomp_probe(url, origin=ctx.frontend, token=None, step_timeout=o.timeout, insecure=o.insecure)
    handshake = await _handshake_finding(ctx, url, anonymous)
    if handshake is not None:
        return [handshake]
    findings = [_anonymous_finding(url, anonymous, o.timeout)]
    outcome = await ctx.token()
    if not outcome.token:
        findings.append(outcome.problem or Finding(Status.WARN, "no JWT to send on CONNECT", "see the auth check"))
        return findings
    probe = await stomp_probe(
        url, origin=ctx.frontend, token=outcome.token, step_timeout=o.timeout, insecure=o.insecure
    )
    if probe.command == "CONNECTED":
        version = probe.header("version")
        findings.append(
            Finding(
                Status.PASS,
                f"{url} upgrades from {ctx.frontend}; CONNECT with the JWT → CONNECTED"
                f"{f' (STOMP {version})' if version else ''}, without → "
                f"{anonymous.command or 'closed'}",
            )
        )
    elif probe.command == "ERROR":
        findings.append(
            Finding(
                Status.FAIL,
                f"STOMP CONNECT with the JWT was refused ({probe.header('message') or 'ERROR'})",
                "send the JWT as the Authorization: Bearer header of CONNECT and check the signing "
                "key and clocks (see tls-clock)",
            )
        )
    else:
        findings.append(
            Finding(
                Status.FAIL,
                f"STOMP CONNECT with the JWT got {_no_frame(probe, o.timeout)}",
                "make the endpoint answer CONNECT with CONNECTED (is it speaking SockJS framing at "
                "this path? pass --websocket-path)",
            )
        )
    return findings


def _no_frame(probe: StompProbe, timeout: float) -> str:
    if probe.closed:
        return f"the connection closed (code {probe.close_code}) with no frame"
    if probe.error:
        return f"no reply ({probe.error} after {timeout:g}s)"
    return f"an unexpected {probe.command} frame"


async def _handshake_finding(ctx: Context, url: str, probe: StompProbe) -> Finding | None:
    o = ctx.options
    if probe.handshake_status == 101:
        return None
    status = probe.handshake_status
    if status in (401, 403):
        bare = await stomp_probe(url, origin=None, token=None, step_timeout=o.timeout, insecure=o.insecure)
        if bare.handshake_status == 101:
            return Finding(
                Status.FAIL,
                f"the WebSocket handshake to {url} from origin {ctx.frontend} is refused "
                f"({status}) while one without Origin succeeds",
                f"add {ctx.frontend} to the WebSocket endpoint's allowed origins (FRONTEND_ORIGINS)",
            )
        path = o.sockjs_path.rstrip("/")
        return Finding(
            Status.FAIL,
            f"the WebSocket handshake to {url} answered {status}, so the HTTP authentication filter blocks {path}/",
            f"exempt {path}/ from it and authenticate on STOMP CONNECT instead",
        )
    if status == 404:
        return Finding(
            Status.FAIL,
            f"no WebSocket endpoint at {url} (404)",
            "route the upgrade to the STOMP endpoint or pass --websocket-path",
        )
    if status is not None:
        return Finding(
            Status.FAIL,
            f"the WebSocket handshake to {url} answered {status} instead of 101",
            "make the proxy forward the Upgrade and Connection headers to the API",
        )
    return Finding(
        Status.FAIL,
        f"the WebSocket handshake to {url} failed ({probe.error})",
        "check --api, TLS (wss://) and that the proxy forwards WebSocket upgrades",
    )


def _anonymous_finding(url: str, probe: StompProbe, timeout: float) -> Finding:
    if probe.command == "CONNECTED":
        return Finding(
            Status.FAIL,
            "STOMP CONNECT without credentials was answered CONNECTED, so anyone can use the endpoint",
            "authenticate the JWT on CONNECT and answer ERROR (then close) without one",
        )
    if probe.command == "ERROR" or probe.closed:
        return Finding(Status.PASS, f"CONNECT without credentials → {probe.command or 'closed'}")
    return Finding(
        Status.FAIL,
        f"STOMP CONNECT without credentials got {_no_frame(probe, timeout)}, a silent accept",
        "answer an unauthenticated CONNECT with an ERROR frame and close",
    )
