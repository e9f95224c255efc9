"""Settings come from the environment; values that cannot work stop the process at start-up."""

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import REPO

PROBE = (
    "import django, json; django.setup(); from django.conf import settings as s; "
    "print(json.dumps({'db': s.DATABASES['default']['ENGINE'], 'layer': s.CHANNEL_LAYERS['default']['BACKEND'], "
    "'api': s.API_ORIGIN, 'site': s.SITE_ORIGIN, 'frontend': s.FRONTEND_ORIGINS, 'debug': s.DEBUG, "
    "'opts': s.DATABASES['default'].get('OPTIONS', {}), 'proxy': getattr(s, 'SECURE_PROXY_SSL_HEADER', None)}))"
)


def load_settings(probe: str = PROBE, **env: str) -> subprocess.CompletedProcess:
    """``probe`` (Python source) in a fresh process with the settings of ``env`` over this one's environment."""
    base = {
        k: v
        for k, v in os.environ.items()
        if k
        not in {"DEBUG", "SECRET_KEY", "DATABASE_URL", "REDIS_URL", "SITE_ORIGIN", "API_ORIGIN", "FRONTEND_ORIGINS"}
    }
    base["DJANGO_SETTINGS_MODULE"] = "chatproject.settings"
    return subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO, env={**base, **env}, capture_output=True, text=True, timeout=60
    )


def settings_json(**env: str) -> dict:
    import json

    result = load_settings(**env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_defaults_are_sqlite_in_memory_layer_and_same_origin():
    values = settings_json()
    assert values["db"] == "django.db.backends.sqlite3"
    assert values["layer"] == "stompengine.layers.BrokerChannelLayer"  # in memory without REDIS_URL
    assert values["site"] == values["api"] == "http://localhost:8000"
    # runserver prints http://127.0.0.1:8000/: a page opened there may call the API too (development only).
    assert values["frontend"] == ["http://localhost:8000", "http://127.0.0.1:8000"]
    assert values["opts"]["transaction_mode"] == "IMMEDIATE"
    assert "journal_mode=WAL" in values["opts"]["init_command"]


def test_redis_url_keeps_the_bus_layer_which_then_crosses_processes():
    # Issue 18: the channel layer rides the broker's Redis bridge (not channels_redis) with and without Redis.
    assert settings_json(REDIS_URL="redis://127.0.0.1:6399/0")["layer"] == "stompengine.layers.BrokerChannelLayer"


def test_redis_cluster_selects_the_sharded_bus_and_the_cluster_cache():
    probe = (
        "import django, json; django.setup(); from django.conf import settings as s; "
        "from stompengine.conf import stomp_settings as c; "
        "print(json.dumps([s.CACHES['default']['BACKEND'], c().redis_cluster]))"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "chatproject.settings", "REDIS_URL": "redis://127.0.0.1:7000/0"}
    for flag, expected in (("1", ["chatproject.cluster_cache.RedisClusterCache", True]),
                           ("0", ["django.core.cache.backends.redis.RedisCache", False])):  # fmt: skip
        done = subprocess.run([sys.executable, "-c", probe], cwd=REPO, env={**env, "REDIS_CLUSTER": flag},
                              capture_output=True, text=True, timeout=60, check=True)  # fmt: skip
        assert json.loads(done.stdout.strip().splitlines()[-1]) == expected


def test_postgres_database_url_is_understood():
    assert settings_json(DATABASE_URL="postgres://u:p@127.0.0.1:5432/chat")["db"] == "django.db.backends.postgresql"


def test_frontend_origins_are_split_on_commas():
    values = settings_json(FRONTEND_ORIGINS="https://www.example.com, https://*.example.org")
    assert values["frontend"] == ["https://www.example.com", "https://*.example.org"]


def test_tls_proxy_setting_trusts_forwarded_proto():
    assert settings_json(BEHIND_TLS_PROXY="1")["proxy"] == ["HTTP_X_FORWARDED_PROTO", "https"]


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"DEBUG": "0"}, "DEBUG=0 with the built-in development SECRET_KEY"),
        ({"DEBUG": "maybe"}, "is not a boolean"),
        ({"SECRET_KEY": "short"}, "shorter than 32"),
        ({"API_ORIGIN": "api.example.com"}, "API_ORIGIN='api.example.com' is not an origin"),
        ({"SITE_ORIGIN": "https://www.example.com/app"}, "SITE_ORIGIN"),
        ({"FRONTEND_ORIGINS": "www.example.com"}, "FRONTEND_ORIGINS"),
        ({"STOMP_MAX_FRAME_SIZE": "lots"}, "is not a whole number"),
        ({"DATABASE_URL": "nonsense://x"}, "DATABASE_URL"),
        ({"REDIS_CLUSTER": "1"}, "REDIS_CLUSTER=1 needs REDIS_URL"),
    ],
)
def test_settings_that_cannot_work_refuse_to_load(env, message):
    result = load_settings(**env)
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert message in result.stderr


def test_production_settings_load_with_a_real_secret():
    values = settings_json(DEBUG="0", SECRET_KEY="x" * 50, ALLOWED_HOSTS="api.example.com")
    assert values["debug"] is False


def test_production_frontend_default_is_the_site_origin_only():
    values = settings_json(DEBUG="0", SECRET_KEY="x" * 50, SITE_ORIGIN="http://localhost:8000")
    assert values["frontend"] == ["http://localhost:8000"]
    assert settings_json(SITE_ORIGIN="https://www.example.com")["frontend"] == ["https://www.example.com"]
