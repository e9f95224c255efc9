"""Every response that carries a credential is marked uncacheable (issue 16, item 14)."""

from __future__ import annotations

import re

import pytest
from django.test import Client

from tests.conftest import TEST_PASSWORD

pytestmark = pytest.mark.django_db


def assert_no_store(response) -> None:
    assert response["Cache-Control"] == "no-store", (response.status_code, dict(response.headers))
    assert response["Pragma"] == "no-cache"


def test_token_refresh_register_and_handover_answers_are_no_store(make_user):
    make_user("nina")
    api = Client()
    registered = api.post(
        "/api/auth/register/", {"username": "omar", "password": "a-long-passphrase"}, content_type="application/json"
    )
    assert registered.status_code == 201 and "access" in registered.json()
    assert_no_store(registered)

    pair = api.post(
        "/api/auth/token/", {"username": "nina", "password": TEST_PASSWORD}, content_type="application/json"
    )
    assert pair.status_code == 200
    assert_no_store(pair)
    refreshed = api.post(
        "/api/auth/token/refresh/", {"refresh": pair.json()["refresh"]}, content_type="application/json"
    )
    assert refreshed.status_code == 200 and "access" in refreshed.json()
    assert_no_store(refreshed)
    assert_no_store(
        api.post("/api/auth/token/", {"username": "nina", "password": "x"}, content_type="application/json")
    )

    browser = Client()
    assert browser.post("/login/", {"username": "nina", "password": TEST_PASSWORD}).status_code == 302
    page = browser.get("/")
    code = re.search(r'<meta name="jwt-handover" content="([^"]+)">', page.content.decode()).group(1)
    assert_no_store(page)  # the page whose <meta> carries the hand-over code
    handed = api.post("/api/auth/handover/", {"code": code}, content_type="application/json")
    assert handed.status_code == 200 and "refresh" in handed.json()
    assert_no_store(handed)
    renewed = browser.post("/login/handover/")
    assert renewed.status_code == 200 and "code" in renewed.json()
    assert_no_store(renewed)
