"""/healthz/ (liveness), /readyz/ (readiness) and /metrics (allow-listed) through Django's test client."""

from __future__ import annotations

import ipaddress

import pytest
from django.db import connection

from operations import readiness
from scripts.processes import free_port


@pytest.fixture
def not_draining():
    yield
    readiness._draining = False


def test_healthz_answers_without_touching_the_database(client):
    response = client.get("/healthz/")  # no django_db mark: any query would raise here
    assert response.status_code == 200 and response.json() == {"status": "ok"}


@pytest.mark.django_db
def test_readyz_is_ready_with_a_reachable_database_and_no_redis(client, settings):
    settings.REDIS_URL = ""
    response = client.get("/readyz/")
    assert response.status_code == 200
    assert response.json() == {
        "ready": True,
        "checks": {"database": {"ok": True, "detail": "ok"}, "shutdown": {"ok": True, "detail": "running"}},
    }
    assert response["Cache-Control"] == "no-store"


@pytest.mark.django_db
def test_readyz_turns_false_once_the_process_is_draining(client, settings, not_draining):
    settings.REDIS_URL = ""
    readiness.mark_draining()
    response = client.get("/readyz/")
    assert response.status_code == 503
    assert response.json()["checks"]["shutdown"] == {"ok": False, "detail": "shutting down"}


@pytest.mark.django_db
def test_readyz_reports_an_unreachable_redis(client, settings):
    settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    body = client.get("/readyz/").json()
    assert body["ready"] is False and body["checks"]["redis"]["ok"] is False
    assert "Error" in body["checks"]["redis"]["detail"]


@pytest.mark.django_db
def test_readyz_reports_a_database_that_fails(client, settings, monkeypatch):
    settings.REDIS_URL = ""

    def broken_cursor(*args, **kwargs):
        raise RuntimeError("database is down")

    monkeypatch.setattr(connection, "cursor", broken_cursor)
    response = client.get("/readyz/")
    assert response.status_code == 503
    assert response.json()["checks"]["database"] == {"ok": False, "detail": "RuntimeError: database is down"}


def test_metrics_are_served_to_loopback_in_the_prometheus_format(client):
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain; version=0.0.4")
    assert b"# TYPE chat_stomp_deliveries_total counter" in response.content


def test_metrics_are_refused_outside_the_allow_list(client, settings):
    settings.METRICS_ALLOWED_NETWORKS = [ipaddress.ip_network("10.0.0.0/8")]
    response = client.get("/metrics")  # the test client comes from 127.0.0.1
    assert response.status_code == 403
    assert "METRICS_ALLOWED_NETWORKS" in response.json()["error"]
    assert client.get("/metrics", REMOTE_ADDR="10.1.2.3").status_code == 200


def test_favicon_ico_leads_to_the_site_icon(client):
    response = client.get("/favicon.ico")
    assert response.status_code == 302 and response["Location"].endswith("/favicon.svg")
