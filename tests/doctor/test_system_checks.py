"""check --deploy catches, in this project's own settings, what doctor finds in a live deployment."""

from django.core.checks import run_checks
from django.test import override_settings

from chatproject.checks import check_cross_origin_paths_not_intercepted


def ids(messages) -> set[str]:
    return {m.id for m in messages}


def test_default_settings_have_no_intercepted_or_uncovered_paths():
    assert check_cross_origin_paths_not_intercepted() == []


def test_this_projects_api_and_ws_stay_exempt_under_login_required_middleware(settings):
    # DRF views and the JSON 404 are login_not_required; /ws/info is a Channels route ahead of the middleware.
    settings.MIDDLEWARE = [*settings.MIDDLEWARE, "django.contrib.auth.middleware.LoginRequiredMiddleware"]
    assert [m for m in check_cross_origin_paths_not_intercepted() if m.id == "chatproject.E002"] == []


def test_login_required_middleware_intercepting_api_and_ws_is_an_error(settings):
    settings.MIDDLEWARE = [*settings.MIDDLEWARE, "django.contrib.auth.middleware.LoginRequiredMiddleware"]
    settings.ROOT_URLCONF = "tests.doctor.urls_plain_api"  # an API view someone forgot to exempt
    messages = [m for m in check_cross_origin_paths_not_intercepted() if m.id == "chatproject.E002"]
    paths = " ".join(m.msg for m in messages)
    assert "GET /ws/info" in paths or "GET /api/" in paths
    assert all(m.is_serious() for m in messages)
    assert any("Exempt /ws/" in m.hint or "Exempt /api/" in m.hint for m in messages)


@override_settings(CORS_URLS_REGEX=r"^/api/.*$")
def test_cors_regex_not_covering_ws_warns():
    messages = [m for m in check_cross_origin_paths_not_intercepted() if m.id == "chatproject.W005"]
    assert [m for m in messages if "/ws/info" in m.msg]


def test_the_checks_run_under_check_deploy():
    with override_settings(CORS_URLS_REGEX=r"^/api/.*$"):
        assert "chatproject.W005" in ids(run_checks(include_deployment_checks=True))
