"""Settings of the baseline server: Channels with the in-memory layer, nothing else (no database, no auth)."""

SECRET_KEY = "bench-baseline-not-secret-0123456789abcdefghijklmnopqrstuvwxyz"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
INSTALLED_APPS = ["daphne", "channels"]
DATABASES: dict = {}
ASGI_APPLICATION = "bench.baseline.asgi.application"
CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
USE_TZ = True
LOGGING_CONFIG = None
