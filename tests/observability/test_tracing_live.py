"""The switches work in a real daphne: OTEL_TRACES_EXPORTER turns tracing on, LOG_FORMAT=json the JSON logs."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.conftest import wait_for

pytestmark = pytest.mark.live


def test_otel_traces_exporter_console_exports_a_span_per_http_request(daphne_factory):
    # (Probes and scrapes, answered ahead of Django by operations.endpoints, make no span.)
    server = daphne_factory(OTEL_TRACES_EXPORTER="console", OTEL_BSP_SCHEDULE_DELAY="100")
    assert httpx.get(f"{server.url}/api/me/", timeout=5).status_code == 401
    wait_for(lambda: '"name": "HTTP GET"' in server.log() and '"url.path": "/api/me/"' in server.log(),
             timeout=15, what="the console exporter to print the request's span")  # fmt: skip


def test_log_format_json_writes_one_json_object_per_line(daphne_factory):
    server = daphne_factory(LOG_FORMAT="json", LOG_LEVEL="INFO", OTEL_TRACES_EXPORTER="console",
                            OTEL_BSP_SCHEDULE_DELAY="100")  # fmt: skip
    wait_for(lambda: "tracing on" in server.log(), timeout=15, what="the start-up line")
    lines = [line for line in server.log().splitlines() if line.startswith("{") and '"level"' in line]
    entry = json.loads(next(line for line in lines if "tracing on" in line))
    assert entry["logger"] == "operations.tracing" and entry["level"] == "INFO"
