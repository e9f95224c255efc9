"""Social login configuration from the environment: providers appear only when configured, incomplete
settings refuse to start, and the provider's origin is allowed as a form target (CSP form-action)."""

from __future__ import annotations

import runpy

import pytest
from django.core.exceptions import ImproperlyConfigured

from tests.conftest import REPO

SETTINGS = str(REPO / "chatproject" / "settings.py")
SOCIAL_VARS = [
    "SOCIAL_OIDC_CLIENT_ID", "SOCIAL_OIDC_SECRET", "SOCIAL_OIDC_ISSUER", "SOCIAL_OIDC_NAME", "SOCIAL_OIDC_ID",
    "SOCIAL_GOOGLE_CLIENT_ID", "SOCIAL_GOOGLE_SECRET", "SOCIAL_GITHUB_CLIENT_ID", "SOCIAL_GITHUB_SECRET",
    "SOCIAL_KAKAO_CLIENT_ID", "SOCIAL_KAKAO_SECRET",
]  # fmt: skip


def load_settings(monkeypatch, **env: str) -> dict:
    for name in SOCIAL_VARS:
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return runpy.run_path(SETTINGS)


def test_without_social_variables_no_provider_is_configured(monkeypatch):
    settings = load_settings(monkeypatch)
    assert settings["SOCIALACCOUNT_PROVIDERS"] == {}
    assert settings["CONTENT_SECURITY_POLICY"]["DIRECTIVES"]["form-action"] == ["'self'"]


def test_an_openid_connect_provider_is_configured_from_its_issuer(monkeypatch):
    settings = load_settings(
        monkeypatch,
        SOCIAL_OIDC_CLIENT_ID="chat",
        SOCIAL_OIDC_SECRET="s3cret",
        SOCIAL_OIDC_ISSUER="https://id.example.com/realms/chat/",
        SOCIAL_OIDC_NAME="Example ID",
    )
    (app,) = settings["SOCIALACCOUNT_PROVIDERS"]["openid_connect"]["APPS"]
    assert app["provider_id"] == "oidc" and app["name"] == "Example ID"
    assert app["settings"]["server_url"] == "https://id.example.com/realms/chat"
    assert settings["CONTENT_SECURITY_POLICY"]["DIRECTIVES"]["form-action"] == ["'self'", "https://id.example.com"]


def test_named_providers_are_installed_only_when_configured(monkeypatch):
    settings = load_settings(
        monkeypatch, SOCIAL_GITHUB_CLIENT_ID="gh", SOCIAL_GITHUB_SECRET="x", SOCIAL_KAKAO_CLIENT_ID="k"
    )
    assert set(settings["SOCIALACCOUNT_PROVIDERS"]) == {"github", "kakao"}
    assert "allauth.socialaccount.providers.github" in settings["INSTALLED_APPS"]
    assert "allauth.socialaccount.providers.google" not in settings["INSTALLED_APPS"]
    assert "https://github.com" in settings["CONTENT_SECURITY_POLICY"]["DIRECTIVES"]["form-action"]


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"SOCIAL_OIDC_CLIENT_ID": "chat", "SOCIAL_OIDC_ISSUER": "https://id.example.com"},
            "without SOCIAL_OIDC_SECRET",
        ),
        ({"SOCIAL_OIDC_CLIENT_ID": "chat", "SOCIAL_OIDC_SECRET": "s"}, "SOCIAL_OIDC_ISSUER"),
        ({"SOCIAL_OIDC_CLIENT_ID": "c", "SOCIAL_OIDC_SECRET": "s", "SOCIAL_OIDC_ISSUER": "id.example.com"}, "issuer"),
        ({"SOCIAL_GOOGLE_CLIENT_ID": "g"}, "without SOCIAL_GOOGLE_SECRET"),
    ],
)
def test_incomplete_social_settings_refuse_to_start(monkeypatch, env, message):
    with pytest.raises(ImproperlyConfigured, match=message):
        load_settings(monkeypatch, **env)


def test_the_login_page_has_no_social_buttons_without_a_provider(client, db):
    page = client.get("/login/").content.decode()
    assert "Sign in with" not in page and "data-social-login" not in page
