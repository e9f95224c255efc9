"""Minimal Django settings for running the SockJS package alone (no project apps, no database)."""

import os

SECRET_KEY = "sockjs-standalone-tests-only-0123456789abcdef"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
INSTALLED_APPS = ["channels"]
ROOT_URLCONF = "standalone_urls"
USE_TZ = True
DATABASES: dict = {}
CHANNEL_LAYERS: dict = {}
# Test-support only: the project reads the environment in chatproject/settings.py alone.
SOCKJS_HEARTBEAT_INTERVAL = float(os.environ.get("SOCKJS_HEARTBEAT_INTERVAL", "25"))
SOCKJS_DISCONNECT_DELAY = float(os.environ.get("SOCKJS_DISCONNECT_DELAY", "5"))
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": "INFO"},
}
