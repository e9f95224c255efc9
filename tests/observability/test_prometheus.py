"""A real Prometheus (Debian's ``prometheus``) scrapes two daphne workers during a chat; the dashboard's
every query and the alert rules run against it. ``promtool`` checks the rules file."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import httpx
import pytest

from scripts.processes import free_port, port_open, stop
from tests.conftest import OUTPUT, wait_for
from tests.observability.scrape import chat_across

pytestmark = pytest.mark.live

REPO = Path(__file__).resolve().parents[2]
ALERTS = REPO / "deploy" / "prometheus" / "alerts.yml"
DASHBOARD = REPO / "deploy" / "grafana" / "chat-dashboard.json"


def binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed: run `make system-test` (Debian package prometheus)")
    return path


def test_alert_rules_pass_promtool():
    result = subprocess.run([binary("promtool"), "check", "rules", str(ALERTS)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 7 rules found" in result.stdout


def test_the_dashboard_json_is_what_its_builder_writes():
    import importlib.util

    spec = importlib.util.spec_from_file_location("build_dashboard", DASHBOARD.with_name("build_dashboard.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert json.loads(DASHBOARD.read_text()) == module.build()


@pytest.fixture
def prometheus(tmp_path):
    """``start(targets)``: a Prometheus on a free loopback port scraping ``targets`` every second."""
    started: list[subprocess.Popen] = []

    def start(targets: list[str]) -> str:
        port = free_port()
        config = tmp_path / "prometheus.yml"
        config.write_text(json.dumps({
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(ALERTS)],
            "scrape_configs": [{"job_name": "chat", "static_configs": [{"targets": targets}]}],
        }))  # fmt: skip
        OUTPUT.mkdir(exist_ok=True)
        log = open(OUTPUT / f"prometheus-{port}.log", "wb")  # noqa: SIM115 - closed with the process below
        process = subprocess.Popen(
            [binary("prometheus"), f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'data'}",
             f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        started.append(process)
        url = f"http://127.0.0.1:{port}"
        wait_for(lambda: port_open(port) and httpx.get(f"{url}/-/ready", timeout=2).status_code == 200,
                 timeout=30, what="prometheus to be ready")  # fmt: skip
        return url

    yield start
    for process in started:
        stop(process)


def query(prometheus_url: str, expr: str) -> list[dict]:
    response = httpx.get(f"{prometheus_url}/api/v1/query", params={"query": expr}, timeout=10)
    body = response.json()
    assert response.status_code == 200 and body["status"] == "success", (expr, body)
    return body["data"]["result"]


def scalar(prometheus_url: str, expr: str) -> float | None:
    result = query(prometheus_url, expr)
    return float(result[0]["value"][1]) if result else None


def test_prometheus_scrapes_two_workers_during_a_chat_and_every_dashboard_query_runs(
    daphne_factory, redis_server, prometheus, make_user, tmp_path
):
    env = {"REDIS_URL": f"redis://127.0.0.1:{redis_server.port}/0", "STOMP_REDIS_PREFIX": f"prom-{tmp_path.name}:",
           "METRICS_SAMPLE_INTERVAL": "0.5"}  # fmt: skip
    one, two = daphne_factory(**env), daphne_factory(**env)  # no shared directory: each reports its own
    url = prometheus([f"127.0.0.1:{one.port}", f"127.0.0.1:{two.port}"])
    wait_for(lambda: scalar(url, 'sum(up{job="chat"})') == 2, timeout=30, what="both workers scraped")

    here, there = chat_across(one, two, make_user("alice"), make_user("bob"), "/topic/prom")
    try:
        wait_for(lambda: scalar(url, "sum(chat_connections_open)") == 2, timeout=30, what="2 connections")
        by_instance = query(url, "sum by (instance) (chat_connections_open)")
        assert sorted(r["metric"]["instance"] for r in by_instance) == sorted(f"127.0.0.1:{w.port}" for w in (one, two))
        wait_for(lambda: scalar(url, "sum(chat_stomp_deliveries_total)") == 10, timeout=30, what="10 deliveries")
        assert scalar(url, 'sum(chat_stomp_frames_received_total{command="SEND"})') == 5
        wait_for(lambda: scalar(url, "count(chat_event_loop_lag_seconds_count)") == 2, timeout=30, what="lag")

        dashboard = json.loads(DASHBOARD.read_text())
        exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
        assert len(exprs) >= 25
        results = {expr: query(url, expr.replace("$__rate_interval", "1m")) for expr in exprs}
        for must_have_data in (
            "sum by (transport) (chat_connections_open)",
            "sum(rate(chat_stomp_deliveries_total[$__rate_interval]))",
            "sum by (instance) (chat_process_resident_memory_bytes)",
        ):
            assert results[must_have_data], must_have_data

        def rules() -> list[dict]:
            groups = httpx.get(f"{url}/api/v1/rules", timeout=10).json()["data"]["groups"]
            return [rule for group in groups for rule in group["rules"]]

        assert len(rules()) == 7
        wait_for(lambda: all(r["health"] == "ok" for r in rules()), timeout=30, what="every rule evaluated")
        firing = {
            a["labels"]["alertname"] for a in httpx.get(f"{url}/api/v1/alerts", timeout=10).json()["data"]["alerts"]
        }
        assert "ChatNoReadyWorker" not in firing and "ChatRedisGone" not in firing
    finally:
        here.close()
        there.close()
