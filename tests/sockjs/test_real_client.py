"""sockjs-client 1.6 in Node echoes over every transport it offers in Node, from a foreign origin."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.live

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "tests" / "js" / "sockjs_echo.mjs"
FOREIGN_ORIGIN = "http://frontend.example:8080"  # in the test server's FRONTEND_ORIGINS, not its own origin
# htmlfile, jsonp-polling and the iframe transports need a DOM; Node's sockjs-client offers these.
NODE_TRANSPORTS = ["websocket", "xhr-streaming", "xhr-polling", "eventsource"]


def run_echo(base: str, transport: str, origin: str, *extra: str) -> tuple[subprocess.CompletedProcess, dict]:
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is not installed (make test installs nodejs and the npm packages)")
    done = subprocess.run(
        [node, str(SCRIPT), base, transport, origin, "20", *extra],
        cwd=REPO, env={**os.environ, "NODE_ENV": "production"}, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    assert lines, f"no result from node: {done.stdout}\n{done.stderr}"
    return done, json.loads(lines[-1])


@pytest.mark.parametrize("transport", NODE_TRANSPORTS)
def test_sockjs_client_echoes_over_each_transport_from_a_foreign_origin(project_sockjs_server, transport):
    done, result = run_echo(f"{project_sockjs_server.top}/echo", transport, FOREIGN_ORIGIN)
    assert result["error"] is None, (result, done.stderr, project_sockjs_server.log()[-2000:])
    assert result["transport"] == transport
    assert result["received"] == 20
    assert result["inOrder"] is True
    assert result["closeCode"] == 1000


@pytest.mark.parametrize("transport", NODE_TRANSPORTS)
def test_sockjs_client_with_a_server_issued_key_and_32_character_ids_echoes(project_sockjs_server, transport):
    # What static/js/chat.js does: POST /key, the key in the URL's query, sessionId: 32.
    done, result = run_echo(f"{project_sockjs_server.top}/echo", transport, FOREIGN_ORIGIN, "keyed")
    assert result["error"] is None, (result, done.stderr, project_sockjs_server.log()[-2000:])
    assert result["transport"] == transport
    assert (result["received"], result["inOrder"], result["closeCode"]) == (20, True, 1000)


@pytest.mark.parametrize("transport", NODE_TRANSPORTS)
def test_sockjs_client_from_a_disallowed_origin_cannot_connect(standalone_sockjs_server, transport):
    _, result = run_echo(f"{standalone_sockjs_server.url}/sockjs-restricted/echo", transport, "https://evil.example")
    assert result["received"] == 0
    assert result["transport"] is None
    assert result["error"]
