"""Accounts: registration, JWTs, logout blacklisting, the form-login hand-over, throttling, JSON errors."""

import re

import pytest
from django.test import Client, override_settings

from tests.conftest import TEST_PASSWORD

pytestmark = pytest.mark.django_db


def obtain(api_client, username, password=TEST_PASSWORD):
    return api_client.post("/api/auth/token/", {"username": username, "password": password}, format="json")


def test_register_returns_the_user_and_a_token_pair(api_client):
    response = api_client.post(
        "/api/auth/register/", {"username": "dana", "password": "a-long-passphrase"}, format="json"
    )
    assert response.status_code == 201
    body = response.json()
    assert body["user"]["username"] == "dana"
    assert {"access", "refresh"} <= set(body)
    me = api_client.get("/api/me/", HTTP_AUTHORIZATION=f"Bearer {body['access']}")
    assert me.json()["username"] == "dana"


def test_register_rejects_weak_password_and_taken_name_with_field_errors(api_client, make_user):
    make_user("erin")
    taken = api_client.post("/api/auth/register/", {"username": "ERIN", "password": "a-long-passphrase"}, format="json")
    assert taken.status_code == 400
    assert "username" in taken.json()["errors"]
    weak = api_client.post("/api/auth/register/", {"username": "fred", "password": "123"}, format="json")
    assert weak.status_code == 400
    assert "password" in weak.json()["errors"]


def test_token_refresh_and_verify(api_client, make_user):
    make_user("gina")
    pair = obtain(api_client, "gina").json()
    refreshed = api_client.post("/api/auth/token/refresh/", {"refresh": pair["refresh"]}, format="json")
    assert refreshed.status_code == 200 and "access" in refreshed.json()
    assert api_client.post("/api/auth/token/verify/", {"token": pair["access"]}, format="json").status_code == 200
    assert api_client.post("/api/auth/token/verify/", {"token": "garbage"}, format="json").status_code == 401


def test_logout_blacklists_the_refresh_token(api_client, make_user):
    make_user("hank")
    pair = obtain(api_client, "hank").json()
    assert api_client.post("/api/auth/logout/", {"refresh": pair["refresh"]}, format="json").status_code == 204
    again = api_client.post("/api/auth/token/refresh/", {"refresh": pair["refresh"]}, format="json")
    assert again.status_code == 401
    assert "blacklisted" in again.json()["detail"]


def test_unauthenticated_api_gets_json_401_not_a_redirect(api_client):
    response = api_client.get("/api/rooms/")
    assert response.status_code == 401
    assert response["Content-Type"] == "application/json"
    assert response.json()["detail"]


def test_unknown_api_and_ws_paths_get_json_404(api_client):
    for path in ("/api/no-such-thing/", "/ws/no-such-thing"):
        response = api_client.get(path)
        assert response.status_code == 404
        assert response["Content-Type"] == "application/json"


def test_form_login_hands_the_browser_the_same_jwt_pair(make_user):
    make_user("ivy")
    browser = Client()
    response = browser.post("/login/", {"username": "ivy", "password": TEST_PASSWORD})
    assert response.status_code == 302
    page = browser.get("/")
    code = re.search(r'<meta name="jwt-handover" content="([^"]+)">', page.content.decode()).group(1)
    # The code is rendered once: a reload does not show it again.
    assert b"jwt-handover" not in browser.get("/").content
    api = Client()
    pair = api.post("/api/auth/handover/", {"code": code}, content_type="application/json")
    assert pair.status_code == 200
    me = api.get("/api/me/", HTTP_AUTHORIZATION=f"Bearer {pair.json()['access']}")
    assert me.json()["username"] == "ivy"
    reused = api.post("/api/auth/handover/", {"code": code}, content_type="application/json")
    assert reused.status_code == 401


def test_form_login_with_a_wrong_password_shows_the_form_again(make_user):
    make_user("jack")
    response = Client().post("/login/", {"username": "jack", "password": "wrong"})
    assert response.status_code == 200
    assert b"jwt-handover" not in response.content


def test_html_registration_logs_in_and_hands_over(db):
    browser = Client()
    response = browser.post(
        "/register/", {"username": "kate", "password": "a-long-passphrase", "password2": "a-long-passphrase"}
    )
    assert response.status_code == 302
    assert b"jwt-handover" in browser.get("/").content


@override_settings(AUTH_THROTTLE_RATE="3/min")
def test_token_endpoint_is_throttled_against_password_guessing(api_client, make_user):
    from django.core.cache import cache

    cache.clear()
    make_user("liam")
    codes = [obtain(api_client, "liam", "wrong").status_code for _ in range(4)]
    assert codes == [401, 401, 401, 429]
    assert "throttled" in obtain(api_client, "liam").json()["detail"].lower()
    cache.clear()


@override_settings(AUTH_THROTTLE_RATE="2/min")
def test_form_login_is_throttled_too(make_user):
    from django.core.cache import cache

    cache.clear()
    make_user("mia")
    browser = Client()
    codes = [browser.post("/login/", {"username": "mia", "password": "wrong"}).status_code for _ in range(3)]
    assert codes == [200, 200, 429]
    cache.clear()


def test_cors_allows_configured_frontend_origin_with_credentials(api_client, settings):
    allowed = api_client.options(
        "/api/auth/token/", HTTP_ORIGIN="http://localhost:8000", HTTP_ACCESS_CONTROL_REQUEST_METHOD="POST"
    )
    assert allowed["Access-Control-Allow-Origin"] == "http://localhost:8000"
    assert allowed["Access-Control-Allow-Credentials"] == "true"
    refused = api_client.options(
        "/api/auth/token/", HTTP_ORIGIN="https://evil.example", HTTP_ACCESS_CONTROL_REQUEST_METHOD="POST"
    )
    assert "Access-Control-Allow-Origin" not in refused
