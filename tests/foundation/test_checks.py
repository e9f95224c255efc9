"""check --deploy names the split-origin mistakes in this project's own settings."""

from django.core.checks import run_checks
from django.test import override_settings

from chatproject.origins import OriginMatcher


def deploy_ids():
    return {message.id for message in run_checks(include_deployment_checks=True)}


@override_settings(SITE_ORIGIN="https://www.example.com", API_ORIGIN="http://api.example.com")
def test_http_api_under_https_pages_is_an_error():
    messages = [m for m in run_checks(include_deployment_checks=True) if m.id == "chatproject.E001"]
    assert messages and messages[0].is_serious()
    assert "mixed content" in messages[0].msg


@override_settings(
    SITE_ORIGIN="https://www.example.com", ORIGIN_MATCHER=OriginMatcher.from_patterns(["https://app.example.com"])
)
def test_frontend_origins_not_covering_the_site_warns():
    assert "chatproject.W001" in deploy_ids()


@override_settings(ORIGIN_MATCHER=OriginMatcher.from_patterns(["*"]))
def test_any_origin_with_credentials_warns():
    assert "chatproject.W002" in deploy_ids()


@override_settings(REDIS_URL="")
def test_no_redis_warns_about_single_process():
    assert "chatproject.W003" in deploy_ids()


@override_settings(
    SITE_ORIGIN="https://www.example.com",
    API_ORIGIN="https://api.example.com",
    ORIGIN_MATCHER=OriginMatcher.from_patterns(["https://www.example.com"]),
    REDIS_URL="redis://127.0.0.1:6379/0",
    SECURE_PROXY_SSL_HEADER=("HTTP_X_FORWARDED_PROTO", "https"),
)
def test_a_correct_split_origin_configuration_has_no_project_warnings():
    assert not {i for i in deploy_ids() if i.startswith("chatproject.")}


def test_plain_check_is_clean():
    assert not [m for m in run_checks() if m.is_serious()]


def test_hashed_static_names_without_collectstatic_is_a_deploy_error(tmp_path):
    with override_settings(STATIC_MANIFEST=True, STATIC_ROOT=str(tmp_path)):
        [message] = [m for m in run_checks(include_deployment_checks=True) if m.id == "chatproject.E003"]
    assert message.is_serious() and "manage.py collectstatic --noinput" in message.hint
    (tmp_path / "staticfiles.json").write_text("{}")
    with override_settings(STATIC_MANIFEST=True, STATIC_ROOT=str(tmp_path)):
        assert "chatproject.E003" not in deploy_ids()
    with override_settings(STATIC_MANIFEST=False, STATIC_ROOT=str(tmp_path / "nowhere")):
        assert "chatproject.E003" not in deploy_ids()
